"""Call guests: a person the patient accepted into the video call of one appointment.

The patient accepts a second practitioner or an interpreter (a practitioner account of the
staff directory) for one of their appointments; the policy's ``allow.join-call-guest`` rule
then lets that person join that appointment's call, and nothing else (no care relationship:
the guest reads nothing of the record), while the acceptance holds. The patient withdraws it
at any time; the call's next policy re-check then ends the guest's participation.

Rows are never deleted (a withdrawal fills ``withdrawn_at`` once) and every row is tagged
(:data:`GUEST_SPEC`): a row inserted or revived outside Secretum is refused when read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from secretum.policy.tables import call_guests, from_db, utc
from secretum.storage.integrity import RowSpec

#: What a guest row's tag covers.
GUEST_SPEC = RowSpec(
    "call_guests",
    ("guest_id",),
    ("appointment_id", "patient_id", "practitioner_id", "accepted_at", "withdrawn_at"),
)


@dataclass(frozen=True, slots=True)
class CallGuest:
    guest_id: str
    appointment_id: str
    patient_id: str
    practitioner_id: str
    accepted_at: datetime
    withdrawn_at: datetime | None


def guest_condition(
    actor_id: ColumnElement[Any],
    patient_id: ColumnElement[Any],
    appointment_id: ColumnElement[Any],
    now: ColumnElement[Any],
) -> ColumnElement[bool]:
    """The condition on a row of ``call_guests`` that lets ``actor_id`` into the call."""
    c = call_guests.c
    return and_(
        c.appointment_id == appointment_id,
        c.patient_id == patient_id,
        c.practitioner_id == actor_id,
        c.accepted_at <= now,
        c.withdrawn_at.is_(None),
    )


def _guest(conn: Connection, row: RowMapping) -> CallGuest:
    GUEST_SPEC.check(conn, row)
    accepted = from_db(row["accepted_at"])
    assert accepted is not None
    return CallGuest(
        row["guest_id"], row["appointment_id"], row["patient_id"], row["practitioner_id"],
        accepted, from_db(row["withdrawn_at"]),
    )  # fmt: skip


def guests_of(conn: Connection, appointment_id: str) -> list[CallGuest]:
    """The appointment's accepted guests (withdrawn ones left out), tags checked."""
    c = call_guests.c
    rows = conn.execute(
        select(call_guests)
        .where(c.appointment_id == appointment_id, c.withdrawn_at.is_(None))
        .order_by(c.accepted_at, c.guest_id)
    ).mappings()
    return [_guest(conn, row) for row in rows]


def accept(
    conn: Connection, *, appointment_id: str, patient_id: str, practitioner_id: str, now: datetime
) -> str:
    """Accept ``practitioner_id`` into the appointment's call (idempotent: the id of the
    acceptance that holds)."""
    for guest in guests_of(conn, appointment_id):
        if guest.practitioner_id == practitioner_id:
            return guest.guest_id
    row: dict[str, Any] = dict(
        guest_id=secrets.token_hex(16),
        appointment_id=appointment_id,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        accepted_at=utc(now),
        withdrawn_at=None,
    )
    conn.execute(insert(call_guests).values(**GUEST_SPEC.tagged(conn, row)))
    return str(row["guest_id"])


def withdraw(conn: Connection, appointment_id: str, practitioner_id: str, now: datetime) -> bool:
    """Withdraw the acceptance of ``practitioner_id`` for the appointment; False if none."""
    done = False
    for guest in guests_of(conn, appointment_id):
        if guest.practitioner_id != practitioner_id:
            continue
        row = dict(
            guest_id=guest.guest_id,
            appointment_id=guest.appointment_id,
            patient_id=guest.patient_id,
            practitioner_id=guest.practitioner_id,
            accepted_at=guest.accepted_at,
            withdrawn_at=utc(now),
        )
        conn.execute(
            update(call_guests)
            .where(call_guests.c.guest_id == guest.guest_id, call_guests.c.withdrawn_at.is_(None))
            .values(withdrawn_at=utc(now), row_mac=GUEST_SPEC.tag(conn, row))
        )
        done = True
    return done


def is_guest(
    conn: Connection, appointment_id: str, patient_id: str, actor_id: str, now: datetime
) -> bool:
    """Whether ``actor_id`` is an accepted guest of the appointment's call now."""
    at = utc(now)
    return any(
        g.practitioner_id == actor_id and g.patient_id == patient_id and g.accepted_at <= at
        for g in guests_of(conn, appointment_id)
    )
