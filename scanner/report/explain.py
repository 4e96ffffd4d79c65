"""``--explain``: why each open port got its verdict, and how to check it by hand.

Rules:
- One block per open port with an assessment, in the table's order: the verdict and what
  it rests on (the service seen, the probe that drew it, the rule that named it), the
  excerpt of the bytes that matched, what the registry says (every current name, its
  attestation), the customary uses that counted with their sources, and a command a
  person can run to check (:func:`scanner.assess.check_command`).
- Every piece comes from the assessment and the shipped customary table, so a report read
  back (``diff``, ``merge``) explains itself the same way. Text from the network (excerpt,
  detail, product) is already cleaned by the decoders and is cleaned again for the
  terminal by the caller (:func:`scanner.report.table.printable`).
"""

from __future__ import annotations

import datetime as dt

from scanner.assess import check_command, customary_for
from scanner.models import Assessment, Attestation, PortState, Result, Verdict

__all__ = ["explain_lines", "stale_note"]

_WHY = {
    Verdict.CONSISTENT: "it speaks what the registry names",
    Verdict.CUSTOMARY: "it speaks a documented unofficial use of the port",
    Verdict.CONTRADICTS: "it speaks something the registry does not name here",
    Verdict.UNRECOGNISED: "it answered, but no rule names what it speaks",
    Verdict.UNVERIFIED: "nothing it sent could be seen",
}


def explain_lines(result: Result) -> list[str]:
    """The ``--explain`` block of one result ([] unless it is open and assessed)."""
    a = result.assessment
    if result.state is not PortState.OPEN or a is None or not a.verdict:
        return []
    where = f"{result.host} {result.port}/{result.protocol.value}"
    verdict = Verdict(a.verdict)
    lines = [f"{where}: {verdict} ({_WHY[verdict]})"]
    if a.evidence:
        seen = f"{a.product} {a.version}".strip()
        lines.append(
            f"  evidence: {a.evidence}" + (f" ({seen})" if seen else "")
            + f", from probe {a.evidence_probe or '-'}, named by rule {a.evidence_rule or '-'}"
        )  # fmt: skip
    if a.evidence_detail:
        lines.append(f"  detail: {a.evidence_detail}")
    if a.evidence_excerpt:
        lines.append(f"  bytes: {a.evidence_excerpt}")
    lines.append(f"  registry: {_registry_words(a)}")
    attest = Attestation(a.attestation) if a.attestation else Attestation.UNASSIGNED
    if verdict is Verdict.CUSTOMARY:
        for use in customary_for(result.port, result.protocol.value, attest):
            if not use.services or a.evidence in use.services:
                lines.append(f"  customary use: {use.use} (source: {use.source})")
    command = check_command(result.host, result.port, result.protocol.value, a.evidence)
    lines.append(f"  check by hand: {command}")
    return lines


def _registry_words(a: Assessment) -> str:
    """The label and its attestation in words."""
    if a.label:
        return f"{a.label} ({a.attestation})"
    return f"no name ({a.attestation})"


def stale_note(registry_date: str, today: dt.date) -> str:
    """The summary's one line when the registry data is over a year old on ``today``, else "".

    ``registry_date`` is ISO (``YYYY-MM-DD``, or IANA's ``YYYY-MM``: the first of the month).
    A date that does not parse gives no note: the header line shows it as it is.
    """
    try:
        dated = dt.date.fromisoformat(
            registry_date if len(registry_date) > 7 else f"{registry_date}-01"
        )
    except ValueError:
        return ""
    if (today.year - dated.year, today.month, today.day) <= (1, dated.month, dated.day):
        return ""  # at most a year old (compared by calendar, so 29 February needs no care)
    return (
        f"note: the port registry data is dated {registry_date}, over a year old; "
        "run `portprobe registry update` for IANA's current names"
    )
