"""Attacks on the call's guests (a second practitioner or an interpreter the patient accepted):
a practitioner nobody accepted, another patient accepting for someone else's appointment, a
guest row written or revived outside Secretum, a guest staying on after the withdrawal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from consult_world import (
    RECHECK,
    accept,
    add_interpreter,
    book,
    call_world,
    client,
    entries,
    refused,
    socket,
    until,
    withdraw,
)
from secretum.audit.model import Outcome
from secretum.policy import guests
from secretum.policy.tables import call_guests, utc
from web_world import WebWorld


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    world = call_world(tmp_path)
    add_interpreter(world)
    return world


@pytest.mark.parametrize("name", ["interp", "radio"])
def test_a_practitioner_not_accepted_is_4403_and_audited(world: WebWorld, name: str) -> None:
    aid = book(world, "other", "gp")
    assert refused(world, name, aid) == (4403, "refused")
    entry = entries(world, aid)[-1]
    assert entry["outcome"] == Outcome.MINOR_FAILURE
    assert entry["actor_id"] == world.users[name].user_id
    assert entry["outcome_desc"] == "deny.not-in-care-team"


def test_another_patient_cannot_accept_for_this_appointment(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    before = len(entries(world, aid))
    response = accept(world, "own", aid, "interp")
    assert response.status_code == 403
    (entry,) = entries(world, aid)[before:]
    assert entry["outcome_desc"] == "deny.not-own-record"
    assert entry["actor_id"] == world.users["own"].user_id
    assert refused(world, "interp", aid) == (4403, "refused")
    # nor withdraw the patient's own choice
    assert accept(world, "other", aid, "interp").status_code == 303
    assert withdraw(world, "own", aid, "interp").status_code == 403
    with world.platform.engine.connect() as conn:
        assert [g.practitioner_id for g in guests.guests_of(conn, aid)] == [
            world.users["interp"].user_id
        ]


def test_a_practitioner_cannot_accept_themselves(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    with world.client("interp") as tc:
        response = tc.post(
            f"/me/appointments/{aid}/guests",
            data={"practitioner_id": world.users["interp"].user_id},
        )
    assert response.status_code == 403  # the patients' page: role refused
    assert refused(world, "interp", aid) == (4403, "refused")


def test_withdrawn_during_the_call_ends_the_guests_participation(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    assert accept(world, "other", aid, "interp").status_code == 303
    with client(world) as tc, socket(tc, world, "gp", aid) as doctor:
        until(doctor, "welcome")
        with socket(tc, world, "interp", aid) as third:
            hello = until(third, "welcome")
            doctor.send_text(json.dumps({"type": "admit", "pid": hello["you"]}))
            until(third, "admitted")
            assert withdraw(world, "other", aid, "interp").status_code == 303
            time.sleep(RECHECK * 3)
            assert until(third, "ended")["reason"] == "guest-withdrawn"
        assert until(doctor, "left")["pid"] == hello["you"]
    assert refused(world, "interp", aid) == (4403, "refused")


def test_a_guest_row_forged_or_revived_in_the_database_is_refused(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    interp, patient = world.users["interp"].user_id, world.users["other"].user_id
    with world.platform.engine.begin() as conn:  # no tag: written outside Secretum
        conn.execute(
            insert(call_guests).values(
                guest_id="f" * 32, appointment_id=aid, patient_id=patient,
                practitioner_id=interp, accepted_at=utc(world.clock.now), withdrawn_at=None,
                row_mac=b"\0" * 32,
            )
        )  # fmt: skip
    assert refused(world, "interp", aid) == (4403, "refused")
    assert entries(world, aid)[-1]["outcome"] != Outcome.SUCCESS
    with world.platform.engine.begin() as conn:
        conn.execute(call_guests.delete())
    # accepted then withdrawn; the withdrawal erased outside Secretum: refused (tag)
    assert accept(world, "other", aid, "interp").status_code == 303
    assert withdraw(world, "other", aid, "interp").status_code == 303
    with world.platform.engine.begin() as conn:
        conn.execute(update(call_guests).values(withdrawn_at=None))
    assert refused(world, "interp", aid) == (4403, "refused")
