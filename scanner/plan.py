"""The probe order: a seedable permutation of the host x port space.

Rules and theory:
- Probes are spread over the whole space so that no host is hit port after port. Cell ``c``
  of the space is host ``c // len(ports)`` and port ``ports[c % len(ports)]``.
- The order is a bijection on ``[0, 2**k)`` (``2**k`` >= the size of the space) applied to a
  counter; values outside the space are skipped ("cycle walking"), so fewer than two counter
  steps are spent per cell. Nothing proportional to the space is stored.
- The bijection is a few rounds of add / xor-shift / multiply-by-odd modulo ``2**k``; each
  step is invertible, so the whole is (:meth:`Plan.locate` inverts it: when a cell comes,
  and which shard walks it). Its constants come from the seed, so a seed fixes the
  order on every machine and Python version (``random.Random`` with an int seed is stable).
- Shard ``K/N`` takes the counter values congruent to ``K`` modulo ``N``: shards of one seed
  are disjoint and together cover the space exactly.
- ``sequential`` (nmap's ``-r``) makes every round the identity: cells come in order, host
  by host and each host's ports in the order given. Shards still split it the same way.
- ``front``: the first ``front`` ports of the list (the ones most likely open, see
  ``scanner.ports.likely_open_first``) are probed on every host before the others. Each
  part is its own seeded permutation of its hosts x ports, sharded the same way, so
  shards stay disjoint and cover the whole. An open port found early gets its evidence
  while the sweep goes on, instead of after it. ``sequential`` has no front part.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")  # a port: a bare number, or a scanner.models.Port


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` equal parts of a plan."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index + 1}/{self.count} is out of range")


class Plan(Generic[P]):
    """The seeded order in which ``(host_index, port)`` pairs are probed (in order when
    ``sequential``).

    >>> plan = Plan(2, [22, 80, 443], seed=1)
    >>> sorted(plan) == [(h, p) for h in range(2) for p in (22, 80, 443)]
    True
    """

    def __init__(
        self,
        host_count: int,
        ports: Sequence[P],
        *,
        seed: int,
        shard: Shard = Shard(),
        sequential: bool = False,
        front: int = 0,
    ) -> None:
        if host_count < 0:
            raise ValueError("host_count must not be negative")
        self.host_count = host_count
        self.ports = tuple(ports)
        self.seed = seed
        self.shard = shard
        self.sequential = sequential
        self.front = front if 0 < front < len(self.ports) and not sequential else 0
        # With a front part, the plan is two plans walked one after the other.
        self._parts: tuple[Plan[P], Plan[P]] | None = None
        if self.front:
            parts_seed = random.Random(seed).getrandbits(64)
            self._parts = (
                Plan(host_count, self.ports[: self.front], seed=parts_seed, shard=shard),
                Plan(host_count, self.ports[self.front :], seed=parts_seed + 1, shard=shard),
            )
        self.size = host_count * len(self.ports)
        self._bits = max(1, (self.size - 1).bit_length())
        rng = random.Random(seed)
        mask = (1 << self._bits) - 1
        self._mask = mask
        self._add = rng.getrandbits(self._bits)
        self._mul1 = rng.getrandbits(self._bits) | 1
        self._mul2 = rng.getrandbits(self._bits) | 1
        self._shift = max(1, self._bits // 2)
        if sequential:  # nmap's -r: host by host, ports in order (the rounds become identity)
            self._add, self._mul1, self._mul2, self._shift = 0, 1, 1, self._bits
        # The multipliers' inverses modulo 2**k, for locate().
        self._inv1, self._inv2 = pow(self._mul1, -1, mask + 1), pow(self._mul2, -1, mask + 1)
        self._indexes: dict[P, int] | None = None  # port -> its index, made by locate()

    def cell(self, counter: int) -> int:
        """The permuted image of ``counter`` in ``[0, 2**k)``; a bijection on that range.

        The order of a plan without a front part; one with a front walks its two parts'
        own permutations (``_parts``) instead.
        """
        mask, shift = self._mask, self._shift
        x = (counter + self._add) & mask
        x ^= x >> shift
        x = (x * self._mul1) & mask
        x ^= x >> shift
        x = (x * self._mul2) & mask
        x ^= x >> shift
        return x

    def locate(self, host: int, port: P) -> tuple[int, int]:
        """Where the cell of ``host`` (an index) and ``port`` comes in the walk: (part,
        counter). Cells come in the order of these values (a shard's as well), and shard
        ``K/N`` walks those whose counter is ``K`` modulo ``N`` (:meth:`owns`). Raises
        KeyError for a port not in the plan."""
        indexes = self._indexes
        if indexes is None:  # (a port listed twice is found at its first place)
            indexes = self._indexes = {p: i for i, p in reversed(list(enumerate(self.ports)))}
        index = indexes[port]
        if self._parts is None:
            return 0, self._counter(host * len(self.ports) + index)
        if index < self.front:
            return 0, self._parts[0]._counter(host * self.front + index)
        rest = self._parts[1]
        return 1, rest._counter(host * len(rest.ports) + index - self.front)

    def owns(self, counter: int) -> bool:
        """Whether this plan's shard walks the cell of ``counter`` (see :meth:`locate`)."""
        return counter % self.shard.count == self.shard.index

    def _counter(self, cell: int) -> int:
        """The counter whose image is ``cell``: :meth:`cell`, inverted step by step."""
        mask, shift = self._mask, self._shift
        x = _unshift(cell, shift)
        x = _unshift((x * self._inv2) & mask, shift)
        x = _unshift((x * self._inv1) & mask, shift)
        return (x - self._add) & mask

    def __iter__(self) -> Iterator[tuple[int, P]]:
        if self._parts is not None:  # (chained in C: no generator step per cell)
            return itertools.chain.from_iterable(self._parts)
        return self._walk()

    def _walk(self) -> Iterator[tuple[int, P]]:
        size, ports, nports = self.size, self.ports, len(self.ports)
        if size == 0:
            return
        # cell(), inlined: a call per cell was a tenth of a sweep's engine time.
        mask, shift, add, mul1, mul2 = self._mask, self._shift, self._add, self._mul1, self._mul2
        for counter in range(self.shard.index, 1 << self._bits, self.shard.count):
            x = (counter + add) & mask
            x ^= x >> shift
            x = (x * mul1) & mask
            x ^= x >> shift
            x = (x * mul2) & mask
            x ^= x >> shift
            if x < size:
                host, port_index = divmod(x, nports)
                yield host, ports[port_index]

    @property
    def expected(self) -> int:
        """How many pairs this plan yields: exact unsharded, within a few per cent for a shard.

        Counting a shard exactly would mean walking it, so progress uses this estimate.
        """
        if self._parts is not None:
            return sum(part.expected for part in self._parts)
        return self.size if self.shard.count == 1 else -(-self.size // self.shard.count)


def _unshift(y: int, shift: int) -> int:
    """The ``x`` of ``y = x ^ (x >> shift)``: ``y ^ (y >> shift) ^ (y >> 2 * shift) ...``."""
    x, t = y, y >> shift
    while t:
        x ^= t
        t >>= shift
    return x
