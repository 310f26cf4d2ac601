"""The agenda's pages and FHIR routes on a whole platform, on SQLite and PostgreSQL: a
practitioner publishes, a patient books, moves and cancels, both agendas show it in the clinic's
time with its label; the consultation note goes into the record (sealed) and the patient sees
it; the FHIR shapes of Schedule, Slot, Appointment and Encounter; every use case audited."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select, text

from agenda_web import (
    NINE,
    NINE_THIRTY,
    TEN,
    WEDNESDAY,
    appointment_ids,
    book,
    html,
    publish,
)
from secretum.audit.store import audit_entries
from web_world import WebWorld, clinic

FHIR = "application/fhir+json"
#: Between a consultation's start and end on the pages (an en dash).
DASH = "\u2013"
KEY = re.compile(r"\b(?:agenda|record|nav|care|error|reason)\.[a-z_.-]+\b")


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> WebWorld:
    world = clinic(tmp_path, database_url=db_url)
    assert publish(world).status_code == 303
    return world


def visible(page: str) -> str:
    body = page[page.index("<main") :]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def row(day: str, start: str, end: str, minutes: str) -> dict[str, list[str]]:
    """An availability form of one weekly row."""
    return {"w_day": [day], "w_start": [start], "w_end": [end], "w_minutes": [minutes],
            "w_mode": ["video"]}  # fmt: skip


def entries(world: WebWorld, resource_type: str) -> list[dict[str, object]]:
    with world.platform.engine.connect() as conn:
        rows = conn.execute(
            select(audit_entries).where(audit_entries.c.resource_type == resource_type)
        ).mappings()
        return [dict(r) for r in rows]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_book_then_both_agendas_show_it_in_clinic_time(world: WebWorld, lang: str) -> None:
    gp = world.users["gp"]
    slots = html(world, "other", lang).get(f"/me/appointments/book?practitioner_id={gp.user_id}")
    assert slots.status_code == 200
    shown = visible(slots.text)
    label = "heure de Paris" if lang == "fr" else "Paris time"
    assert label in shown and "09:00" in shown and "14:00" in shown
    assert NINE.isoformat() in slots.text  # the slot's instant, in UTC, in the form
    assert not KEY.search(shown), KEY.search(shown)
    assert book(world, "other", NINE).headers["location"] == "/me/appointments?done=booked"

    mine = html(world, "other", lang).get("/me/appointments?done=booked")
    page = visible(mine.text)
    assert "Dr Gaston Généraliste" in page and f"09:00{DASH}09:30" in page and label in page
    [appointment_id] = appointment_ids(mine.text)
    assert f'href="/consult/{appointment_id}"' in mine.text  # Join (video)
    assert ("Rendez-vous réservé" if lang == "fr" else "Appointment booked") in page
    assert not KEY.search(page), KEY.search(page)

    day = html(world, "gp", lang).get(f"/practice/agenda?day={WEDNESDAY}")
    assert "Bérénice Quintal-Test" in visible(day.text) and f"09:00{DASH}09:30" in visible(day.text)
    assert f'href="/consult/{appointment_id}"' in day.text
    week = html(world, "gp", lang).get(f"/practice/agenda?view=week&day={WEDNESDAY}")
    assert "Bérénice Quintal-Test" in visible(week.text)
    other_day = html(world, "gp", lang).get("/practice/agenda?day=2026-03-05")
    assert "Bérénice" not in visible(other_day.text)
    # the booked slot is no longer offered
    again = html(world, "own").get(f"/me/appointments/book?practitioner_id={gp.user_id}")
    assert NINE.isoformat() not in again.text and NINE_THIRTY.isoformat() in again.text


def test_move_then_cancel_from_the_pages(world: WebWorld) -> None:
    book(world, "other", NINE)
    [first] = appointment_ids(html(world, "other").get("/me/appointments").text)
    page = html(world, "other").get(f"/me/appointments/{first}/move")
    assert page.status_code == 200 and NINE_THIRTY.isoformat() in page.text
    moved = html(world, "other").post(
        f"/me/appointments/{first}/move", data={"start": NINE_THIRTY.isoformat()}
    )
    assert moved.headers["location"] == "/me/appointments?done=moved"
    listed = html(world, "other").get("/me/appointments").text
    [second] = appointment_ids(listed)
    assert second != first and f"09:30{DASH}10:00" in visible(listed)
    cancelled = html(world, "other").post(f"/me/appointments/{second}/cancel")
    assert cancelled.headers["location"] == "/me/appointments?done=cancelled"
    assert appointment_ids(html(world, "other").get("/me/appointments").text) == []
    # each change is one audited use case of the patient's
    changes = [e for e in entries(world, "Appointment") if e["action"] == "U"]
    assert len(changes) == 2 and all(e["outcome"] == 0 for e in changes)


def test_availability_page_round_trips_and_rejects_nonsense(world: WebWorld) -> None:
    form = html(world, "gp").get("/practice/availability").text
    assert 'value="09:00"' in form and 'value="2026-04-01"' in form
    bad = publish(world, form=row("2", "12:00", "09:00", "30"))
    assert bad.status_code == 400 and "pas valides" in visible(bad.text)
    half = publish(world, form=row("", "09:00", "12:00", "30"))
    assert half.status_code == 400
    # still as published; then closing everything empties the slots
    assert 'value="09:00"' in html(world, "gp").get("/practice/availability").text
    assert publish(world, form=row("", "", "", "")).status_code == 303
    gp = world.users["gp"].user_id
    slots = html(world, "other").get(f"/me/appointments/book?practitioner_id={gp}")
    assert "Aucun créneau libre" in visible(slots.text)


def test_booking_without_consent_says_so_with_a_link(world: WebWorld) -> None:
    refused = book(world, "noconsent", NINE)
    assert refused.status_code == 403
    assert 'href="/me/consents#p-teleconsultation"' in refused.text
    assert "consentement à la téléconsultation" in visible(refused.text)
    assert appointment_ids(html(world, "noconsent").get("/me/appointments").text) == []
    [entry] = [e for e in entries(world, "Appointment") if e["action"] == "C"]
    assert entry["outcome"] == 4 and entry["outcome_desc"] == "deny.no-consent"


def test_the_consultation_note_goes_to_the_record_sealed(world: WebWorld) -> None:
    # nocare is not in gp's care team: the booking puts gp in it
    book(world, "nocare", NINE)
    [aid] = appointment_ids(html(world, "nocare").get("/me/appointments").text)
    early = html(world, "gp").post(f"/practice/agenda/{aid}/note", data={"text": "early"})
    assert early.status_code == 409  # the consultation has not begun
    world.clock.now = NINE.replace(minute=40)
    world.sign_in("gp")
    world.sign_in("nocare")
    day = html(world, "gp").get(f"/practice/agenda?day={WEDNESDAY}").text
    assert f'href="/practice/agenda/{aid}/note"' in day
    assert "Casimir Ondulé-Test" in visible(
        html(world, "gp").get(f"/practice/agenda/{aid}/note").text
    )
    note = "Toux sèche depuis 3 jours <b>pas de fièvre</b>\nRevoir dans 1 semaine."
    written = html(world, "gp").post(f"/practice/agenda/{aid}/note", data={"text": note})
    assert written.headers["location"] == "/practice/agenda?done=note"
    again = html(world, "gp").post(f"/practice/agenda/{aid}/note", data={"text": "twice"})
    assert again.status_code == 409
    record = html(world, "nocare").get("/me/record").text
    assert "Toux sèche depuis 3 jours &lt;b&gt;pas de fièvre&lt;/b&gt;" in record
    assert "Dr Gaston Généraliste" in visible(record)
    chart = html(world, "gp").get(f"/practice/patients/{world.users['nocare'].user_id}").text
    assert "Revoir dans 1 semaine." in chart  # the practitioner's view of the record too
    past = visible(html(world, "nocare").get("/me/appointments").text)
    assert "Consultation tenue" in past
    # sealed: the note's words are nowhere in the database in clear
    with world.platform.engine.connect() as conn:
        for table in ("sealed_records", "fhir_resources", "audit_entries", "agenda_appointments"):
            dump = " ".join(str(r) for r in conn.execute(text(f"SELECT * FROM {table}")))
            assert "Toux" not in dump and "fièvre" not in dump
    # the Encounter (class VR, the appointment's id and reference) through the FHIR API
    fhir = world.client("gp")
    found = fhir.get(f"/fhir/Encounter/{aid}").json()
    assert found["class"]["code"] == "VR" and found["status"] == "finished"
    assert found["appointment"] == [{"reference": f"Appointment/{aid}"}]
    held = fhir.get(f"/fhir/Encounter?patient={world.users['nocare'].user_id}").json()
    assert [e["resource"]["id"] for e in held["entry"]] == [aid]  # the records' search
    notes = fhir.get(f"/fhir/Composition?patient={world.users['nocare'].user_id}").json()
    [composition] = [e["resource"] for e in notes["entry"]]
    assert composition["encounter"] == {"reference": f"Encounter/{aid}"}
    assert composition["type"]["coding"][0]["code"] == "11488-4"
    # one audited decision for the note (the Encounter created), allowed
    created = [e for e in entries(world, "Encounter") if e["action"] == "C"]
    assert [e["outcome"] for e in created] == [4, 0, 4]  # too early, written, a second time


def test_fhir_schedule_slots_appointments_and_encounter(world: WebWorld) -> None:
    gp, other = world.users["gp"].user_id, world.users["other"].user_id
    patient = world.client("other")
    schedule = patient.get(f"/fhir/Schedule/{gp}")
    assert schedule.status_code == 200 and schedule.headers["content-type"] == FHIR
    assert schedule.json()["actor"] == [{"reference": f"Practitioner/{gp}"}]
    assert patient.get(f"/fhir/Schedule/{world.users['radio'].user_id}").status_code == 404
    slots = patient.get(
        f"/fhir/Slot?schedule=Schedule/{gp}&start=ge{WEDNESDAY}&start=le{WEDNESDAY}"
    )
    starts = [e["resource"]["start"][:19] for e in slots.json()["entry"]]
    assert starts[0] == "2026-03-04T08:00:00" and len(starts) == 6
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-03-04T09:00:00Z",
        "participant": [{"actor": {"reference": f"Practitioner/{gp}"}, "status": "accepted"}],
    }
    created = patient.post("/fhir/Appointment", json=body)
    assert created.status_code == 201, created.text
    appointment = created.json()
    aid = appointment["id"]
    assert created.headers["location"].endswith(f"/fhir/Appointment/{aid}")
    assert appointment["participant"][0]["actor"]["reference"] == f"Patient/{other}"
    read = patient.get(f"/fhir/Appointment/{aid}").json()
    assert read["start"][:19] == TEN.strftime("%Y-%m-%dT%H:%M:%S")
    mine = patient.get(f"/fhir/Appointment?patient={other}").json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [aid]
    doctor = world.client("gp")
    week = doctor.get(f"/fhir/Appointment?practitioner={gp}&date=2026-03-02").json()
    assert [e["resource"]["id"] for e in week["entry"]] == [aid]
    assert doctor.get(f"/fhir/Appointment/{aid}").status_code == 200  # care team
    [encounter] = [
        e["resource"] for e in doctor.get(f"/fhir/Encounter?appointment={aid}").json()["entry"]
    ]
    assert encounter["class"]["code"] == "VR" and encounter["status"] == "planned"
    cancel = {**appointment, "status": "cancelled"}
    cancelled = patient.put(f"/fhir/Appointment/{aid}", json=cancel)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert patient.get("/fhir/Slot?schedule=Schedule/" + gp).status_code == 200
    assert patient.get("/fhir/Appointment/" + "0" * 32).status_code == 404
