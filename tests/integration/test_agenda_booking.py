"""The agenda's use cases on SQLite and PostgreSQL: publish, free slots, book (consent needed,
audited, care relationship for the follow-up), cancel and move within the delay, the
practitioner's agenda and the patient's consultations, mails without health data, reminders."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from agenda_world import (
    HEALTH_WORDS,
    NO_CONSENT,
    PARIS,
    T0,
    Clinic,
    build_clinic,
    ctx,
    paris,
)
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Role
from secretum.agenda.model import Availability, Status
from secretum.agenda.service import (
    BadRequest,
    NotBooked,
    NotOffered,
    PatientBusy,
    SlotTaken,
    TooLate,
)
from secretum.audit.model import Outcome
from secretum.audit.store import read_entries
from secretum.policy import care
from secretum.policy.choices import APPOINTMENT_FOLLOW_UP

#: Tuesday 3 March 2026, 10:00 in Paris: a slot of the published week.
SLOT = paris(2026, 3, 3, 10, 0)


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path) -> Clinic:
    return build_clinic(engine, tmp_path)


def entries(clinic: Clinic, patient_id: str | None = None) -> list[dict[str, object]]:
    with clinic.engine.connect() as conn:
        return list(read_entries(conn, patient_id))


def test_free_slots_follow_the_pattern_and_hide_booked_and_past_ones(clinic: Clinic) -> None:
    free = clinic.agenda.free_slots(
        ctx(clinic.patient(), T0), "d1", date(2026, 3, 2), date(2026, 3, 3)
    )
    assert len(free) == 12 and free[0].start == paris(2026, 3, 2, 9, 0)
    clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    later = T0 + timedelta(hours=2)  # 10:00 on Monday: 09:00, 09:30 and 10:00 have begun
    free = clinic.agenda.free_slots(
        ctx(clinic.patient("p2"), later), "d1", date(2026, 3, 2), date(2026, 3, 3)
    )
    starts = [s.start for s in free]
    assert SLOT not in starts and paris(2026, 3, 2, 9, 30) not in starts
    assert len(free) == 12 - 3 - 1
    # the other practitioner is untouched
    d2 = clinic.agenda.free_slots(
        ctx(clinic.patient(), T0), "d2", date(2026, 3, 3), date(2026, 3, 3)
    )
    assert len(d2) == 6
    with pytest.raises(BadRequest):
        clinic.agenda.free_slots(
            ctx(clinic.patient(), T0), "d1", date(2026, 3, 3), date(2026, 3, 2)
        )
    with pytest.raises(BadRequest):
        clinic.agenda.agenda(ctx(clinic.doctor("d1"), T0), date(2026, 3, 3), days=400)
    refused = [e for e in entries(clinic) if e["outcome"] == Outcome.MINOR_FAILURE]
    assert [e["actor_id"] for e in refused] == ["p1", "d1"]  # audited, like every refusal


def test_booking_needs_the_teleconsultation_consent_and_is_audited(clinic: Clinic) -> None:
    with pytest.raises(AccessDenied) as refused:
        clinic.agenda.book(ctx(clinic.patient(NO_CONSENT), T0), "d1", SLOT)
    assert refused.value.decision.reason == "deny.no-consent"
    [entry] = entries(clinic, NO_CONSENT)
    assert entry["outcome"] == Outcome.MINOR_FAILURE and entry["resource_type"] == "Appointment"
    with clinic.engine.connect() as conn:
        assert not care.in_care_team(conn, "d1", NO_CONSENT, T0 + timedelta(hours=1))
    # the slot is still free
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    assert booked.status is Status.BOOKED and booked.start == SLOT
    assert booked.end - booked.start == timedelta(minutes=30)
    ok = [e for e in entries(clinic, "p1") if e["resource_type"] == "Appointment"]
    assert len(ok) == 1 and ok[0]["outcome"] == Outcome.SUCCESS and ok[0]["action"] == "C"
    assert ok[0]["resource_id"] == booked.appointment_id and ok[0]["purpose"] == "TREAT"


def test_only_patients_book_and_only_offered_future_slots(clinic: Clinic) -> None:
    with pytest.raises(AccessDenied):
        clinic.agenda.book(ctx(clinic.doctor("d2"), T0), "d1", SLOT)
    with pytest.raises(NotOffered):
        clinic.agenda.book(ctx(clinic.patient(), T0), "d1", paris(2026, 3, 3, 10, 10))  # off-grid
    with pytest.raises(NotOffered):
        clinic.agenda.book(ctx(clinic.patient(), T0), "d1", paris(2026, 3, 3, 14, 0))  # closed
    with pytest.raises(NotOffered):
        clinic.agenda.book(ctx(clinic.patient(), SLOT + timedelta(minutes=1)), "d1", SLOT)  # past


def test_the_booking_makes_the_care_relationship_for_the_follow_up(clinic: Clinic) -> None:
    with clinic.engine.connect() as conn:
        assert not care.in_care_team(conn, "d1", "p1", T0)
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    with clinic.engine.connect() as conn:
        [relationship] = care.care_team(conn, "p1", T0)
        assert relationship.relationship_id == booked.relationship_id
        assert relationship.source_id == booked.appointment_id
        assert relationship.basis is care.CareBasis.APPOINTMENT
        end = SLOT + APPOINTMENT_FOLLOW_UP
        assert care.in_care_team(conn, "d1", "p1", end - timedelta(seconds=1))
        assert not care.in_care_team(conn, "d1", "p1", end)  # the follow-up is over


def test_double_booking_is_refused_for_the_slot_and_for_the_patient(clinic: Clinic) -> None:
    clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    with pytest.raises(SlotTaken) as taken:
        clinic.agenda.book(ctx(clinic.patient("p2"), T0), "d1", SLOT)
    assert not isinstance(taken.value, PatientBusy)
    with pytest.raises(PatientBusy):
        clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d2", SLOT)
    with clinic.engine.connect() as conn:  # the refused booking left no relationship behind
        assert not care.in_care_team(conn, "d1", "p2", T0)
        assert not care.in_care_team(conn, "d2", "p1", T0)
    failures = [e for e in entries(clinic, "p2") if e["outcome"] == Outcome.MINOR_FAILURE]
    assert len(failures) == 1


def test_cancel_within_the_delay_frees_the_slot_and_ends_the_relationship(clinic: Clinic) -> None:
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    cancelled = clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), booked.appointment_id)
    assert cancelled.appointment_id == booked.appointment_id
    with clinic.engine.connect() as conn:
        assert not care.in_care_team(conn, "d1", "p1", T0 + timedelta(minutes=1))
    again = clinic.agenda.book(ctx(clinic.patient("p2"), T0), "d1", SLOT)  # the slot is free again
    assert again.start == SLOT
    with pytest.raises(NotBooked):
        clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), booked.appointment_id)


def test_cancel_and_move_past_the_delay_are_refused_clearly(clinic: Clinic) -> None:
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    late = SLOT - timedelta(hours=23, minutes=59)
    with pytest.raises(TooLate, match="24 hours"):
        clinic.agenda.cancel(ctx(clinic.patient("p1"), late), booked.appointment_id)
    with pytest.raises(TooLate):
        clinic.agenda.move(
            ctx(clinic.patient("p1"), late), booked.appointment_id, paris(2026, 3, 5, 9, 0)
        )
    just_in_time = SLOT - timedelta(hours=24)
    clinic.agenda.cancel(ctx(clinic.patient("p1"), just_in_time), booked.appointment_id)
    refused = [e for e in entries(clinic, "p1") if e["outcome"] == Outcome.MINOR_FAILURE]
    assert len(refused) == 2


def test_the_delay_is_a_setting(engine: Engine, tmp_path: Path) -> None:
    clinic = build_clinic(engine, tmp_path, change_delay=timedelta(hours=2))
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    clinic.agenda.cancel(
        ctx(clinic.patient("p1"), SLOT - timedelta(hours=3)), booked.appointment_id
    )


def test_move_books_the_new_slot_and_frees_the_old(clinic: Clinic) -> None:
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    target = paris(2026, 3, 5, 9, 0)
    moved = clinic.agenda.move(ctx(clinic.patient("p1"), T0), booked.appointment_id, target)
    assert moved.start == target and moved.appointment_id != booked.appointment_id
    mine = clinic.agenda.consultations(ctx(clinic.patient("p1"), T0))
    assert [e.appointment.start for e in mine.upcoming] == [target]
    with clinic.engine.connect() as conn:
        [relationship] = care.care_team(conn, "p1", T0 + timedelta(minutes=1))
        assert relationship.source_id == moved.appointment_id
        assert relationship.ends_at == target + APPOINTMENT_FOLLOW_UP
    clinic.agenda.book(ctx(clinic.patient("p2"), T0), "d1", SLOT)  # the old slot is free
    with pytest.raises(SlotTaken):  # and the new one is not
        clinic.agenda.book(ctx(clinic.patient("p3"), T0), "d1", target)
    with pytest.raises(NotBooked):  # the old appointment cannot be moved twice
        clinic.agenda.move(
            ctx(clinic.patient("p1"), T0), booked.appointment_id, paris(2026, 3, 6, 9, 0)
        )


def test_another_patient_cannot_cancel_or_move_mine(clinic: Clinic) -> None:
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    for attempt in (
        lambda: clinic.agenda.cancel(ctx(clinic.patient("p2"), T0), booked.appointment_id),
        lambda: clinic.agenda.move(
            ctx(clinic.patient("p2"), T0), booked.appointment_id, paris(2026, 3, 5, 9, 0)
        ),
        lambda: clinic.agenda.cancel(ctx(clinic.doctor("d1"), T0), booked.appointment_id),
    ):
        with pytest.raises(AccessDenied):
            attempt()
    [upcoming] = clinic.agenda.consultations(ctx(clinic.patient("p1"), T0)).upcoming
    assert upcoming.appointment.status is Status.BOOKED
    refused = [e for e in entries(clinic, "p1") if e["outcome"] == Outcome.MINOR_FAILURE]
    assert {e["actor_id"] for e in refused} == {"p2", "d1"} and len(refused) == 3


def test_the_practitioners_agenda_shows_their_appointments_with_names(clinic: Clinic) -> None:
    clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    clinic.agenda.book(ctx(clinic.patient("p2"), T0), "d1", paris(2026, 3, 4, 9, 0))
    clinic.agenda.book(ctx(clinic.patient("p3"), T0), "d2", SLOT)
    day = clinic.agenda.agenda(ctx(clinic.doctor("d1"), T0), date(2026, 3, 3))
    assert [(e.display_name, e.appointment.start) for e in day] == [("Patient P1", SLOT)]
    week = clinic.agenda.agenda(ctx(clinic.doctor("d1"), T0), date(2026, 3, 2), days=7)
    assert [e.display_name for e in week] == ["Patient P1", "Patient P2"]
    other = clinic.agenda.agenda(ctx(clinic.doctor("d2"), T0), date(2026, 3, 2), days=7)
    assert [e.display_name for e in other] == ["Patient P3"]
    with pytest.raises(AccessDenied):  # a patient has no agenda
        clinic.agenda.agenda(ctx(clinic.patient("p1"), T0), date(2026, 3, 2), days=7)
    with pytest.raises(AccessDenied):  # nor does an administrator
        clinic.agenda.agenda(ctx(Actor("a1", Role.ADMIN), T0), date(2026, 3, 2), days=7)


def test_patients_see_upcoming_and_past_consultations(clinic: Clinic) -> None:
    first = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    second = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d2", paris(2026, 3, 6, 11, 0))
    cancelled = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d2", paris(2026, 3, 5, 11, 0))
    clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), cancelled.appointment_id)
    between = paris(2026, 3, 4, 12, 0)
    mine = clinic.agenda.consultations(ctx(clinic.patient("p1"), between))
    assert [e.appointment.appointment_id for e in mine.upcoming] == [second.appointment_id]
    assert [e.appointment.appointment_id for e in mine.past] == [first.appointment_id]
    assert mine.past[0].display_name == "Docteur D1"
    assert clinic.agenda.consultations(ctx(clinic.patient("p2"), between)).upcoming == []


def test_publish_is_the_practitioners_own(clinic: Clinic) -> None:
    with pytest.raises(AccessDenied):
        clinic.agenda.publish(ctx(clinic.patient("p1"), T0), Availability())
    clinic.agenda.publish(ctx(clinic.doctor("d2"), T0), Availability())  # closes d2 entirely
    patient = ctx(clinic.patient(), T0)
    assert clinic.agenda.free_slots(patient, "d2", date(2026, 3, 2), date(2026, 3, 8)) == []
    assert clinic.agenda.free_slots(patient, "d1", date(2026, 3, 2), date(2026, 3, 2)) != []


def test_mails_say_when_in_the_clinics_zone_and_nothing_about_health(clinic: Clinic) -> None:
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    clinic.agenda.move(
        ctx(clinic.patient("p1"), T0), booked.appointment_id, paris(2026, 3, 5, 9, 30)
    )
    later = clinic.agenda.consultations(ctx(clinic.patient("p1"), T0)).upcoming[0].appointment
    clinic.agenda.cancel(ctx(clinic.patient("p1"), T0), later.appointment_id)
    booked, moved, cancelled = clinic.mailer.sent
    assert {m.to for m in clinic.mailer.sent} == {"p1@mail.example"}
    assert "03/03/2026 10:00 (heure de Paris)" in booked.text
    assert "2026-03-03 10:00 (Paris time)" in booked.text
    assert "05/03/2026 09:30 (heure de Paris)" in moved.text and "03/03/2026 10:00" in moved.text
    assert "2026-03-05 09:30 (Paris time)" in cancelled.text
    for message in clinic.mailer.sent:
        assert "Connectez-vous" in message.text and "Sign in" in message.text
        for word in HEALTH_WORDS:
            assert word not in message.text and word not in message.subject
        assert "09:00" not in message.text or "UTC" not in message.text


def test_a_failed_mail_does_not_undo_the_booking(clinic: Clinic) -> None:
    clinic.mailer.fail = True
    booked = clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    assert (
        clinic.agenda.consultations(ctx(clinic.patient("p1"), T0)).upcoming[0].appointment == booked
    )


def test_reminders_go_once_before_the_appointment(clinic: Clinic) -> None:
    clinic.agenda.book(ctx(clinic.patient("p1"), T0), "d1", SLOT)
    soon = clinic.agenda.book(ctx(clinic.patient("p2"), T0), "d1", paris(2026, 3, 2, 11, 0))
    clinic.mailer.sent.clear()
    assert clinic.agenda.send_reminders(T0) == 1  # only the one within 24 hours
    [reminder] = clinic.mailer.sent
    assert reminder.to == "p2@mail.example" and "02/03/2026 11:00 (heure de Paris)" in reminder.text
    assert all(word not in reminder.text for word in HEALTH_WORDS)
    assert clinic.agenda.send_reminders(T0 + timedelta(minutes=5)) == 0  # once
    day_before = SLOT - timedelta(hours=23)
    assert clinic.agenda.send_reminders(day_before) == 1
    assert clinic.agenda.send_reminders(day_before) == 0
    assert len(clinic.mailer.sent) == 2
    assert soon.status is Status.BOOKED


def test_the_zone_is_paris_in_tests(clinic: Clinic) -> None:
    assert clinic.agenda.settings.tz == PARIS
