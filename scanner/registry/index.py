"""The registry in memory: every record, and an index from (port, transport) to records.

Rules:
- The records stay in the file's order; :meth:`Registry.lookup` returns the records that cover
  a port, named assignments first, each group in file order (for 80/tcp: http, www, ...).
- A record with an empty transport covers its ports on every transport.
- Lookups are a dict access and one bisection: each transport's ports are cut into segments
  at every record boundary, and each segment holds the records covering all of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scanner.ports import MAX_PORT
from scanner.registry.parse import Registration
from scanner.registry.xml import Person

__all__ = ["Registry", "Source"]


@dataclass(frozen=True, slots=True)
class Source:
    """One source of registry data: what it is (``name``), its ISO ``date``, and the
    ``fields`` it gives ("every field", "service name, port, transport, description")."""

    name: str
    date: str
    fields: str = "every field"


# (segment starts ascending, records covering each segment)
_Segments = tuple[list[int], list[tuple[Registration, ...]]]


class Registry:
    """IANA's port registry: ``records`` in IANA's order, with fast lookups by port.

    ``source`` says in words where the data comes from; ``date`` is the ISO date of its
    names (the newest source), by which its age is judged. ``sources`` lists each source
    with its date and the fields it gives (one for a copy of IANA's file, two for the
    shipped merge); ``people`` resolves the ids of ``[Person_Id]`` fields (IANA's XML has
    them; CSV data has none). ``len(registry)`` counts every record, bare names included.
    """

    __slots__ = ("_any", "_by_transport", "date", "people", "records", "source", "sources")

    def __init__(
        self,
        records: Iterable[Registration],
        *,
        source: str,
        date: str,
        sources: Iterable[Source] = (),
        people: Mapping[str, Person] | None = None,
    ) -> None:
        self.records: tuple[Registration, ...] = tuple(records)
        self.source = source
        self.date = date
        self.sources: tuple[Source, ...] = tuple(sources) or (Source(source, date),)
        self.people: Mapping[str, Person] = people if people is not None else {}
        # Named records first, then file order: sorting each segment by this rank gives
        # lookup's order without sorting per call.
        ranked = sorted(
            (record for record in self.records if record.has_port),
            key=lambda record: record.status != "assigned",
        )
        everywhere = [record for record in ranked if not record.transport]
        transports = {record.transport for record in ranked if record.transport}
        self._by_transport: dict[str, _Segments] = {
            transport: _segments([r for r in ranked if r.transport in (transport, "")])
            for transport in transports
        }
        self._any: _Segments = _segments(everywhere)

    def lookup(self, port: int, transport: str) -> list[Registration]:
        """Every record covering ``port`` on ``transport`` ("tcp", "udp", ...), named first.

        Records without a transport count for every transport. An empty list means IANA
        lists nothing for the port. Raises ValueError for a port outside 0-65535.
        """
        return list(self.covering(port, transport))

    def covering(self, port: int, transport: str) -> tuple[Registration, ...]:
        """:meth:`lookup`'s records as the index holds them: one tuple, the same object for
        every port of a segment (the results layer shares a label per segment by it)."""
        if not 0 <= port <= MAX_PORT:
            raise ValueError(f"port {port} is out of range 0-{MAX_PORT}")
        starts, covering = self._by_transport.get(transport.lower(), self._any)
        index = bisect.bisect_right(starts, port) - 1
        return covering[index] if index >= 0 else ()

    def label(self, port: int, transport: str) -> Registration | None:
        """The first named assignment covering ``port`` on ``transport``, or None."""
        for record in self.lookup(port, transport):
            if record.service:
                return record
        return None

    def labels(self, port: int, transport: str) -> list[Registration]:
        """Every named assignment covering ``port`` on ``transport``, one per service name,
        in :meth:`lookup` order (465/tcp: urd and submissions in IANA's current data)."""
        seen: set[str] = set()
        named = []
        for record in self.lookup(port, transport):
            if record.service and record.service not in seen:
                seen.add(record.service)
                named.append(record)
        return named

    def person(self, field: str) -> str:
        """A person field (``"[Mike_Gossett]"``) for a reader: "Mike Gossett [Mike_Gossett]"
        resolved through :attr:`people`, else the id with spaces for underscores."""
        ids = [part for part in field.replace("]", "[").split("[") if part.strip()]
        shown = []
        for key in ids:
            known = self.people.get(key)
            name = known.display() if known is not None else ""
            shown.append(f"{name or key.replace('_', ' ')} [{key}]")
        return ", ".join(shown) if field.startswith("[") else field

    def __len__(self) -> int:
        """The number of records."""
        return len(self.records)

    def __repr__(self) -> str:
        return f"<Registry {len(self.records)} records, {self.source}>"


def _segments(records: list[Registration]) -> _Segments:
    """Cut the port space at every record boundary; list the records covering each piece.

    ``records`` are in the order lookups must return them, which each piece keeps.
    """
    starts = sorted({r.low for r in records} | {r.high + 1 for r in records})
    covering: list[list[Registration]] = [[] for _ in starts]
    for record in records:
        first = bisect.bisect_left(starts, record.low)
        stop = bisect.bisect_left(starts, record.high + 1)
        for index in range(first, stop):
            covering[index].append(record)
    return starts, [tuple(piece) for piece in covering]
