"""Break-the-glass grants and their reviews: the store's primitives.

:class:`secretum.policy.breakglass.BreakGlassService` decides, seals, audits and notifies
around these. A grant is active from ``granted_at`` until ``expires_at`` (exclusive) unless
closed earlier; every test of it takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    Exists,
    String,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from secretum.policy.tables import break_glass_grants, break_glass_reviews, from_db, utc
from secretum.storage.integrity import RowSpec

#: What the tag of a grant covers (see :mod:`secretum.storage.integrity`): a grant inserted,
#: extended, reopened or moved to another practitioner or patient is refused by the decision.
GRANT_SPEC = RowSpec(
    "break_glass_grants",
    ("grant_id",),
    ("patient_id", "practitioner_id", "key_id", "granted_at", "expires_at", "closed_at"),
)


class ReviewOutcome(StrEnum):
    """The DPO's conclusion on one break-the-glass access."""

    JUSTIFIED = "justified"
    UNJUSTIFIED = "unjustified"
    #: the DPO asks the practitioner (or their head of department) for more
    NEEDS_FOLLOW_UP = "needs-follow-up"


@dataclass(frozen=True, slots=True)
class Review:
    reviewer_id: str
    outcome: ReviewOutcome
    reviewed_at: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    """One break-the-glass grant: ids and times only (the reason stays sealed)."""

    grant_id: str
    patient_id: str
    practitioner_id: str
    granted_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    review: Review | None = None

    def active(self, now: datetime) -> bool:
        """Holds at ``now``: granted, not expired, not closed."""
        now = utc(now)
        return self.granted_at <= now < self.expires_at and (
            self.closed_at is None or now < self.closed_at
        )


def insert_grant(
    conn: Connection,
    *,
    grant_id: str,
    patient_id: str,
    practitioner_id: str,
    key_id: bytes,
    reason_sealed: bytes,
    granted_at: datetime,
    expires_at: datetime,
) -> None:
    row = dict(
        grant_id=grant_id,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        key_id=key_id,
        granted_at=utc(granted_at),
        expires_at=utc(expires_at),
        closed_at=None,
    )
    conn.execute(
        insert(break_glass_grants).values(
            reason_sealed=reason_sealed, **GRANT_SPEC.tagged(conn, row)
        )
    )


def active_grant_exists(
    practitioner_id: ColumnElement[Any], patient_id: ColumnElement[Any], now: ColumnElement[Any]
) -> Exists:
    """SQL ``EXISTS`` of :func:`has_active_grant`, its arguments SQL expressions (to compose)."""
    return exists().where(active_grant_condition(practitioner_id, patient_id, now))


def active_grant_condition(
    practitioner_id: ColumnElement[Any], patient_id: ColumnElement[Any], now: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The condition on a row of ``break_glass_grants`` that makes it an active grant."""
    g = break_glass_grants.c
    return and_(
        g.practitioner_id == practitioner_id,
        g.patient_id == patient_id,
        g.granted_at <= now,
        g.expires_at > now,
        or_(g.closed_at.is_(None), g.closed_at > now),
    )


#: Built once from bind parameters: SQLAlchemy reuses its compiled form.
_HAS_ACTIVE_GRANT = select(
    active_grant_exists(
        bindparam("practitioner_id", type_=String()),
        bindparam("patient_id", type_=String()),
        bindparam("now", type_=DateTime(timezone=True)),
    )
)


def has_active_grant(
    conn: Connection, practitioner_id: str, patient_id: str, now: datetime
) -> bool:
    """Whether ``practitioner_id`` holds an active grant on ``patient_id`` at ``now``."""
    params = {"practitioner_id": practitioner_id, "patient_id": patient_id, "now": utc(now)}
    return bool(conn.execute(_HAS_ACTIVE_GRANT, params).scalar())


_JOINED = break_glass_grants.outerjoin(
    break_glass_reviews, break_glass_reviews.c.grant_id == break_glass_grants.c.grant_id
)
_COLUMNS = (
    break_glass_grants.c.grant_id,
    break_glass_grants.c.patient_id,
    break_glass_grants.c.practitioner_id,
    break_glass_grants.c.granted_at,
    break_glass_grants.c.expires_at,
    break_glass_grants.c.closed_at,
    break_glass_reviews.c.reviewer_id,
    break_glass_reviews.c.outcome,
    break_glass_reviews.c.reviewed_at,
)


def _grant(row: RowMapping) -> Grant:
    review = None
    if row["reviewed_at"] is not None:
        review = Review(
            row["reviewer_id"],
            ReviewOutcome(row["outcome"]),
            from_db(row["reviewed_at"]) or row["reviewed_at"],
        )
    return Grant(
        grant_id=row["grant_id"],
        patient_id=row["patient_id"],
        practitioner_id=row["practitioner_id"],
        granted_at=from_db(row["granted_at"]) or row["granted_at"],
        expires_at=from_db(row["expires_at"]) or row["expires_at"],
        closed_at=from_db(row["closed_at"]),
        review=review,
    )


def get_grant(conn: Connection, grant_id: str) -> Grant | None:
    row = (
        conn.execute(
            select(*_COLUMNS).select_from(_JOINED).where(break_glass_grants.c.grant_id == grant_id)
        )
        .mappings()
        .first()
    )
    return None if row is None else _grant(row)


def sealed_reason(conn: Connection, grant_id: str) -> tuple[str, bytes, bytes] | None:
    """``(patient_id, key_id, sealed reason)`` of a grant."""
    g = break_glass_grants.c
    row = conn.execute(
        select(g.patient_id, g.key_id, g.reason_sealed).where(g.grant_id == grant_id)
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def grants_of_patient(conn: Connection, patient_id: str) -> list[Grant]:
    """Every grant on ``patient_id``, newest first (what the patient is shown)."""
    rows = conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(break_glass_grants.c.patient_id == patient_id)
        .order_by(break_glass_grants.c.granted_at.desc(), break_glass_grants.c.grant_id)
    ).mappings()
    return [_grant(r) for r in rows]


def pending_reviews(conn: Connection) -> list[Grant]:
    """Grants no DPO has reviewed yet, oldest first: ids and times, never the reason.

    The caller checks that its actor may review (``Action.REVIEW_BREAK_GLASS``).
    """
    rows = conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(break_glass_reviews.c.grant_id.is_(None))
        .order_by(break_glass_grants.c.granted_at, break_glass_grants.c.grant_id)
    ).mappings()
    return [_grant(r) for r in rows]


def insert_review(
    conn: Connection, grant_id: str, reviewer_id: str, outcome: ReviewOutcome, now: datetime
) -> None:
    """Record the review of ``grant_id`` (once: a second one is an integrity error)."""
    conn.execute(
        insert(break_glass_reviews).values(
            grant_id=grant_id,
            reviewer_id=reviewer_id,
            outcome=str(ReviewOutcome(outcome)),
            reviewed_at=utc(now),
        )
    )


def close_grant(conn: Connection, grant_id: str, now: datetime, by: str) -> bool:
    """Close an open grant at ``now`` (early stop, or after expiry); False if already closed.

    The row is re-tagged with its closing, its tag checked first (RowTampered)."""
    g = break_glass_grants.c
    open_ = (g.grant_id == grant_id, g.closed_at.is_(None))
    row = conn.execute(select(break_glass_grants).where(*open_).with_for_update()).mappings()
    found = row.first()
    if found is None:
        return False
    GRANT_SPEC.check(conn, found)
    values = {"closed_at": utc(now), "closed_by": by}
    tag = GRANT_SPEC.tag(conn, {**found, **values})
    result = conn.execute(update(break_glass_grants).where(*open_).values(**values, row_mac=tag))
    return result.rowcount == 1


def expired_unclosed(conn: Connection, now: datetime) -> list[Grant]:
    """Grants past their expiry that no one closed yet (for the periodic duty)."""
    g = break_glass_grants.c
    rows = conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(g.closed_at.is_(None), g.expires_at <= utc(now))
        .order_by(g.expires_at, g.grant_id)
    ).mappings()
    return [_grant(r) for r in rows]


def reviewed_grants(conn: Connection, *, limit: int, offset: int = 0) -> list[Grant]:
    """Grants a DPO has reviewed, the latest review first (the DPO's review history): ids,
    times and outcomes, never the reason. The caller checks ``Action.REVIEW_BREAK_GLASS``."""
    rows = conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(break_glass_reviews.c.grant_id.is_not(None))
        .order_by(break_glass_reviews.c.reviewed_at.desc(), break_glass_grants.c.grant_id)
        .limit(limit)
        .offset(offset)
    ).mappings()
    return [_grant(r) for r in rows]
