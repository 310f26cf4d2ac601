"""Signed-in users play against the agenda's pages and FHIR routes (SQLite and PostgreSQL):
another patient's appointment (cancel, move, read, list), booking without the teleconsultation
consent, moving after the change delay, a practitioner editing someone else's availability or
writing the note of someone else's consultation, a patient posting to a practitioner's page,
a form without its CSRF token. Each is refused, changes nothing, and the policy's refusals are
audited (the FHIR API answers them with its one fixed body)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agenda_web import NINE, NINE_THIRTY, WEDNESDAY, appointment_ids, book, html, publish
from secretum.agenda import store
from secretum.audit.store import audit_entries
from web_world import WebWorld, clinic

FIXED_DENY = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"access denied"}]}'  # noqa: E501


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> WebWorld:
    world = clinic(tmp_path, database_url=db_url)
    assert publish(world).status_code == 303
    return world


def booked_by(world: WebWorld, patient: str) -> str:
    assert book(world, patient, NINE).status_code == 303
    [aid] = appointment_ids(html(world, patient).get("/me/appointments").text)
    return aid


def status(world: WebWorld, appointment_id: str) -> str:
    with world.platform.engine.connect() as conn:
        found = store.appointment(conn, appointment_id)
        assert found is not None
        return str(found.status)


def refusals(world: WebWorld, reason: str) -> int:
    with world.platform.engine.connect() as conn:
        rows = conn.execute(
            select(audit_entries.c.seq).where(audit_entries.c.outcome_desc == reason)
        ).all()
        return len(rows)


def test_another_patients_appointment_is_out_of_reach(world: WebWorld) -> None:
    aid = booked_by(world, "other")
    before = refusals(world, "deny.not-own-record")
    attacker = html(world, "own")
    assert attacker.post(f"/me/appointments/{aid}/cancel").status_code == 403
    assert attacker.get(f"/me/appointments/{aid}/move").status_code == 403
    moved = attacker.post(f"/me/appointments/{aid}/move", data={"start": NINE_THIRTY.isoformat()})
    assert moved.status_code == 403
    api = world.client("own")
    read = api.get(f"/fhir/Appointment/{aid}")
    assert read.status_code == 403 and read.content == FIXED_DENY
    listed = api.get(f"/fhir/Appointment?patient={world.users['other'].user_id}")
    assert listed.status_code == 403 and listed.content == FIXED_DENY
    encounter = api.get(f"/fhir/Encounter?appointment={aid}")
    assert encounter.status_code == 403 and encounter.content == FIXED_DENY
    body = {
        "resourceType": "Appointment",
        "id": aid,
        "status": "cancelled",
        "participant": [{"actor": {"reference": "Patient/x"}, "status": "accepted"}],
    }
    assert api.put(f"/fhir/Appointment/{aid}", json=body).content == FIXED_DENY
    # nothing changed; the victim's page still shows it; every attempt audited as refused
    assert status(world, aid) == "booked"
    assert appointment_ids(html(world, "other").get("/me/appointments").text) == [aid]
    assert refusals(world, "deny.not-own-record") - before == 7
    # and the other patient's name never reaches the attacker's pages
    assert "Bérénice" not in attacker.get("/me/appointments").text


def test_booking_without_consent_is_refused_everywhere(world: WebWorld) -> None:
    gp = world.users["gp"].user_id
    page = book(world, "noconsent", NINE)
    assert page.status_code == 403 and "/me/consents" in page.text
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": NINE.isoformat(),
        "participant": [{"actor": {"reference": f"Practitioner/{gp}"}, "status": "accepted"}],
    }
    api = world.client("noconsent").post("/fhir/Appointment", json=body)
    assert api.status_code == 403 and api.content == FIXED_DENY
    with world.platform.engine.connect() as conn:
        assert store.of_patient(conn, world.users["noconsent"].user_id) == []
    assert refusals(world, "deny.no-consent") == 2
    # the slot is still free for someone who consented
    assert book(world, "other", NINE).status_code == 303


def test_moving_or_cancelling_after_the_delay_is_refused(world: WebWorld) -> None:
    aid = booked_by(world, "other")
    world.clock.now = NINE - timedelta(hours=23)
    world.sign_in("other")
    page = html(world, "other").get("/me/appointments").text
    assert f"/me/appointments/{aid}/cancel" not in page  # no button offered...
    late = html(world, "other")  # ... and the request itself refused
    moved = late.post(f"/me/appointments/{aid}/move", data={"start": NINE_THIRTY.isoformat()})
    assert moved.status_code == 409 and "trop proche" in moved.text
    assert late.post(f"/me/appointments/{aid}/cancel").status_code == 409
    assert status(world, aid) == "booked"


def test_a_practitioner_edits_only_their_own_availability(world: WebWorld) -> None:
    gp, radio = world.users["gp"].user_id, world.users["radio"].user_id
    forged = {
        "practitioner_id": gp,  # ignored: the session says who publishes
        "w_day": ["0"], "w_start": ["08:00"], "w_end": ["09:00"], "w_minutes": ["15"],
        "w_mode": ["on-site"],
    }  # fmt: skip
    assert publish(world, "radio", forged).status_code == 303
    with world.platform.engine.connect() as conn:
        mine = store.availability_of(conn, radio)
        theirs = store.availability_of(conn, gp)
    assert [w.weekday for w in mine.weekly] == [0]
    assert [w.weekday for w in theirs.weekly] == [2, 3]  # untouched
    # patients, admins, DPOs have no availability page; no cross-site post either
    for name in ("own", "admin", "dpo"):
        assert publish(world, name).status_code == 403
        with world.platform.engine.connect() as conn:
            assert store.availability_of(conn, world.users[name].user_id).weekly == ()
    no_csrf = world.client("gp", html=True)
    del no_csrf.headers["x-csrf-token"]
    assert no_csrf.post("/practice/availability", data={"w_day": [""]}).status_code == 403
    with world.platform.engine.connect() as conn:
        assert len(store.availability_of(conn, gp).weekly) == 2


def test_only_the_appointments_practitioner_writes_its_note(world: WebWorld) -> None:
    aid = booked_by(world, "own")  # own's care team: gp and radio (both may read the record)
    world.clock.now = NINE + timedelta(minutes=35)
    for name in ("gp", "radio", "own", "other"):
        world.sign_in(name)
    colleague = html(world, "radio").post(f"/practice/agenda/{aid}/note", data={"text": "x"})
    assert colleague.status_code == 403
    assert html(world, "radio").get(f"/practice/agenda/{aid}/note").status_code == 403
    patient = html(world, "other").post(f"/practice/agenda/{aid}/note", data={"text": "x"})
    assert patient.status_code == 403
    assert status(world, aid) == "booked"
    # the FHIR read of another patient's Encounter, once written, is refused too
    assert (
        html(world, "gp").post(f"/practice/agenda/{aid}/note", data={"text": "ok"}).status_code
        == 303
    )
    stolen = world.client("other").get(f"/fhir/Encounter/{aid}")
    assert stolen.status_code == 403 and stolen.content == FIXED_DENY
    assert (
        f"/practice/agenda/{aid}/note"
        not in html(world, "gp").get(f"/practice/agenda?day={WEDNESDAY}").text
    )  # written once: no second note offered
