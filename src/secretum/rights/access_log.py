"""Who opened my record: every audited access to a patient's data, newest first.

Read from the audit log (``audit_entries``, ids and codes only): when, who (actor id and role;
the web layer resolves names), what (event, interaction, resource), why (v3 PurposeOfUse), the
outcome (failed and refused attempts are shown too) and whether it was a break-the-glass access
(purpose ETREAT or BTG). Reading the list is itself audited (DCM 110101 Audit Log Used).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.model import Action, Resource
from secretum.audit.model import EventAction, EventType
from secretum.audit.store import audit_entries
from secretum.records.fhir import InvalidResource, check_id
from secretum.records.service import RecordService

BREAK_GLASS_PURPOSES = frozenset({"ETREAT", "BTG"})
MAX_PAGE = 200
#: The grouped log reads at most this many of the newest entries (a patient's log is small;
#: past this the page says the oldest are left out).
MAX_SCAN = 10_000


@dataclass(frozen=True)
class AccessEntry:
    """One audited access (ids and codes; no health data)."""

    seq: int
    recorded: datetime
    actor_id: str
    actor_role: str
    event_type: str
    subtype: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    purpose: str | None
    outcome: int
    break_glass: bool


@dataclass(frozen=True)
class AccessPage:
    """A page of entries, newest first; ``next_before`` is the cursor of the next page."""

    entries: list[AccessEntry]
    next_before: int | None


def _parse_recorded(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def _entry(r: Any) -> AccessEntry:
    return AccessEntry(
        seq=r["seq"],
        recorded=_parse_recorded(r["recorded"]),
        actor_id=r["actor_id"],
        actor_role=r["actor_role"],
        event_type=r["event_type"],
        subtype=r["subtype"],
        action=r["action"],
        resource_type=r["resource_type"],
        resource_id=r["resource_id"],
        purpose=r["purpose"],
        outcome=r["outcome"],
        break_glass=r["purpose"] in BREAK_GLASS_PURPOSES,
    )


def read_access_entries(
    conn: Connection, patient_id: str, *, limit: int, before: int | None = None
) -> AccessPage:
    """Entries naming ``patient_id``, newest first, ``limit`` at most, ``seq < before``."""
    t = audit_entries.c
    query = select(audit_entries).where(t.patient_id == patient_id)
    if before is not None:
        query = query.where(t.seq < before)
    rows = conn.execute(query.order_by(t.seq.desc()).limit(limit + 1)).mappings().all()
    entries = [_entry(r) for r in rows[:limit]]
    more = len(rows) > limit
    return AccessPage(entries, entries[-1].seq if more and entries else None)


def entries_under_grant(
    conn: Connection,
    patient_id: str,
    actor_id: str,
    since: datetime,
    until: datetime,
    *,
    limit: int = MAX_PAGE,
) -> list[AccessEntry]:
    """What ``actor_id`` did with the patient's data under a break-the-glass grant (entries
    with the emergency purpose between ``since`` and ``until``), newest first."""
    t = audit_entries.c
    query = (
        select(audit_entries)
        .where(
            t.patient_id == patient_id,
            t.actor_id == actor_id,
            t.purpose.in_(sorted(BREAK_GLASS_PURPOSES)),
        )
        .order_by(t.seq.desc())
    )
    found = []
    for r in conn.execute(query).mappings():
        recorded = _parse_recorded(r["recorded"])
        if recorded < since:
            break  # (newest first: the rest is older still)
        if recorded <= until:
            found.append(_entry(r))
            if len(found) == limit:
                break
    return found


def access_history(
    records: RecordService,
    ctx: RequestContext,
    patient_id: str,
    *,
    limit: int = 50,
    before: int | None = None,
) -> AccessPage:
    """Who accessed the data of ``patient_id``; guarded (READ_ACCESS_LOG) and audited."""
    attempt = Attempt(ctx, EventType.AUDIT_LOG_USED, "search", EventAction.READ)

    def work(conn: Connection) -> AccessPage:
        pid = check_id(patient_id, "patient")
        if not 1 <= limit <= MAX_PAGE or (before is not None and before < 0):
            raise InvalidResource(f"a page holds 1 to {MAX_PAGE} entries, after a cursor >= 0")
        resource = Resource("AuditEvent", pid)
        records.door.authorize(conn, attempt, Action.READ_ACCESS_LOG, resource)
        attempt.target("Patient", pid, pid)
        return read_access_entries(conn, pid, limit=limit, before=before)

    return records.door.read(attempt, work)


# -- the log in a patient's words: repeated accesses grouped --------------------------------

#: DICOM subtypes of the emergency access (start / end)
_EMERGENCY = {"110127": "emergency-start", "110138": "emergency-end"}
_ACTIONS = {"R": "view", "C": "create", "U": "update", "D": "delete"}


def kind_of(entry: AccessEntry) -> str:
    """What was done, as a patient would say it: ``view``, ``create``, ``update``,
    ``delete``, ``export``, ``log`` (the access log or the audit about them was read),
    ``emergency-start`` / ``emergency-end``, or ``other``."""
    if entry.subtype in _EMERGENCY:
        return _EMERGENCY[entry.subtype]
    if entry.event_type == EventType.AUDIT_LOG_USED:
        return "log"
    if entry.event_type == EventType.EXPORT:
        return "export"
    return _ACTIONS.get(entry.action, "other")


def _outcome_class(outcome: int) -> int:
    """0 (done), 4 (refused) or 8 (failed): the three a patient is shown."""
    return 0 if outcome == 0 else 4 if outcome == 4 else 8


@dataclass(frozen=True)
class AccessGroup:
    """Accesses of one person, for one purpose, on one day (clinic time), of one kind and one
    outcome: how many, the first and last time."""

    actor_id: str
    actor_role: str
    purpose: str | None
    day: date
    kind: str
    outcome: int
    count: int
    first: datetime
    last: datetime
    break_glass: bool


@dataclass(frozen=True)
class GroupPage:
    """One page of groups, newest first; ``page`` counts from 1."""

    groups: list[AccessGroup]
    page: int
    has_next: bool
    truncated: bool  # more than MAX_SCAN entries: the oldest are not grouped


def group_accesses(entries: list[AccessEntry], tz: tzinfo) -> list[AccessGroup]:
    """Group ``entries`` (newest first) by (actor, purpose, day in ``tz``, kind, outcome);
    the groups come newest first (by their last access)."""
    found: dict[tuple[str, str | None, date, str, int], list[AccessEntry]] = {}
    for entry in entries:
        key = (
            entry.actor_id,
            entry.purpose,
            entry.recorded.astimezone(tz).date(),
            kind_of(entry),
            _outcome_class(entry.outcome),
        )
        found.setdefault(key, []).append(entry)
    groups = [
        AccessGroup(
            actor_id=actor_id,
            actor_role=members[0].actor_role,
            purpose=purpose,
            day=day,
            kind=kind,
            outcome=outcome,
            count=len(members),
            first=min(m.recorded for m in members),
            last=max(m.recorded for m in members),
            break_glass=purpose in BREAK_GLASS_PURPOSES,
        )
        for (actor_id, purpose, day, kind, outcome), members in found.items()
    ]
    return sorted(groups, key=lambda g: (g.last, g.actor_id, g.kind), reverse=True)


def grouped_access_history(
    records: RecordService,
    ctx: RequestContext,
    patient_id: str,
    tz: tzinfo,
    *,
    page: int = 1,
    per_page: int = 50,
) -> GroupPage:
    """Who accessed the data of ``patient_id``, grouped for a patient (see
    :func:`group_accesses`), ``per_page`` groups a page; guarded (READ_ACCESS_LOG) and
    audited like :func:`access_history`."""
    attempt = Attempt(ctx, EventType.AUDIT_LOG_USED, "search", EventAction.READ)

    def work(conn: Connection) -> GroupPage:
        pid = check_id(patient_id, "patient")
        if not 1 <= per_page <= MAX_PAGE or not 1 <= page <= MAX_SCAN:
            raise InvalidResource(f"a page holds 1 to {MAX_PAGE} groups; pages count from 1")
        resource = Resource("AuditEvent", pid)
        records.door.authorize(conn, attempt, Action.READ_ACCESS_LOG, resource)
        attempt.target("Patient", pid, pid)
        read = read_access_entries(conn, pid, limit=MAX_SCAN)
        groups = group_accesses(read.entries, tz)
        start = (page - 1) * per_page
        return GroupPage(
            groups[start : start + per_page],
            page,
            len(groups) > start + per_page,
            read.next_before is not None,
        )

    return records.door.read(attempt, work)
