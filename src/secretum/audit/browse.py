"""The DPO's views of the audit log: the history of its verifications, and browsing its entries
with filters. Store primitives only (no policy here): the guarded, audited use cases that call
them are in :mod:`secretum.policy.oversight`.

Verifications are kept so that "Verify now" is a POST that redirects (303) to a page showing
its result: a refresh of that page re-reads the result, it never verifies again. A row holds
ids, codes and counts only: when, by whom, ok, the first finding's kind and entry, counts.

Browsing reads ``audit_entries``: ids and codes, never health data (the log holds none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.engine import Connection

from secretum.audit.model import format_time
from secretum.audit.store import audit_entries
from secretum.audit.verify import VerifyReport
from secretum.storage.db import metadata

#: Verifications shown on the DPO's page (the newest first).
HISTORY = 20
#: Entries per page when browsing, at most.
MAX_PAGE = 200

audit_verifications = Table(
    "audit_verifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("verified_at", DateTime(timezone=True), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("entries_verified", BigInteger, nullable=False),
    Column("checkpoints_verified", Integer, nullable=False),
    Column("findings", Integer, nullable=False),
    Column("first_kind", String(32)),
    Column("first_seq", BigInteger),
)


@dataclass(frozen=True)
class Verification:
    """One verification of the whole log: its outcome in ids, codes and counts."""

    id: int
    verified_at: datetime
    actor_id: str
    ok: bool
    entries_verified: int
    checkpoints_verified: int
    findings: int
    first_kind: str | None
    first_seq: int | None


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def record_verification(
    conn: Connection, report: VerifyReport, actor_id: str, now: datetime
) -> int:
    """Keep the outcome of a verification (never a finding's message: codes and counts)."""
    first = report.first
    result = conn.execute(
        insert(audit_verifications).values(
            verified_at=now,
            actor_id=actor_id,
            ok=report.ok,
            entries_verified=report.entries_verified,
            checkpoints_verified=report.checkpoints_verified,
            findings=len(report.findings),
            first_kind=None if first is None else str(first.kind),
            first_seq=None if first is None else first.seq,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def recent_verifications(conn: Connection, limit: int = HISTORY) -> list[Verification]:
    """The last ``limit`` verifications, newest first."""
    t = audit_verifications.c
    rows = conn.execute(select(audit_verifications).order_by(t.id.desc()).limit(limit)).mappings()
    return [
        Verification(
            id=r["id"],
            verified_at=_utc(r["verified_at"]),
            actor_id=r["actor_id"],
            ok=bool(r["ok"]),
            entries_verified=r["entries_verified"],
            checkpoints_verified=r["checkpoints_verified"],
            findings=r["findings"],
            first_kind=r["first_kind"],
            first_seq=r["first_seq"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class EntryFilter:
    """What the DPO looks for; every field optional. Times are inclusive bounds (UTC)."""

    since: datetime | None = None
    until: datetime | None = None
    actor_id: str | None = None
    patient_id: str | None = None
    event_type: str | None = None
    outcome: int | None = None


@dataclass(frozen=True)
class Entry:
    """One audit entry as the DPO sees it: ids and codes."""

    seq: int
    recorded: datetime
    event_type: str
    subtype: str | None
    action: str
    outcome: int
    actor_id: str
    actor_role: str
    resource_type: str | None
    resource_id: str | None
    patient_id: str | None
    purpose: str | None
    source_address: str | None


@dataclass(frozen=True)
class EntryPage:
    """Entries newest first; ``next_before`` is the cursor of the older page, if any."""

    entries: list[Entry]
    next_before: int | None


def _entry(r: Any) -> Entry:
    return Entry(
        seq=r["seq"],
        recorded=datetime.fromisoformat(r["recorded"].removesuffix("Z")).replace(tzinfo=UTC),
        event_type=r["event_type"],
        subtype=r["subtype"],
        action=r["action"],
        outcome=r["outcome"],
        actor_id=r["actor_id"],
        actor_role=r["actor_role"],
        resource_type=r["resource_type"],
        resource_id=r["resource_id"],
        patient_id=r["patient_id"],
        purpose=r["purpose"],
        source_address=r["source_address"],
    )


def browse_entries(
    conn: Connection, wanted: EntryFilter, *, limit: int = 50, before: int | None = None
) -> EntryPage:
    """Entries matching ``wanted``, newest first, ``limit`` at most, ``seq < before``.
    ``recorded`` is stored as fixed-width UTC text (:func:`format_time`), so its text order
    is its time order and the bounds compare as text."""
    t = audit_entries.c
    query = select(audit_entries)
    if wanted.since is not None:
        query = query.where(t.recorded >= format_time(wanted.since))
    if wanted.until is not None:
        query = query.where(t.recorded <= format_time(wanted.until))
    if wanted.actor_id:
        query = query.where(t.actor_id == wanted.actor_id)
    if wanted.patient_id:
        query = query.where(t.patient_id == wanted.patient_id)
    if wanted.event_type:
        query = query.where(t.event_type == wanted.event_type)
    if wanted.outcome is not None:
        query = query.where(t.outcome == wanted.outcome)
    if before is not None:
        query = query.where(t.seq < before)
    rows = conn.execute(query.order_by(t.seq.desc()).limit(limit + 1)).mappings().all()
    entries = [_entry(r) for r in rows[:limit]]
    more = len(rows) > limit
    return EntryPage(entries, entries[-1].seq if more and entries else None)
