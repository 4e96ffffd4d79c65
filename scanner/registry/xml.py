"""IANA's XML format of the port registry (``service-names-port-numbers.xml``): the parser.

IANA keeps the registry in this format and generates its CSV from it; it is the only one
that names people (the ``<people>`` section) as well as citing them.

Rules:
- The document is IANA's ``<registry>`` in the namespace ``http://www.iana.org/assignments``
  (a document without the namespace reads too). Its ``<updated>`` is the registry's date.
- Each ``<record>`` becomes one :class:`~scanner.registry.parse.Registration`, with the
  same text IANA's CSV gives for it:

  ``name``, ``protocol``, ``number``
      service, transport (lower-cased), port ``N`` or range ``N-M`` (checked as the CSV
      parser checks them; a record needs a name or a number);
  ``description``
      its text; each ``<br/>`` is a line break, as in the CSV;
  ``<assignee>``, the record's own ``<xref type="person">``
      assignee and contact as ``[Person_Id]``; a record without ``<assignee>`` has its
      contact as assignee too (so does IANA's CSV);
  the ``date`` and ``updated`` attributes
      registration and modification dates as given (``2002-04``, ``2017-12-04``);
  every other ``<xref>``
      the reference, each as ``[...]`` in document order: ``rfc6335`` is ``[RFC6335]``,
      a draft, URI or footnote its ``data`` (a footnote's number), a ``text`` xref its text;
  ``<sc>``, ``<unauthorized>``, ``<note>``
      service code, unauthorized use reported, assignment notes (paragraphs one a line).
- ``<people>`` maps each person id to a :class:`Person` (name, organisation, URI, date).
- The input is untrusted: a document type declaration (and so any entity) is refused, as
  are a wrong root, a bad port, range or transport. Any fault is one
  :class:`~scanner.registry.parse.RegistryError` line naming the record; no other
  exception escapes :func:`parse_registry_xml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.etree import ElementTree

from scanner.registry.parse import Registration, RegistryError, check_record

__all__ = ["IanaXml", "Person", "looks_like_xml", "parse_registry_xml"]

_NS = "{http://www.iana.org/assignments}"
_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_SPACE = re.compile(r"\s*\n\s*")


@dataclass(frozen=True, slots=True)
class Person:
    """One entry of the registry's ``<people>``: ``name`` (may be empty for an
    organisation), ``org``, ``uri`` (IANA writes ``@`` in mail addresses as ``&``) and
    ``updated``, the date IANA last changed the entry ("" if none)."""

    name: str = ""
    org: str = ""
    uri: str = ""
    updated: str = ""

    def display(self) -> str:
        """The person as a reader wants them: "Mike Gossett", "Julian Simpson (Neo ...)"."""
        if self.name and self.org:
            return f"{self.name} ({self.org})"
        return self.name or self.org


@dataclass(frozen=True, slots=True)
class IanaXml:
    """What :func:`parse_registry_xml` reads: the records, the people, and the registry's
    ``<updated>`` date ("" when the document has none)."""

    records: list[Registration]
    people: dict[str, Person] = field(default_factory=dict)
    updated: str = ""


def looks_like_xml(text: str) -> bool:
    """Whether ``text`` is an XML document rather than a CSV (its first character is ``<``)."""
    return text.lstrip("\ufeff \t\r\n").startswith("<")


def parse_registry_xml(text: str) -> IanaXml:
    """Parse IANA's registry XML (see the module rules); RegistryError on any fault."""
    if _DOCTYPE.search(text):
        raise RegistryError("XML with a document type declaration is not accepted")
    try:
        root = ElementTree.fromstring(text.removeprefix("\ufeff"))
    except ElementTree.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise RegistryError(f"line {line}: malformed XML") from None
    except (ValueError, RecursionError):
        raise RegistryError("malformed XML") from None
    ns = _NS if root.tag.startswith(_NS) else ""
    if root.tag != f"{ns}registry":
        raise RegistryError("not IANA's registry XML (the root is not <registry>)")
    records = [
        _record(element, ns, number)
        for number, element in enumerate(root.iter(f"{ns}record"), start=1)
    ]
    people: dict[str, Person] = {}
    for person in root.iter(f"{ns}person"):
        key = person.get("id")
        if key:
            people[key] = Person(
                name=_text(person.find(f"{ns}name")),
                org=_text(person.find(f"{ns}org")),
                uri=_text(person.find(f"{ns}uri")),
                updated=_text(person.find(f"{ns}updated")),
            )
    return IanaXml(records, people, _text(root.find(f"{ns}updated")))


def _record(element: ElementTree.Element, ns: str, number: int) -> Registration:
    """One ``<record>`` as a Registration; RegistryError naming it by ``number``.

    One pass over the record's children (a registry has some 14,000 records).
    """
    texts: dict[str, str] = {}
    contact = ""
    assignee: str | None = None
    references: list[str] = []
    notes = ""
    cut = len(ns)
    for child in element:
        tag = child.tag[cut:] if child.tag.startswith(ns) else child.tag
        if tag == "xref":
            kind, data = child.get("type", ""), child.get("data", "")
            if kind == "person":
                contact = contact or f"[{data}]"
            elif kind == "rfc":
                references.append(f"[{data.upper()}]")
            elif kind == "text":
                references.append(f"[{_text(child)}]")
            elif data:
                references.append(f"[{data}]")
        elif tag == "assignee":
            people = [x.get("data", "") for x in child.iter(f"{ns}xref")]
            assignee = "".join(f"[{p}]" for p in people if p)
        elif tag == "note":
            paragraphs = child.findall(f"{ns}paragraph")
            notes = "\n".join(_text(p) for p in paragraphs) if paragraphs else _text(child)
        elif tag not in texts:
            texts[tag] = _text(child)
    return check_record(
        [
            texts.get("name", ""),
            texts.get("number", ""),
            texts.get("protocol", ""),
            texts.get("description", ""),
            contact if assignee is None else assignee,
            contact,
            element.get("date", ""),
            element.get("updated", ""),
            "".join(references),
            texts.get("sc", ""),
            texts.get("unauthorized", ""),
            notes,
        ],
        f"record {number}",
    )


def _text(element: ElementTree.Element | None) -> str:
    """The text of ``element`` with ``<br/>`` as line breaks, lines stripped ("" for None)."""
    if element is None:
        return ""
    if len(element) == 0 and "\n" not in (element.text or ""):  # the common case
        return (element.text or "").strip()
    parts: list[str] = [element.text or ""]
    for child in element:
        if child.tag.endswith("br"):
            parts.append("\n")
        else:
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    return _SPACE.sub("\n", "".join(parts)).strip()
