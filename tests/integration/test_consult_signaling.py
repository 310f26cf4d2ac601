"""The call's signaling end to end on the real app: join, waiting room, admit, relay, leave,
the re-check that ends a call, and the audit of each step."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from consult_world import RECHECK, book, call_world, client, entries, settled, socket, until
from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.agenda import store
from secretum.audit.model import Outcome
from secretum.consent.store import ConsentMethod
from secretum.policy import care
from web_world import WebWorld

COMMIT = "A" * 43
PUBLIC = "B" * 87


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return call_world(tmp_path)


def test_waiting_room_admit_relay_and_leave_are_audited(world: WebWorld) -> None:
    aid = book(world)
    with client(world) as tc, socket(tc, world, "gp", aid) as doctor:
        welcome = until(doctor, "welcome")
        assert welcome["role"] == "practitioner" and welcome["ice_servers"] == []
        assert until(doctor, "admitted")["peers"] == []
        assert until(doctor, "lobby")["waiting"] == []
        with socket(tc, world, "own", aid) as patient:
            me = until(patient, "welcome")
            assert me["role"] == "patient" and len(me["you"]) == 16
            assert until(patient, "waiting") == {"type": "waiting"}
            lobby = until(doctor, "lobby")["waiting"]
            assert lobby == [{"pid": me["you"], "name": "Apolline Zéphyrin-Test"}]
            # not admitted yet: nothing is relayed
            patient.send_text(json.dumps({"type": "key", "commitment": COMMIT}))
            assert until(patient, "error")["code"] == "not-admitted"
            doctor.send_text(json.dumps({"type": "admit", "pid": me["you"]}))
            assert until(patient, "admitted")["peers"] == [welcome["you"]]
            assert until(doctor, "joined")["pid"] == me["you"]
            assert until(doctor, "lobby")["waiting"] == []
            offer = {"description": {"type": "offer", "sdp": "v=0\r\n"}}
            doctor.send_text(json.dumps({"type": "signal", "to": me["you"], "data": offer}))
            got = until(patient, "signal")
            assert got == {"type": "signal", "from": welcome["you"], "data": offer}
            cand = {"candidate": {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host",
                                  "sdpMid": "0", "sdpMLineIndex": 0}}  # fmt: skip
            patient.send_text(json.dumps({"type": "signal", "to": welcome["you"], "data": cand}))
            assert until(doctor, "signal")["data"] == cand
            patient.send_text(json.dumps({"type": "key", "public_key": PUBLIC}))
            assert until(doctor, "key") == {"type": "key", "from": me["you"], "public_key": PUBLIC}
            patient.send_text(json.dumps({"type": "ping"}))
            assert until(patient, "pong") == {"type": "pong"}
            patient.send_text(json.dumps({"type": "leave"}))
            assert until(patient, "ended")["reason"] == "hung-up"
        assert until(doctor, "left")["pid"] == me["you"]
    settled(world, aid, "call.", 2)
    log = entries(world, aid)
    joins = [e for e in log if e["outcome_desc"] is None]
    assert len(joins) == 2 and all(e["outcome"] == Outcome.SUCCESS for e in joins)
    assert all(e["subtype"] == "operation" and e["resource_type"] == "Appointment" for e in log)
    leaves = sorted(e["outcome_desc"] for e in log if e["outcome_desc"])
    assert leaves[0].startswith("call.disconnected.") and leaves[0].endswith("s")
    assert leaves[1].startswith("call.hung-up.")


def test_withdrawing_consent_during_a_call_ends_it(world: WebWorld) -> None:
    aid = book(world)
    own = world.users["own"]
    with (
        client(world) as tc,
        socket(tc, world, "gp", aid) as doctor,
        socket(tc, world, "own", aid) as patient,
    ):
        me = until(patient, "welcome")
        doctor.send_text(json.dumps({"type": "admit", "pid": me["you"]}))
        until(patient, "admitted")
        svc = world.services.consent
        svc.withdraw(
            RequestContext(own.actor, Purpose.PATIENT_REQUEST, world.clock.now),
            patient_id=own.user_id,
            purpose=Purpose.TELECONSULTATION,
            method=ConsentMethod.WEB_CHECKBOX,
        )
        time.sleep(RECHECK * 3)
        assert until(patient, "ended")["reason"] == "consent-withdrawn"
        assert until(doctor, "ended")["reason"] == "consent-withdrawn"
    descs = settled(world, aid, "call.consent-withdrawn.", 2)
    assert sum(d.startswith("call.consent-withdrawn.") for d in descs) == 2, descs


def test_call_page_for_the_participants_only(world: WebWorld) -> None:
    aid = book(world)
    page = world.client("own", html=True).get(f"/consult/{aid}")
    assert page.status_code == 200
    assert "Dr Gaston Généraliste" in page.text  # the other party
    assert f"wss://testserver/consult/{aid}/ws" in page.text
    doctor = world.client("gp", html=True).get(f"/consult/{aid}")
    assert doctor.status_code == 200 and "Apolline Zéphyrin-Test" in doctor.text
    for intruder in ("other", "radio"):
        refused = world.client(intruder, html=True).get(f"/consult/{aid}")
        assert refused.status_code == 403
        assert "Apolline" not in refused.text
    assert world.client("admin", html=True).get(f"/consult/{aid}").status_code == 403
    assert world.client(None, html=True).get(f"/consult/{aid}").status_code == 303
    reads = [e for e in entries(world, aid) if e["subtype"] == "read"]
    assert [e["outcome"] for e in reads] == [0, 0, 4, 4]  # admin refused by role, before


def test_two_sockets_of_one_account_the_older_is_replaced(world: WebWorld) -> None:
    aid = book(world)
    with client(world) as tc, socket(tc, world, "gp", aid) as first:
        until(first, "lobby")
        with socket(tc, world, "gp", aid) as second:
            until(second, "welcome")
            assert until(first, "ended")["reason"] == "replaced"
    assert any(c.startswith("call.replaced.") for c in settled(world, aid, "call.replaced.", 1))


def _in_call(stack: ExitStack, tc: Any, world: WebWorld, aid: str) -> tuple[Any, Any]:
    doctor = stack.enter_context(socket(tc, world, "gp", aid))
    patient = stack.enter_context(socket(tc, world, "own", aid))
    me = until(patient, "welcome")["you"]
    doctor.send_text(json.dumps({"type": "admit", "pid": me}))
    until(patient, "admitted")
    return doctor, patient


def _closed_with(ws: Any) -> tuple[int, str]:
    try:
        while True:
            ws.receive_text()
    except WebSocketDisconnect as exc:
        return exc.code, exc.reason


def test_an_ended_care_relationship_ends_the_call(world: WebWorld) -> None:
    aid = book(world)
    with client(world) as tc, ExitStack() as stack:
        doctor, patient = _in_call(stack, tc, world, aid)
        own, gp = world.users["own"].user_id, world.users["gp"].user_id
        with world.platform.engine.begin() as conn:  # the booking's and the invitation's
            found = store.appointment(conn, aid)
            assert found is not None and found.relationship_id is not None
            ties = [r for r in care.relationships(conn, own) if r.practitioner_id == gp]
            assert found.relationship_id in {r.relationship_id for r in ties}
            for tie in ties:
                care.end(conn, tie.relationship_id, world.clock.now)
        assert until(patient, "ended")["reason"] == "relationship-ended"
        assert _closed_with(patient) == (4410, "relationship-ended")
        assert until(doctor, "ended")["reason"] == "relationship-ended"
    settled(world, aid, "call.relationship-ended.", 2)


def test_the_end_of_the_window_ends_the_call(world: WebWorld) -> None:
    aid = book(world)  # in 5 minutes, 30 minutes long, 30 minutes of grace
    with client(world) as tc, ExitStack() as stack:
        doctor, patient = _in_call(stack, tc, world, aid)
        world.clock.advance(minutes=5 + 30 + 30 - 1)
        patient.send_text(json.dumps({"type": "ping"}))
        assert until(patient, "pong")  # still on
        world.clock.advance(minutes=2)
        assert until(patient, "ended")["reason"] == "time-over"
        assert until(doctor, "ended")["reason"] == "time-over"


def test_signing_out_ends_the_call_with_4401(world: WebWorld) -> None:
    aid = book(world)
    with client(world) as tc, ExitStack() as stack:
        doctor, patient = _in_call(stack, tc, world, aid)
        sessions = world.services.identity.sessions
        assert sessions.sign_out(world.users["own"].session_id, now=world.clock.now)
        assert until(patient, "ended")["reason"] == "session-ended"
        assert _closed_with(patient) == (4401, "session")
        assert until(doctor, "left")
    assert "call.session-ended." in " ".join(settled(world, aid, "call.session-ended.", 1))
