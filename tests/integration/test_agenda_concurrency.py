"""Double booking is impossible, by a database constraint, under concurrency: many patients
booking one slot at the same instant (threads released together) get exactly one winner, the
others a clear SlotTaken; on SQLite and on PostgreSQL.

Without the partial unique indexes these tests fail: every insert succeeds (see
``test_without_the_constraint_the_race_is_lost``, which drops them)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from agenda_world import PATIENTS, T0, Clinic, build_clinic, ctx, paris
from secretum.agenda import store
from secretum.agenda.model import Modality, Status
from secretum.agenda.service import PatientBusy, SlotTaken
from secretum.audit.model import Outcome
from secretum.audit.store import read_entries
from secretum.policy import care

SLOT = paris(2026, 3, 3, 10, 0)
THREADS = 12


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path) -> Clinic:
    return build_clinic(engine, tmp_path)


def race(calls: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Run ``calls`` in threads released together; their results and errors."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            result = call()
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_many_patients_one_slot_exactly_one_wins(clinic: Clinic) -> None:
    patients = PATIENTS[:THREADS]
    calls: list[Callable[[], object]] = [
        (lambda p=p: clinic.agenda.book(ctx(clinic.patient(p), T0), "d1", SLOT)) for p in patients
    ]
    results, errors = race(calls)
    assert len(results) == 1, errors
    assert len(errors) == THREADS - 1
    assert all(type(e) is SlotTaken for e in errors), errors
    assert all("someone else" in str(e) for e in errors)
    [winner] = results
    with clinic.engine.connect() as conn:
        rows = conn.execute(
            select(store.agenda_appointments).where(
                store.agenda_appointments.c.status == str(Status.BOOKED)
            )
        ).all()
        assert len(rows) == 1
        # only the winner is in the practitioner's care team; the losers' rolled back
        in_team = [p for p in patients if care.in_care_team(conn, "d1", p, T0)]
        assert in_team == [winner.patient_id]  # type: ignore[attr-defined]
        outcomes = [e["outcome"] for e in read_entries(conn) if e["resource_type"] == "Appointment"]
    assert sorted(outcomes) == [Outcome.SUCCESS] + [Outcome.MINOR_FAILURE] * (THREADS - 1)


def test_many_slots_many_patients_one_winner_per_slot(clinic: Clinic) -> None:
    slots = [SLOT, SLOT + timedelta(minutes=30), SLOT + timedelta(minutes=60)]
    calls: list[Callable[[], object]] = [
        (lambda p=p, s=s: clinic.agenda.book(ctx(clinic.patient(p), T0), "d1", s))
        for i, p in enumerate(PATIENTS[:THREADS])
        for s in (slots[i % 3],)
    ]
    results, errors = race(calls)
    assert sorted(r.start for r in results) == slots  # type: ignore[attr-defined]
    assert len(errors) == THREADS - 3 and all(isinstance(e, SlotTaken) for e in errors)


def test_one_patient_two_practitioners_same_time(clinic: Clinic) -> None:
    calls: list[Callable[[], object]] = [
        (lambda d=d: clinic.agenda.book(ctx(clinic.patient("p1"), T0), d, SLOT))
        for d in ("d1", "d2")
    ] * 4
    results, errors = race(calls)
    assert len(results) == 1
    assert all(isinstance(e, SlotTaken) for e in errors)
    assert any(isinstance(e, PatientBusy) for e in errors)


def _insert(conn: object, appointment_id: str, patient: str, practitioner: str = "d1") -> None:
    store.insert_appointment(
        conn,  # type: ignore[arg-type]
        appointment_id=appointment_id, practitioner_id=practitioner, patient_id=patient,
        start=SLOT, end=SLOT + timedelta(minutes=30), modality=Modality.VIDEO,
        purpose="teleconsultation", relationship_id=None, now=T0,
    )  # fmt: skip


def test_the_constraint_is_in_the_database(engine: Engine, tmp_path: Path) -> None:
    """Below the service: two active bookings of one practitioner (or one patient) at one
    instant cannot both be stored; a cancelled one does not count."""
    build_clinic(engine, tmp_path, publish=False)
    with engine.begin() as conn:
        _insert(conn, "a1", "p1")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert(conn, "a2", "p2")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert(conn, "a3", "p1", practitioner="d2")
    with engine.begin() as conn:
        current = store.appointment(conn, "a1")
        assert current is not None
        assert store.set_status(conn, current, Status.CANCELLED, T0)
        _insert(conn, "a2", "p2")  # the slot is free again


def test_without_the_constraint_the_race_is_lost(engine: Engine, tmp_path: Path) -> None:
    """The proof the constraint does the work: the service does not look before it inserts
    (a look would race anyway), the database judges. Without the indexes every booking of the
    slot succeeds."""
    clinic = build_clinic(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX uq_agenda_practitioner_start"))
        conn.execute(text("DROP INDEX uq_agenda_patient_start"))
    calls: list[Callable[[], object]] = [
        (lambda p=p: clinic.agenda.book(ctx(clinic.patient(p), T0), "d1", SLOT))
        for p in PATIENTS[:THREADS]
    ]
    results, errors = race(calls)
    assert len(results) == THREADS, errors  # double booking: what the constraint prevents
