"""The agenda wired in a whole platform (tests/web_world.py): real accounts whose names and
addresses are sealed, the outbox mailer, the settings, and the reminder duty of the server."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from agenda_world import ctx
from secretum.agenda.model import Availability, Modality, WeeklyHours
from secretum.agenda.service import TooLate
from secretum.localtime import zone
from web_world import SECRETS, clinic

PARIS = zone("Europe/Paris")


def outbox(world: object) -> list[str]:
    mailer = world.services.mailer  # type: ignore[attr-defined]
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default).get_body().get_content()
        for p in mailer.messages()
    ]


def test_booking_mail_agenda_and_reminder_on_a_real_platform(tmp_path: Path) -> None:
    world = clinic(tmp_path, agenda_change_delay_hours=48, agenda_reminder_hours=36)
    gp, patient = world.users["gp"], world.users["other"]
    agenda = world.services.agenda
    assert agenda.settings.change_delay == timedelta(hours=48)
    weekdays = tuple(WeeklyHours(d, time(9), time(12), 30, Modality.VIDEO) for d in range(5))
    agenda.publish(ctx(gp.actor, world.clock.now), Availability(weekdays))
    assert outbox(world) == []
    at = datetime(2026, 3, 4, 10, 30, tzinfo=PARIS)  # Wednesday
    booked = agenda.book(ctx(patient.actor, world.clock.now), gp.user_id, at)
    # the practitioner's day shows the patient's name, opened from the sealed account
    [entry] = agenda.agenda(ctx(gp.actor, world.clock.now), date(2026, 3, 4))
    assert entry.display_name == "Bérénice Quintal-Test"
    assert entry.appointment == booked
    mine = agenda.consultations(ctx(patient.actor, world.clock.now))
    assert mine.upcoming[0].display_name == "Dr Gaston Généraliste"
    # one mail, to the patient's address, in the clinic's time, saying nothing else
    [mail] = outbox(world)
    assert "04/03/2026 10:30 (heure de Paris)" in mail and "2026-03-04 10:30 (Paris time)" in mail
    for secret in ("Gaston", "general-practice", "Bérénice", "téléconsultation", *SECRETS["other"]):
        assert secret not in mail
    # the server's duty sends the reminder once, within the lead the settings give
    duties = {duty.__name__: duty for _period, duty in world.platform.duties()}
    assert duties["send_appointment_reminders"]() == 0  # 49.5 hours ahead
    world.clock.advance(hours=14)
    assert duties["send_appointment_reminders"]() == 1
    assert duties["send_appointment_reminders"]() == 0
    # (outbox files are named by the second they were written: order within one is random)
    assert sum("Rappel" in m for m in outbox(world)) == 1 and len(outbox(world)) == 2
    with pytest.raises(TooLate, match="48 hours"):
        agenda.cancel(ctx(patient.actor, world.clock.now), booked.appointment_id)
