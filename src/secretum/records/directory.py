"""Finding a patient: in "my patients" (by name, INS or e-mail), and for a break-the-glass
declaration (by INS only).

Names are sealed with each patient's key, so there is no index to search them: a name search
runs over the names the practitioner has *already* read through the guarded, audited reads of
their own patients' list, in memory, and the search itself leaves one audit entry (DCM 110112
Query, search; never the words searched: the audit holds ids and codes only). An INS or an
e-mail is looked up exactly through the blind index (:meth:`RecordService.find_patients`,
guarded and audited).

Break-the-glass targets a patient *outside* the care team, so nothing of theirs may be listed
or searched by name: that would let anyone enumerate the clinic's patients. The practitioner
types the INS (from the patient's card or the emergency file); an exact blind-index match
yields the one patient, and only after the step-up that the declaration needs anyway (the
policy's ``allow.declare-break-glass``), so an INS cannot be probed without it. Each lookup is
audited, naming the patient when one is found.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.errors import AccessDenied, StepUpRequired
from secretum.access.model import (
    STEP_UP,
    STEP_UP_REASON,
    Action,
    Decision,
    Resource,
    step_up_is_fresh,
)
from secretum.audit.model import EventAction, EventType
from secretum.records.service import RecordService

#: An INS (NIR or NIA): 13 digits and a 2-digit key, spaces allowed; Corsica's 2A/2B too.
INS_SHAPE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}[0-9]{2}", re.IGNORECASE)
MAX_QUERY = 200


def ins_value(text: str) -> str | None:
    """``text`` as an INS without spaces, or None when it does not have the shape of one."""
    compact = "".join(text.split()).upper()
    return compact if INS_SHAPE.fullmatch(compact) else None


def _folded(text: str) -> str:
    """Case and accents folded: "Zéphyrin" and "zephyrin" match."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def search_my_patients(
    records: RecordService, ctx: RequestContext, names: Mapping[str, str], query: str
) -> set[str]:
    """Which of my patients match ``query``. ``names`` maps each of my patients' ids to the
    name already read (guarded, audited) for this page ("" when not readable). An INS or an
    e-mail is looked up exactly (blind index, guarded and audited); anything else matches
    the words of the names, case and accents aside, and is audited as one search through the
    door (its own rule: the names were already read under the policy, nothing new is)."""
    text = query.strip()[:MAX_QUERY]
    if not text:
        return set(names)
    ins = ins_value(text)
    if ins is not None or "@" in text:
        kind, value = ("ins", ins) if ins is not None else ("email", text)
        try:
            found = records.find_patients(ctx, kind, value)
        except AccessDenied:  # none, or none I may see: the same answer
            return set()
        return {r.patient_id for r in found if r.patient_id is not None and r.patient_id in names}
    words = _folded(text).split()
    attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

    def work(_conn: Connection) -> set[str]:
        records.door.rule(attempt, Decision(True, "allow.own-patients-names"))
        return {pid for pid, name in names.items() if all(w in _folded(name) for w in words)}

    return records.door.read(attempt, work)


def emergency_lookup(records: RecordService, ctx: RequestContext, ins: str) -> str | None:
    """The one patient whose INS is ``ins``, for a break-the-glass declaration (``ctx``: purpose
    EMERGENCY); None when no patient, or several (an INS collision: the declaration then needs
    the patient's id). The policy decides first (``BREAK_GLASS``: a practitioner with a fresh
    second factor, else StepUpRequired), on the patient found or on no patient alike, so the
    answer is never given before the step-up. Audited (DCM 110110, search, E)."""
    if not step_up_is_fresh(ctx.actor, ctx.now):  # before looking anything up: no oracle
        raise StepUpRequired(Decision(False, STEP_UP_REASON, requires=(STEP_UP,)))
    value = ins_value(ins)
    attempt = Attempt(ctx, EventType.PATIENT_RECORD, "search", EventAction.EXECUTE)

    def work(conn: Connection) -> str | None:
        holders = [] if value is None else records.repo.patients_by_identifier(conn, "ins", value)
        target = holders[0] if len(holders) == 1 else None
        resource = Resource("Patient", target, target) if target else Resource("Patient")
        records.door.authorize(conn, attempt, Action.BREAK_GLASS, resource)
        if target is not None:
            attempt.target("Patient", target, target)
        return target

    try:
        return records.door.read(attempt, work)
    except StepUpRequired:
        raise
    except AccessDenied:
        return None  # no such patient (the refusal is on record): the same answer as several
