"""Care relationships and the practitioners a patient named for restricted data.

A practitioner is in a patient's care team through an appointment, a referral or the patient's
own invitation. Each relationship has a start, may have a planned end (``until``) and may be
ended early (:func:`end`). Whether it holds is always asked for a given ``now``: nothing is
cached, so an ending is effective on the very next request.

These are the store's primitives, run in the caller's transaction: the context that opens a
relationship (an appointment booked, a referral accepted, an invitation sent) decides and
audits the act that opens it. The patient's own choices (invitation, naming for restricted data)
go through :class:`secretum.policy.choices.PatientChoices`, which decides and audits.
"""

from __future__ import annotations

import secrets
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

from secretum.policy.tables import care_relationships, from_db, restricted_data_named, utc
from secretum.storage.integrity import RowSpec

#: What the tag of a care relationship covers (see :mod:`secretum.storage.integrity`): a row
#: inserted, moved to another patient or practitioner, or reopened is refused by the decision.
CARE_SPEC = RowSpec(
    "care_relationships",
    ("relationship_id",),
    ("patient_id", "practitioner_id", "basis", "source_id", "started_at", "ends_at", "ended_at"),
)
#: What the tag of a naming for restricted data covers.
NAMED_SPEC = RowSpec(
    "restricted_data_named",
    ("naming_id",),
    ("patient_id", "practitioner_id", "named_at", "revoked_at"),
)


class CareBasis(StrEnum):
    """What put the practitioner in the care team."""

    APPOINTMENT = "appointment"
    REFERRAL = "referral"
    INVITATION = "invitation"  # the patient's own invitation


@dataclass(frozen=True, slots=True)
class CareRelationship:
    relationship_id: str
    patient_id: str
    practitioner_id: str
    basis: CareBasis
    source_id: str | None
    started_at: datetime
    ends_at: datetime | None
    ended_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Holds at ``now``: started, not past its planned end, not ended."""
        now = utc(now)
        return (
            self.started_at <= now
            and (self.ends_at is None or now < self.ends_at)
            and (self.ended_at is None or now < self.ended_at)
        )


def start(
    conn: Connection,
    *,
    patient_id: str,
    practitioner_id: str,
    basis: CareBasis,
    now: datetime,
    until: datetime | None = None,
    source_id: str | None = None,
) -> str:
    """Open a care relationship from ``now`` (to ``until`` if given); returns its id."""
    if patient_id == practitioner_id:
        raise ValueError("a practitioner is not in their own care team")
    now = utc(now)
    if until is not None and utc(until) <= now:
        raise ValueError("a care relationship ends after it starts")
    relationship_id = secrets.token_hex(16)
    row = dict(
        relationship_id=relationship_id,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        basis=str(CareBasis(basis)),
        source_id=source_id,
        started_at=now,
        ends_at=None if until is None else utc(until),
        ended_at=None,
    )
    conn.execute(insert(care_relationships).values(**CARE_SPEC.tagged(conn, row)))
    return relationship_id


def end(conn: Connection, relationship_id: str, now: datetime, *, by: str | None = None) -> bool:
    """End a relationship at ``now``; False if it was unknown or already ended.

    The row is re-tagged with its end; its tag is checked first (RowTampered), so that a
    tampered row is never laundered by a new tag."""
    c = care_relationships.c
    open_ = and_(c.relationship_id == relationship_id, c.ended_at.is_(None))
    row = conn.execute(select(care_relationships).where(open_).with_for_update()).mappings().first()
    if row is None:
        return False
    CARE_SPEC.check(conn, row)
    values = {"ended_at": utc(now), "ended_by": by}
    tag = CARE_SPEC.tag(conn, {**row, **values})
    result = conn.execute(update(care_relationships).where(open_).values(**values, row_mac=tag))
    return result.rowcount == 1


def _active_relationship(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    c = care_relationships.c
    return and_(
        c.started_at <= now,
        or_(c.ends_at.is_(None), c.ends_at > now),
        or_(c.ended_at.is_(None), c.ended_at > now),
    )


# Statements built once from bind parameters: SQLAlchemy reuses their compiled form.
_PATIENT = bindparam("patient_id", type_=String())
_PRACTITIONER = bindparam("practitioner_id", type_=String())
_NOW = bindparam("now", type_=DateTime(timezone=True))


def in_care_team_exists(
    practitioner_id: ColumnElement[Any], patient_id: ColumnElement[Any], now: ColumnElement[Any]
) -> Exists:
    """SQL ``EXISTS`` of :func:`in_care_team`, its arguments SQL expressions (to compose)."""
    return exists().where(in_care_team_condition(practitioner_id, patient_id, now))


def in_care_team_condition(
    practitioner_id: ColumnElement[Any], patient_id: ColumnElement[Any], now: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The condition on a row of ``care_relationships`` that puts it in the care team."""
    c = care_relationships.c
    return and_(
        c.patient_id == patient_id, c.practitioner_id == practitioner_id, _active_relationship(now)
    )


_IN_CARE_TEAM = select(in_care_team_exists(_PRACTITIONER, _PATIENT, _NOW))


def in_care_team(conn: Connection, practitioner_id: str, patient_id: str, now: datetime) -> bool:
    """Whether ``practitioner_id`` is in ``patient_id``'s care team at ``now``."""
    params = {"practitioner_id": practitioner_id, "patient_id": patient_id, "now": utc(now)}
    return bool(conn.execute(_IN_CARE_TEAM, params).scalar())


def _relationship(row: RowMapping) -> CareRelationship:
    started = from_db(row["started_at"])
    assert started is not None
    return CareRelationship(
        relationship_id=row["relationship_id"],
        patient_id=row["patient_id"],
        practitioner_id=row["practitioner_id"],
        basis=CareBasis(row["basis"]),
        source_id=row["source_id"],
        started_at=started,
        ends_at=from_db(row["ends_at"]),
        ended_at=from_db(row["ended_at"]),
    )


def care_team(conn: Connection, patient_id: str, now: datetime) -> list[CareRelationship]:
    """The relationships of ``patient_id`` that hold at ``now``, oldest first."""
    c = care_relationships.c
    rows = conn.execute(
        select(care_relationships)
        .where(c.patient_id == patient_id, _active_relationship(utc(now)))
        .order_by(c.started_at, c.relationship_id)
    ).mappings()
    return [_relationship(r) for r in rows]


def relationships(conn: Connection, patient_id: str) -> list[CareRelationship]:
    """Every relationship of ``patient_id``, ended ones included, oldest first."""
    c = care_relationships.c
    rows = conn.execute(
        select(care_relationships)
        .where(c.patient_id == patient_id)
        .order_by(c.started_at, c.relationship_id)
    ).mappings()
    return [_relationship(r) for r in rows]


# -- practitioners named for restricted data -----------------------------------------------------


def name_for_restricted(
    conn: Connection, patient_id: str, practitioner_id: str, now: datetime
) -> str:
    """The patient names ``practitioner_id`` for their restricted data (mental health, HIV...),
    from ``now`` until revoked. Returns the naming id (an existing one if already named)."""
    now = utc(now)
    existing = _active_naming(conn, patient_id, practitioner_id, now)
    if existing is not None:
        return existing
    naming_id = secrets.token_hex(16)
    row = dict(
        naming_id=naming_id,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        named_at=now,
        revoked_at=None,
    )
    conn.execute(insert(restricted_data_named).values(**NAMED_SPEC.tagged(conn, row)))
    return naming_id


def revoke_named(conn: Connection, patient_id: str, practitioner_id: str, now: datetime) -> bool:
    """Revoke the naming at ``now``; False if the practitioner was not named. Each row is
    re-tagged with its revocation, its tag checked first (as :func:`end`)."""
    n = restricted_data_named.c
    rows = conn.execute(
        select(restricted_data_named)
        .where(
            n.patient_id == patient_id,
            n.practitioner_id == practitioner_id,
            n.revoked_at.is_(None),
        )
        .with_for_update()
    ).mappings()
    done = 0
    for row in rows.all():
        NAMED_SPEC.check(conn, row)
        revoked = {"revoked_at": utc(now)}
        tag = NAMED_SPEC.tag(conn, {**row, **revoked})
        result = conn.execute(
            update(restricted_data_named)
            .where(n.naming_id == row["naming_id"], n.revoked_at.is_(None))
            .values(**revoked, row_mac=tag)
        )
        done += result.rowcount
    return done > 0


def naming_holds(
    patient_id: ColumnElement[Any], practitioner_id: ColumnElement[Any], now: ColumnElement[Any]
) -> ColumnElement[bool]:
    n = restricted_data_named.c
    return and_(
        n.patient_id == patient_id,
        n.practitioner_id == practitioner_id,
        n.named_at <= now,
        or_(n.revoked_at.is_(None), n.revoked_at > now),
    )


_ACTIVE_NAMING = (
    select(restricted_data_named.c.naming_id)
    .where(naming_holds(_PATIENT, _PRACTITIONER, _NOW))
    .limit(1)
)


def _active_naming(
    conn: Connection, patient_id: str, practitioner_id: str, now: datetime
) -> str | None:
    params = {"patient_id": patient_id, "practitioner_id": practitioner_id, "now": now}
    return conn.execute(_ACTIVE_NAMING, params).scalar()


def named_for_restricted_exists(
    patient_id: ColumnElement[Any], practitioner_id: ColumnElement[Any], now: ColumnElement[Any]
) -> Exists:
    """SQL ``EXISTS`` of :func:`is_named_for_restricted`, its arguments SQL expressions."""
    return exists().where(naming_holds(patient_id, practitioner_id, now))


def is_named_for_restricted(
    conn: Connection, patient_id: str, practitioner_id: str, now: datetime
) -> bool:
    """Whether the patient named ``practitioner_id`` for restricted data, at ``now``."""
    return _active_naming(conn, patient_id, practitioner_id, utc(now)) is not None


def named_for_restricted(conn: Connection, patient_id: str, now: datetime) -> list[str]:
    """The practitioners ``patient_id`` named for restricted data, at ``now``."""
    n = restricted_data_named.c
    now = utc(now)
    rows = conn.execute(
        select(n.practitioner_id)
        .where(
            n.patient_id == patient_id,
            n.named_at <= now,
            or_(n.revoked_at.is_(None), n.revoked_at > now),
        )
        .distinct()
        .order_by(n.practitioner_id)
    ).scalars()
    return list(rows)
