"""A second practitioner or an interpreter the patient accepted into one appointment's call:
accepted and withdrawn on the patient's appointments page (through the door, audited), then
admitted by the practitioner from the waiting room like the patient, for that appointment
only, while the acceptance holds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from consult_world import (
    NAMES,
    RECHECK,
    accept,
    add_interpreter,
    book,
    call_world,
    client,
    entries,
    refused,
    settled,
    socket,
    until,
    withdraw,
)
from secretum.audit.model import Outcome
from secretum.policy import guests
from web_world import WebWorld


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    world = call_world(tmp_path)
    add_interpreter(world)
    return world


@pytest.mark.parametrize("guest", ["interp", "radio"])
def test_an_accepted_guest_waits_is_admitted_and_then_withdrawn(
    world: WebWorld, guest: str
) -> None:
    # "other" is in gp's care team only: neither the interpreter nor radio is in it.
    aid = book(world, "other", "gp")
    assert refused(world, guest, aid) == (4403, "refused")
    before = len(entries(world, aid))
    response = accept(world, "other", aid, guest)
    assert response.status_code == 303 and "done=guest_added" in response.headers["location"]
    (entry,) = entries(world, aid)[before:]  # one decision, one entry
    assert entry["outcome"] == Outcome.SUCCESS and entry["subtype"] == "update"
    assert entry["actor_id"] == world.users["other"].user_id
    # The page lists them, with a way to withdraw them.
    with world.client("other", html=True) as tc:
        page = tc.get("/me/appointments").text
    assert f"/guests/{world.users[guest].user_id}/withdraw" in page

    with (
        client(world) as tc,
        socket(tc, world, "gp", aid) as doctor,
        socket(tc, world, "other", aid) as patient,
    ):
        doc = until(doctor, "welcome")
        me = until(patient, "welcome")
        doctor.send_text(json.dumps({"type": "admit", "pid": me["you"]}))
        until(patient, "admitted")
        with socket(tc, world, guest, aid) as third:
            hello = until(third, "welcome")
            assert hello["role"] == "guest"
            assert until(third, "waiting") == {"type": "waiting"}
            lobby: list[dict[str, str]] = []
            while hello["you"] not in [w["pid"] for w in lobby]:
                lobby = until(doctor, "lobby")["waiting"]
            assert lobby == [{"pid": hello["you"], "name": NAMES[guest]}]
            # a guest admits nobody, even once in
            doctor.send_text(json.dumps({"type": "admit", "pid": hello["you"]}))
            welcome = until(third, "admitted")
            assert sorted(welcome["peers"]) == sorted([doc["you"], me["you"]])
            assert welcome["names"] == {
                doc["you"]: "Dr Gaston Généraliste", me["you"]: "Bérénice Quintal-Test",
            }  # fmt: skip
            joined = until(patient, "joined")
            assert joined == {"type": "joined", "pid": hello["you"], "name": NAMES[guest]}
            third.send_text(json.dumps({"type": "admit", "pid": me["you"]}))
            assert until(third, "error")["code"] == "not-allowed"
            # The patient withdraws them: their call ends at the next re-check, not the others'.
            assert withdraw(world, "other", aid, guest).status_code == 303
            time.sleep(RECHECK * 3)
            assert until(third, "ended")["reason"] == "guest-withdrawn"
        assert until(patient, "left")["pid"] == hello["you"]
        patient.send_text(json.dumps({"type": "ping"}))
        assert until(patient, "pong") == {"type": "pong"}
    codes = settled(world, aid, "call.guest-withdrawn.", 1)
    assert sum(c.startswith("call.guest-withdrawn.") for c in codes) == 1, codes
    # Withdrawn: refused again.
    assert refused(world, guest, aid) == (4403, "refused")


def test_a_guest_in_the_care_team_is_still_only_a_guest(world: WebWorld) -> None:
    """radio is in own's care team; accepted into own's call with gp, withdrawn mid-call."""
    aid = book(world, "own", "gp")
    assert accept(world, "own", aid, "radio").status_code == 303
    with client(world) as tc, socket(tc, world, "radio", aid) as third:
        assert until(third, "welcome")["role"] == "guest"
        assert withdraw(world, "own", aid, "radio").status_code == 303
        time.sleep(RECHECK * 3)
        assert until(third, "ended")["reason"] == "guest-withdrawn"


def test_the_acceptance_is_for_that_appointment_only(world: WebWorld) -> None:
    first = book(world, "other", "gp")
    second = book(world, "other", "gp")
    assert accept(world, "other", first, "interp").status_code == 303
    with client(world) as tc, socket(tc, world, "interp", first) as ws:
        assert until(ws, "welcome")["role"] == "guest"
    assert refused(world, "interp", second) == (4403, "refused")
    # nor does it open the record
    with world.client("interp") as tc:
        record = tc.get(f"/practice/patients/{world.users['other'].user_id}")
    assert record.status_code in (403, 404)


def test_the_guest_saves_nothing_into_the_record(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    assert accept(world, "other", aid, "interp").status_code == 303
    with world.client("interp") as tc:
        response = tc.post(
            f"/consult/{aid}/documents",
            files={"file": ("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")},
        )
    assert response.status_code == 403


@pytest.mark.parametrize("guest", ["gp", "other", "admin"])
def test_not_someone_to_accept(world: WebWorld, guest: str) -> None:
    """The appointment's own practitioner, a patient, an admin: not in the staff directory
    of practitioners to accept (404), or refused by the agenda (400); nothing kept."""
    aid = book(world, "own", "gp")
    response = accept(world, "own", aid, guest)
    assert response.status_code in (400, 404)
    with world.platform.engine.connect() as conn:
        assert guests.guests_of(conn, aid) == []


def test_without_the_teleconsultation_consent_no_guest_is_accepted(world: WebWorld) -> None:
    aid = book(world, "noconsent", "gp")
    before = len(entries(world, aid))
    response = accept(world, "noconsent", aid, "interp")
    assert response.status_code == 403
    (entry,) = entries(world, aid)[before:]
    assert entry["outcome_desc"] == "deny.no-consent"
    with world.platform.engine.connect() as conn:
        assert guests.guests_of(conn, aid) == []
