"""The agenda's tables and repository: availability, closures and openings, appointments.

Plain functions on the caller's connection (the service's transaction). Ids, codes and times
only. **No free text is stored**: a patient's reason for consulting is health data, and the
agenda does not need it (the consultation itself, in the record, is where it belongs); the
appointment's ``purpose`` is a code (``teleconsultation``), never words.

Double booking is impossible *in the database*: two partial unique indexes on the active
bookings (``status = 'booked'``), one per practitioner and start, one per patient and start.
Two concurrent bookings of one slot both insert; the database keeps one and refuses the other
(:class:`sqlalchemy.exc.IntegrityError`, turned into :class:`SlotTaken` by the service). A
cancelled or moved appointment leaves the index, so its slot is free again.

An appointment is a decision row: it holds the care relationship it opened (``relationship_id``)
and the patient cancels or moves it by its id. Its row carries a tag
(:data:`APPOINTMENT_SPEC`, :mod:`secretum.storage.integrity`): a row inserted, moved to another
patient, time or practitioner, or reopened outside Secretum is refused when read
(:class:`~secretum.storage.integrity.RowTampered`). The reminder mark is not covered (it decides
nothing: at worst a reminder is not sent, or sent again).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Time,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, RowMapping

from secretum.agenda.model import (
    Appointment,
    Availability,
    Closure,
    Modality,
    Opening,
    Status,
    WeeklyHours,
)
from secretum.policy.tables import from_db, utc
from secretum.storage.db import metadata
from secretum.storage.integrity import RowSpec

agenda_weekly_hours = Table(
    "agenda_weekly_hours",
    metadata,
    Column("hours_id", String(32), primary_key=True),
    Column("practitioner_id", String(64), nullable=False, index=True),
    Column("weekday", Integer, nullable=False),
    #: wall-clock times of the clinic (Settings.timezone)
    Column("start_local", Time, nullable=False),
    Column("end_local", Time, nullable=False),
    Column("slot_minutes", Integer, nullable=False),
    Column("modality", String(16), nullable=False),
    Column("valid_from", Date, nullable=True),
    Column("valid_until", Date, nullable=True),
)

agenda_exceptions = Table(
    "agenda_exceptions",
    metadata,
    Column("exception_id", String(32), primary_key=True),
    Column("practitioner_id", String(64), nullable=False, index=True),
    #: closed (first_day..last_day) | open (first_day, start_local..end_local)
    Column("kind", String(8), nullable=False),
    Column("first_day", Date, nullable=False),
    Column("last_day", Date, nullable=False),
    Column("start_local", Time, nullable=True),
    Column("end_local", Time, nullable=True),
    Column("slot_minutes", Integer, nullable=True),
    Column("modality", String(16), nullable=True),
)

_ACTIVE = text("status = 'booked'")

agenda_appointments = Table(
    "agenda_appointments",
    metadata,
    Column("appointment_id", String(32), primary_key=True),
    Column("practitioner_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("start_utc", DateTime(timezone=True), nullable=False),
    Column("end_utc", DateTime(timezone=True), nullable=False),
    Column("modality", String(16), nullable=False),
    #: booked | cancelled | moved | fulfilled
    Column("status", String(16), nullable=False),
    #: a code (Purpose), never free text
    Column("purpose", String(32), nullable=False),
    #: the care relationship the booking opened (secretum.policy.care)
    Column("relationship_id", String(32), nullable=True),
    #: the appointment that replaced this one, when moved
    Column("moved_to", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    #: when the reminder was sent (claimed once, see :func:`claim_reminder`)
    Column("reminder_sent_at", DateTime(timezone=True), nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
    # Double booking is impossible: one active booking per practitioner and start, and per
    # patient and start.
    Index(
        "uq_agenda_practitioner_start",
        "practitioner_id",
        "start_utc",
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    ),
    Index(
        "uq_agenda_patient_start",
        "patient_id",
        "start_utc",
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    ),
    Index("ix_agenda_appointments_practitioner_start", "practitioner_id", "start_utc"),
)

#: The names of the unique indexes, to tell which one refused a booking.
PATIENT_INDEX = "uq_agenda_patient_start"

#: What an appointment's tag covers: who, when, its state and the relationship it opened.
APPOINTMENT_SPEC = RowSpec(
    "agenda_appointments",
    ("appointment_id",),
    (
        "practitioner_id",
        "patient_id",
        "start_utc",
        "end_utc",
        "modality",
        "status",
        "purpose",
        "relationship_id",
        "moved_to",
        "created_at",
    ),
)


def new_id() -> str:
    return secrets.token_hex(16)


# -- availability ---------------------------------------------------------------------------------


def replace_availability(
    conn: Connection, practitioner_id: str, availability: Availability
) -> None:
    """Replace what ``practitioner_id`` publishes (booked appointments are kept as they are)."""
    w, e = agenda_weekly_hours.c, agenda_exceptions.c
    conn.execute(delete(agenda_weekly_hours).where(w.practitioner_id == practitioner_id))
    conn.execute(delete(agenda_exceptions).where(e.practitioner_id == practitioner_id))
    weekly = [
        dict(
            hours_id=new_id(),
            practitioner_id=practitioner_id,
            weekday=h.weekday,
            start_local=h.start,
            end_local=h.end,
            slot_minutes=h.slot_minutes,
            modality=str(h.modality),
            valid_from=h.valid_from,
            valid_until=h.valid_until,
        )
        for h in availability.weekly
    ]
    exceptions: list[dict[str, Any]] = [
        dict(
            exception_id=new_id(),
            practitioner_id=practitioner_id,
            kind="closed",
            first_day=c.first_day,
            last_day=c.last_day,
            start_local=None,
            end_local=None,
            slot_minutes=None,
            modality=None,
        )
        for c in availability.closures
    ]
    exceptions += [
        dict(
            exception_id=new_id(),
            practitioner_id=practitioner_id,
            kind="open",
            first_day=o.day,
            last_day=o.day,
            start_local=o.start,
            end_local=o.end,
            slot_minutes=o.slot_minutes,
            modality=str(o.modality),
        )
        for o in availability.openings
    ]
    if weekly:
        conn.execute(insert(agenda_weekly_hours), weekly)
    if exceptions:
        conn.execute(insert(agenda_exceptions), exceptions)


def _time(value: time) -> time:
    return value.replace(tzinfo=None)


def availability_of(conn: Connection, practitioner_id: str) -> Availability:
    """What ``practitioner_id`` publishes (empty if nothing)."""
    w, e = agenda_weekly_hours.c, agenda_exceptions.c
    weekly = tuple(
        WeeklyHours(
            weekday=r["weekday"],
            start=_time(r["start_local"]),
            end=_time(r["end_local"]),
            slot_minutes=r["slot_minutes"],
            modality=Modality(r["modality"]),
            valid_from=r["valid_from"],
            valid_until=r["valid_until"],
        )
        for r in conn.execute(
            select(agenda_weekly_hours)
            .where(w.practitioner_id == practitioner_id)
            .order_by(w.weekday, w.start_local)
        ).mappings()
    )
    rows = conn.execute(
        select(agenda_exceptions)
        .where(e.practitioner_id == practitioner_id)
        .order_by(e.first_day, e.start_local)
    ).mappings()
    closures: list[Closure] = []
    openings: list[Opening] = []
    for r in rows:
        if r["kind"] == "closed":
            closures.append(Closure(r["first_day"], r["last_day"]))
        else:
            openings.append(
                Opening(
                    r["first_day"],
                    _time(r["start_local"]),
                    _time(r["end_local"]),
                    r["slot_minutes"],
                    Modality(r["modality"]),
                )
            )
    return Availability(weekly, tuple(closures), tuple(openings))


# -- appointments ---------------------------------------------------------------------------------


def _appointment(conn: Connection, row: RowMapping) -> Appointment:
    """The appointment of ``row``, its tag checked first (RowTampered)."""
    APPOINTMENT_SPEC.check(conn, row)
    start, end = from_db(row["start_utc"]), from_db(row["end_utc"])
    created, updated = from_db(row["created_at"]), from_db(row["updated_at"])
    assert start and end and created and updated
    return Appointment(
        appointment_id=row["appointment_id"],
        practitioner_id=row["practitioner_id"],
        patient_id=row["patient_id"],
        start=start,
        end=end,
        modality=Modality(row["modality"]),
        status=Status(row["status"]),
        purpose=row["purpose"],
        relationship_id=row["relationship_id"],
        moved_to=row["moved_to"],
        created_at=created,
        updated_at=updated,
    )


def insert_appointment(
    conn: Connection,
    *,
    appointment_id: str,
    practitioner_id: str,
    patient_id: str,
    start: datetime,
    end: datetime,
    modality: Modality,
    purpose: str,
    relationship_id: str | None,
    now: datetime,
) -> None:
    """Insert a booked appointment; IntegrityError if the practitioner or the patient already
    has an active booking at ``start`` (the partial unique indexes)."""
    row: dict[str, Any] = dict(
        appointment_id=appointment_id,
        practitioner_id=practitioner_id,
        patient_id=patient_id,
        start_utc=utc(start),
        end_utc=utc(end),
        modality=str(modality),
        status=str(Status.BOOKED),
        purpose=purpose,
        relationship_id=relationship_id,
        moved_to=None,
        created_at=utc(now),
    )
    values = APPOINTMENT_SPEC.tagged(conn, row)
    conn.execute(insert(agenda_appointments).values(**values, updated_at=utc(now)))


def appointment(conn: Connection, appointment_id: str, *, lock: bool = False) -> Appointment | None:
    """The appointment ``appointment_id`` (tag checked), or None."""
    query = select(agenda_appointments).where(
        agenda_appointments.c.appointment_id == appointment_id
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _appointment(conn, row)


def set_status(
    conn: Connection,
    current: Appointment,
    status: Status,
    now: datetime,
    *,
    moved_to: str | None = None,
) -> bool:
    """Move a booked appointment to ``status`` (re-tagged); False if it was no longer booked.

    The row read by the caller was checked (:func:`appointment`); the update only applies to
    the row still booked, so that two concurrent changes cannot both succeed."""
    a = agenda_appointments.c
    row: Mapping[str, Any] = dict(
        appointment_id=current.appointment_id,
        practitioner_id=current.practitioner_id,
        patient_id=current.patient_id,
        start_utc=current.start,
        end_utc=current.end,
        modality=str(current.modality),
        status=str(status),
        purpose=current.purpose,
        relationship_id=current.relationship_id,
        moved_to=moved_to,
        created_at=current.created_at,
    )
    result = conn.execute(
        update(agenda_appointments)
        .where(
            a.appointment_id == current.appointment_id,
            a.status == str(Status.BOOKED),
        )
        .values(
            status=str(status),
            moved_to=moved_to,
            updated_at=utc(now),
            row_mac=APPOINTMENT_SPEC.tag(conn, row),
        )
    )
    return result.rowcount == 1


def booked_starts(
    conn: Connection, practitioner_id: str, start: datetime, end: datetime
) -> set[datetime]:
    """Starts of the practitioner's active bookings in ``[start, end)`` (to hide from slots).

    Only times are read here (no patient): a row's tag is checked where a decision rests on it
    (a change, a list shown to a person)."""
    a = agenda_appointments.c
    rows = conn.execute(
        select(a.start_utc).where(
            a.practitioner_id == practitioner_id,
            a.status == str(Status.BOOKED),
            a.start_utc >= utc(start),
            a.start_utc < utc(end),
        )
    ).scalars()
    return {t for t in (from_db(r) for r in rows) if t is not None}


def of_practitioner(
    conn: Connection, practitioner_id: str, start: datetime, end: datetime
) -> list[Appointment]:
    """The practitioner's booked and fulfilled appointments starting in ``[start, end)``."""
    a = agenda_appointments.c
    rows = conn.execute(
        select(agenda_appointments)
        .where(
            a.practitioner_id == practitioner_id,
            a.status.in_([str(Status.BOOKED), str(Status.FULFILLED)]),
            a.start_utc >= utc(start),
            a.start_utc < utc(end),
        )
        .order_by(a.start_utc, a.appointment_id)
    ).mappings()
    return [_appointment(conn, r) for r in rows]


def of_patient(conn: Connection, patient_id: str) -> list[Appointment]:
    """Every appointment of the patient (all statuses), oldest first."""
    a = agenda_appointments.c
    rows = conn.execute(
        select(agenda_appointments)
        .where(a.patient_id == patient_id)
        .order_by(a.start_utc, a.appointment_id)
    ).mappings()
    return [_appointment(conn, r) for r in rows]


def due_reminders(conn: Connection, now: datetime, until: datetime) -> list[Appointment]:
    """Booked appointments starting in ``(now, until]`` whose reminder was not sent."""
    a = agenda_appointments.c
    rows = conn.execute(
        select(agenda_appointments)
        .where(
            a.status == str(Status.BOOKED),
            a.reminder_sent_at.is_(None),
            a.start_utc > utc(now),
            a.start_utc <= utc(until),
        )
        .order_by(a.start_utc, a.appointment_id)
    ).mappings()
    return [_appointment(conn, r) for r in rows]


def claim_reminder(conn: Connection, appointment_id: str, now: datetime) -> bool:
    """Mark the reminder sent; True only for the one caller that marked it (idempotent, safe
    with several instances running the duty)."""
    a = agenda_appointments.c
    result = conn.execute(
        update(agenda_appointments)
        .where(a.appointment_id == appointment_id, a.reminder_sent_at.is_(None))
        .values(reminder_sent_at=utc(now))
    )
    return result.rowcount == 1
