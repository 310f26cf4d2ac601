"""Threat: someone joins a call that is not theirs, or abuses the signaling socket.

Each refusal closes the WebSocket with the protocol's code (4401 without a live session, 4403
for a foreign Origin or a refusal of the join decision) and leaves one audit entry naming the
appointment with the reason code; the call's participants see nothing of it. Then: the
relayed key material (commitments, public keys) and SDP never reach the logs, the database or
the audit, and hostile frames close only the sender's socket (4400) while the server goes on.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from consult_world import book, call_world, client, entries, settled, socket, until
from secretum.agenda import store
from secretum.agenda.model import Status
from secretum.audit.model import Outcome
from secretum.consult.messages import MAX_FRAME_BYTES, parse
from secretum.logs import configure_logging
from secretum.web.deps import SESSION_COOKIE
from web_world import WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return call_world(tmp_path_factory.mktemp("consult"))


def closed(ws: WebSocketTestSession) -> tuple[int, str]:
    """The close code and reason the server ended ``ws`` with (no message before it)."""
    try:
        message = ws.receive_text()
    except WebSocketDisconnect as exc:
        return exc.code, exc.reason
    raise AssertionError(f"the socket was not closed, it sent {message!r}")


def refused(world: WebWorld, name: str | None, aid: str, **kw: Any) -> tuple[int, str]:
    with client(world) as tc, socket(tc, world, name, aid, **kw) as ws:
        return closed(ws)


def last_entry(world: WebWorld, aid: str) -> dict[str, Any]:
    return entries(world, aid)[-1]


def assert_refusal_audited(world: WebWorld, aid: str, actor: str | None, reason: str) -> None:
    entry = last_entry(world, aid)
    assert entry["outcome"] == Outcome.MINOR_FAILURE
    assert entry["outcome_desc"] == reason
    assert entry["resource_type"] == "Appointment" and entry["resource_id"] == aid
    expected = "anonymous" if actor is None else world.users[actor].user_id
    assert entry["actor_id"] == expected


def test_no_session_is_4401_and_audited(world: WebWorld) -> None:
    aid = book(world)
    assert refused(world, None, aid) == (4401, "session")
    assert_refusal_audited(world, aid, None, "deny.no-session")
    with (
        client(world) as tc,
        tc.websocket_connect(
            f"/consult/{aid}/ws",
            headers={
                "origin": world.platform.settings.base_url,
                "cookie": f"{SESSION_COOKIE}=forged-{secrets.token_hex(16)}",
            },
        ) as ws,
    ):
        assert closed(ws) == (4401, "session")
    assert_refusal_audited(world, aid, None, "deny.no-session")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("other", "deny.not-own-record"),  # another patient
        ("admin", "deny.role-never-health-data"),
        ("dpo", "deny.role-never-health-data"),
        ("radio", "deny.not-participant"),  # in own's care team, with consent: not this call's
    ],
)
def test_someone_else_is_4403_and_audited(world: WebWorld, name: str, reason: str) -> None:
    aid = book(world)
    assert refused(world, name, aid) == (4403, "refused")
    assert_refusal_audited(world, aid, name, reason)


@pytest.mark.parametrize(
    "bad", ["https://evil.example", "null", None, "https://localhost:8443.evil"]
)
def test_foreign_origin_is_4403_and_audited(world: WebWorld, bad: str | None) -> None:
    aid = book(world)
    assert refused(world, "own", aid, from_origin=bad) == (4403, "origin")
    assert_refusal_audited(world, aid, "own", "deny.bad-origin")


def test_another_patients_appointment_is_refused(world: WebWorld) -> None:
    aid = book(world, "other", "gp")
    assert refused(world, "own", aid) == (4403, "refused")
    assert_refusal_audited(world, aid, "own", "deny.not-own-record")
    unknown = secrets.token_hex(16)
    assert refused(world, "own", unknown) == (4403, "refused")
    assert_refusal_audited(world, unknown, "own", "deny.health-data-without-patient")


def test_outside_the_time_window_is_refused(tmp_path: Path) -> None:
    world = call_world(tmp_path)
    now = world.clock.now
    early = book(world, start=now + timedelta(minutes=11))  # the waiting room opens at -10
    for name in ("own", "gp"):
        assert refused(world, name, early) == (4403, "refused")
        assert_refusal_audited(world, early, name, "deny.outside-window")
    # 10 minutes before: open
    on_time = book(world, start=now + timedelta(minutes=10), minutes=15)
    with client(world) as tc, socket(tc, world, "own", on_time) as ws:
        assert until(ws, "welcome")["role"] == "patient"
    # past the end and the grace (30 minutes): closed again
    world.clock.advance(minutes=10 + 15 + 31)
    world.sign_in("own")
    assert refused(world, "own", on_time) == (4403, "refused")
    assert_refusal_audited(world, on_time, "own", "deny.outside-window")


def test_missing_consent_is_refused_for_both(world: WebWorld) -> None:
    aid = book(world, "noconsent", "gp")
    for name in ("noconsent", "gp"):
        assert refused(world, name, aid) == (4403, "refused")
        assert_refusal_audited(world, aid, name, "deny.no-consent")


def test_a_cancelled_appointment_is_refused(world: WebWorld) -> None:
    aid = book(world)
    with world.platform.engine.begin() as conn:
        found = store.appointment(conn, aid)
        assert found is not None
        assert store.set_status(conn, found, Status.CANCELLED, world.clock.now)
    assert refused(world, "own", aid) == (4403, "refused")
    assert_refusal_audited(world, aid, "own", "deny.not-booked")


def test_refusals_leave_the_call_alone(world: WebWorld) -> None:
    """Intruders (refused) never appear in the practitioner's lobby nor reach the patient."""
    aid = book(world)
    with client(world) as tc, socket(tc, world, "gp", aid) as doctor:
        until(doctor, "lobby")
        for name in ("other", "admin"):
            with socket(tc, world, name, aid) as ws:
                assert closed(ws)[0] == 4403
        doctor.send_text(json.dumps({"type": "ping"}))
        assert json.loads(doctor.receive_text()) == {"type": "pong"}  # no lobby change first


# -- no key material at rest ----------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", stream=stream, install_excepthooks=False)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _b64url(n: int) -> str:
    """A random base64url string of ``n`` characters (a marker that cannot occur by chance)."""
    return secrets.token_urlsafe(n)[:n]


def test_no_key_material_reaches_logs_database_or_audit(
    tmp_path: Path, captured: io.StringIO
) -> None:
    world = call_world(tmp_path)
    aid = book(world)
    commitment, public_key = _b64url(43), _b64url(87)
    sdp_marker = _b64url(24)
    with (
        client(world) as tc,
        socket(tc, world, "gp", aid) as doctor,
        socket(tc, world, "own", aid) as patient,
    ):
        me = until(patient, "welcome")["you"]
        doctor.send_text(json.dumps({"type": "admit", "pid": me}))
        until(patient, "admitted")
        you = until(doctor, "joined")["pid"]
        offer = {"description": {"type": "offer", "sdp": f"v=0\r\na=fingerprint:{sdp_marker}"}}
        doctor.send_text(json.dumps({"type": "signal", "to": me, "data": offer}))
        patient.send_text(json.dumps({"type": "key", "commitment": commitment}))
        patient.send_text(json.dumps({"type": "key", "public_key": public_key}))
        assert until(patient, "signal")["data"] == offer
        assert until(doctor, "key")["commitment"] == commitment
        assert until(doctor, "key")["public_key"] == public_key
        # and a hostile frame that carries a key: refused, and not echoed into the logs
        doctor.send_text(json.dumps({"type": "key", "public_key": public_key, "x": you}))
        assert closed(doctor)[0] == 4400
    settled(world, aid, "call.", 2)
    world.platform.audit.flush_witness()
    world.platform.engine.dispose()
    markers = [m.encode() for m in (commitment, public_key, sdp_marker)]
    for path in world.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(m in data for m in markers), path
    logs = captured.getvalue()
    assert logs  # the app did log (requests, the audit's flushes...)
    assert not any(m.decode() in logs for m in markers)
    audit = json.dumps(entries(world), default=str)
    assert not any(m.decode() in audit for m in markers)


# -- hostile frames ---------------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["admit", "signal", "key", "leave", "ping", "nope", ""])},
    optional={"to": json_values, "pid": json_values, "data": json_values,
              "commitment": json_values, "public_key": json_values, "extra": json_values},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), message_like.map(json.dumps)))
def test_the_parser_refuses_anything_but_a_message(text: str) -> None:
    try:
        message = parse(text)
    except ValidationError:
        return
    # what passes is exactly a protocol message, fields and all
    assert json.loads(message.model_dump_json(exclude_unset=True)) == json.loads(text)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.text(min_size=1, max_size=100).filter(lambda t: not t.strip().startswith("{")),
        message_like.map(json.dumps),
        st.just("[" * 5000),
        st.just('{"type":"ping",' + '"a":' * 3000 + "1" + "}" * 3000),
    )
)
def test_hostile_frames_close_only_that_socket(world: WebWorld, frame: str) -> None:
    aid = book(world)
    with client(world) as tc, socket(tc, world, "gp", aid) as ws:
        until(ws, "lobby")
        ws.send_text(frame)
        try:
            parse(frame)
            valid = True
        except ValidationError:
            valid = False
        if not valid:
            assert closed(ws) == (4400, "invalid")
        # the server is up: a new socket joins
        with socket(tc, world, "gp", aid) as again:
            assert until(again, "welcome")["role"] == "practitioner"


def test_too_big_too_fast_and_binary_frames_are_4400(world: WebWorld) -> None:
    aid = book(world)
    with client(world) as tc:
        with socket(tc, world, "gp", aid) as ws:
            until(ws, "lobby")
            ws.send_text(json.dumps({"type": "ping", "x": "a" * MAX_FRAME_BYTES}))
            assert closed(ws) == (4400, "too-big")
        with socket(tc, world, "gp", aid) as ws:
            until(ws, "lobby")
            ws.send_bytes(b'{"type":"ping"}')
            assert closed(ws) == (4400, "binary")
        with socket(tc, world, "gp", aid) as ws:
            until(ws, "lobby")
            for _ in range(60):
                ws.send_text('{"type":"ping"}')
            codes = []
            for _ in range(61):
                try:
                    codes.append(json.loads(ws.receive_text())["type"])
                except WebSocketDisconnect as exc:
                    assert (exc.code, exc.reason) == (4400, "too-fast")
                    break
            else:
                raise AssertionError("not closed")
            assert codes.count("pong") <= 50
