"""Call guests in the policy's facts, on SQLite and PostgreSQL: the acceptance of one
practitioner for one appointment of one patient, from its instant until withdrawn; a row
written or revived outside Secretum is refused (its tag)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from secretum.access.model import Actor, Role
from secretum.policy import guests
from secretum.policy.facts import load_facts
from secretum.policy.tables import call_guests
from secretum.storage.integrity import RowTampered

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DOC = Actor("d2", Role.PRACTITIONER)


def guest_fact(engine: Engine, actor: Actor, patient: str, appointment: str | None,
               hours: float) -> bool:  # fmt: skip
    with engine.connect() as conn:
        at = T0 + timedelta(hours=hours)
        return load_facts(conn, actor, patient, at, appointment_id=appointment).call_guest


def test_the_acceptance_holds_for_its_appointment_from_its_instant_until_withdrawn(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        first = guests.accept(
            conn, appointment_id="a1", patient_id="p1", practitioner_id="d2",
            now=T0 + timedelta(hours=1),
        )  # fmt: skip
        again = guests.accept(
            conn, appointment_id="a1", patient_id="p1", practitioner_id="d2",
            now=T0 + timedelta(hours=2),
        )  # fmt: skip
    assert first == again  # idempotent
    assert not guest_fact(engine, DOC, "p1", "a1", 0.5)  # not yet
    assert guest_fact(engine, DOC, "p1", "a1", 1.5)
    assert not guest_fact(engine, DOC, "p1", "a2", 1.5)  # another appointment
    assert not guest_fact(engine, DOC, "p2", "a1", 1.5)  # another patient
    assert not guest_fact(engine, DOC, "p1", None, 1.5)  # not about an appointment
    assert not guest_fact(engine, Actor("d3", Role.PRACTITIONER), "p1", "a1", 1.5)
    assert not guest_fact(engine, Actor("d2", Role.PATIENT), "p1", "a1", 1.5)  # a role
    with engine.connect() as conn:
        assert guests.is_guest(conn, "a1", "p1", "d2", T0 + timedelta(hours=1.5))
        assert [g.practitioner_id for g in guests.guests_of(conn, "a1")] == ["d2"]
    with engine.begin() as conn:
        assert guests.withdraw(conn, "a1", "d2", T0 + timedelta(hours=3))
        assert not guests.withdraw(conn, "a1", "d2", T0 + timedelta(hours=4))
    assert not guest_fact(engine, DOC, "p1", "a1", 3.5)
    with engine.connect() as conn:
        assert guests.guests_of(conn, "a1") == []


@pytest.mark.attack
def test_a_withdrawal_undone_outside_secretum_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        guests.accept(conn, appointment_id="a1", patient_id="p1", practitioner_id="d2", now=T0)
        guests.withdraw(conn, "a1", "d2", T0 + timedelta(hours=1))
        conn.execute(update(call_guests).values(withdrawn_at=None))
    with pytest.raises(RowTampered):
        guest_fact(engine, DOC, "p1", "a1", 2)
    with engine.begin() as conn:  # moved to another practitioner
        conn.execute(update(call_guests).values(practitioner_id="d9"))
    with pytest.raises(RowTampered):
        guest_fact(engine, Actor("d9", Role.PRACTITIONER), "p1", "a1", 2)
