"""The attacker's side of the agenda: a patient acting on another's appointment, staff reaching
an agenda that is not theirs, rows forged or changed in the database, hostile ids, and a
double booking forced below the service.

Promises: only the patient changes their appointment (README: access only by the policy);
every refusal is audited; a row changed outside Secretum is refused, never trusted (row
integrity); two active bookings of one slot cannot exist."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from agenda_world import T0, Clinic, build_clinic, ctx, paris
from secretum.access.errors import AccessDenied, Tampered
from secretum.access.model import Actor, Role
from secretum.agenda import store
from secretum.agenda.model import Availability
from secretum.audit.model import EventType, Outcome
from secretum.audit.store import read_entries
from secretum.policy import care

SLOT = paris(2026, 3, 3, 10, 0)


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path) -> Clinic:
    return build_clinic(engine, tmp_path)


def failures(clinic: Clinic) -> list[dict[str, object]]:
    with clinic.engine.connect() as conn:
        return [e for e in read_entries(conn) if e["outcome"] != Outcome.SUCCESS]


def test_a_patient_cannot_cancel_or_move_anothers_appointment(clinic: Clinic) -> None:
    mine = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    with pytest.raises(AccessDenied) as refused:
        clinic.agenda.cancel(ctx(clinic.patient("p2"), T0), mine.appointment_id)
    assert refused.value.decision.reason == "deny.not-own-record"
    with pytest.raises(AccessDenied):
        clinic.agenda.move(ctx(clinic.patient("p2"), T0), mine.appointment_id, paris(2026, 3, 4, 9))
    with clinic.engine.connect() as conn:  # untouched: still booked, relationship intact
        current = store.appointment(conn, mine.appointment_id)
        assert current is not None and current == mine
        assert care.in_care_team(conn, "d1", "p1", T0 + timedelta(hours=1))
        assert not care.in_care_team(conn, "d1", "p2", T0 + timedelta(hours=1))
    refused_entries = failures(clinic)
    assert [(e["actor_id"], e["patient_id"]) for e in refused_entries] == [("p2", "p1")] * 2


def test_staff_cannot_book_cancel_or_read_what_is_not_theirs(clinic: Clinic) -> None:
    mine = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    admin, dpo = Actor("a1", Role.ADMIN), Actor("o1", Role.DPO)
    other_doctor = clinic.doctor("d2")
    attempts = [
        lambda: clinic.agenda.cancel(ctx(other_doctor, T0), mine.appointment_id),
        lambda: clinic.agenda.cancel(ctx(admin, T0), mine.appointment_id),
        lambda: clinic.agenda.book(ctx(admin, T0), "d1", paris(2026, 3, 4, 9)),
        lambda: clinic.agenda.book(ctx(other_doctor, T0), "d1", paris(2026, 3, 4, 9)),
        lambda: clinic.agenda.agenda(ctx(admin, T0), date(2026, 3, 2), days=7),
        lambda: clinic.agenda.agenda(ctx(dpo, T0), date(2026, 3, 2), days=7),
        lambda: clinic.agenda.free_slots(ctx(admin, T0), "d1", date(2026, 3, 2), date(2026, 3, 3)),
        lambda: clinic.agenda.publish(ctx(admin, T0), Availability()),
        lambda: clinic.agenda.publish(ctx(clinic.patient("p1"), T0), Availability()),
        lambda: clinic.agenda.consultations(ctx(other_doctor, T0)),
    ]
    for attempt in attempts:
        with pytest.raises(AccessDenied):
            attempt()
    assert len(failures(clinic)) == len(attempts)  # each refusal audited, once
    # d2's own agenda never shows d1's appointment
    assert clinic.agenda.agenda(ctx(other_doctor, T0), date(2026, 3, 2), days=7) == []


def test_hostile_ids_are_refused_and_kept_out_of_the_audit(clinic: Clinic) -> None:
    for hostile in ("' OR 1=1 --", "../../etc/passwd", "x" * 500, ""):
        with pytest.raises(AccessDenied):
            clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), hostile)
    for entry in failures(clinic):
        assert entry["resource_id"] is None


def test_an_appointment_moved_to_another_patient_in_the_database_is_refused(
    clinic: Clinic,
) -> None:
    """An attacker with write access to the database gives p1's appointment to p2, to cancel
    it (or to see p1's practitioner as theirs): the row's tag no longer matches."""
    mine = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    a = store.agenda_appointments.c
    with clinic.engine.begin() as conn:
        conn.execute(
            update(store.agenda_appointments)
            .where(a.appointment_id == mine.appointment_id)
            .values(patient_id="p2")
        )
    with pytest.raises(Tampered):
        clinic.agenda.cancel(ctx(clinic.patient("p2"), T0), mine.appointment_id)
    with pytest.raises(Tampered):
        clinic.agenda.consultations(ctx(clinic.patient("p2"), T0))
    with pytest.raises(Tampered):
        clinic.agenda.agenda(ctx(clinic.doctor("d1"), T0), date(2026, 3, 3))
    alerts = [e for e in failures(clinic) if e["event_type"] == EventType.SECURITY_ALERT]
    assert len(alerts) == 3


def test_a_cancelled_appointment_reopened_in_the_database_is_refused(clinic: Clinic) -> None:
    mine = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), mine.appointment_id)
    a = store.agenda_appointments.c
    with clinic.engine.begin() as conn:
        conn.execute(
            update(store.agenda_appointments)
            .where(a.appointment_id == mine.appointment_id)
            .values(status="booked")
        )
    with pytest.raises(Tampered):
        clinic.agenda.consultations(ctx(clinic.patient("p1"), T0))


def test_a_forged_appointment_is_refused(clinic: Clinic) -> None:
    """A row inserted outside Secretum (no tag, or the tag of another row) is never shown."""
    genuine = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    with clinic.engine.connect() as conn:
        tag = (
            conn.execute(
                store.agenda_appointments.select().where(
                    store.agenda_appointments.c.appointment_id == genuine.appointment_id
                )
            )
            .mappings()
            .one()["row_mac"]
        )
    forged = dict(
        appointment_id="f" * 32, practitioner_id="d1", patient_id="p3",
        start_utc=paris(2026, 3, 4, 9), end_utc=paris(2026, 3, 4, 9, 30), modality="video",
        status="booked", purpose="teleconsultation", relationship_id=None, moved_to=None,
        created_at=T0, updated_at=T0, row_mac=tag,
    )  # fmt: skip
    with clinic.engine.begin() as conn:
        conn.execute(insert(store.agenda_appointments).values(**forged))
    with pytest.raises(Tampered):
        clinic.agenda.agenda(ctx(clinic.doctor("d1"), T0), date(2026, 3, 4))
    with pytest.raises(Tampered):
        clinic.agenda.consultations(ctx(clinic.patient("p3"), T0))


def test_a_double_booking_cannot_be_forced_below_the_service(clinic: Clinic) -> None:
    clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    with pytest.raises(IntegrityError), clinic.engine.begin() as conn:
        store.insert_appointment(
            conn, appointment_id="e" * 32, practitioner_id="d1", patient_id="p2", start=SLOT,
            end=SLOT + timedelta(minutes=30), modality=store.Modality.VIDEO,
            purpose="teleconsultation", relationship_id=None, now=T0,
        )  # fmt: skip
