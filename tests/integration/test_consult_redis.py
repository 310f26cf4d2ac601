"""Rooms across instances: two uvicorn servers (two apps, each its own signaling and Redis
subscription, one platform), the practitioner on one, the patient on the other; the lobby,
the admission, signals and keys go both ways through Redis pub/sub."""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect

from consult_world import book, call_world, settled
from secretum.consult.rooms import LocalHub, RedisHub
from secretum.web.app import create_app
from secretum.web.deps import SESSION_COOKIE
from web_world import WebWorld

REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """``app`` served by uvicorn on a free loopback port (plain HTTP), in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def second_instance(world: WebWorld) -> Any:
    """Another app on the same platform with signaling of its own (another process would be
    the same: nothing but the database and Redis is shared)."""
    platform = copy.copy(world.platform)
    services = world.platform.services
    calls = copy.copy(services.calls)
    calls.rooms, calls._hub = {}, None
    platform.__dict__["services"] = dataclasses.replace(services, calls=calls)
    return create_app(platform.settings, services=platform)


def join(world: WebWorld, port: int, name: str, aid: str) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}/consult/{aid}/ws",
        additional_headers={
            "origin": world.platform.settings.base_url,
            "cookie": f"{SESSION_COOKIE}={world.users[name].session_id}",
        },
        open_timeout=10,
    )


def until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    for _ in range(20):
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind!r}")


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return call_world(tmp_path, redis_url=REDIS, redis_prefix=f"t{secrets.token_hex(4)}:")


def test_one_peer_on_each_instance(world: WebWorld) -> None:
    aid = book(world)
    other = second_instance(world)
    with (
        serving(world.app) as one,
        serving(other) as two,
        join(world, one, "gp", aid) as doctor,
        join(world, two, "own", aid) as patient,
    ):
        d = until(doctor, "welcome")["you"]
        p = until(patient, "welcome")["you"]
        until(patient, "waiting")
        lobby = until(doctor, "lobby")
        while not lobby["waiting"]:
            lobby = until(doctor, "lobby")
        assert lobby["waiting"] == [{"pid": p, "name": "Apolline Zéphyrin-Test"}]
        doctor.send(json.dumps({"type": "admit", "pid": p}))
        assert until(patient, "admitted")["peers"] == [d]
        assert until(doctor, "joined")["pid"] == p
        offer = {"description": {"type": "offer", "sdp": "v=0\r\n"}}
        doctor.send(json.dumps({"type": "signal", "to": p, "data": offer}))
        assert until(patient, "signal") == {"type": "signal", "from": d, "data": offer}
        answer = {"description": {"type": "answer", "sdp": "v=0\r\n"}}
        patient.send(json.dumps({"type": "signal", "to": d, "data": answer}))
        assert until(doctor, "signal") == {"type": "signal", "from": p, "data": answer}
        patient.send(json.dumps({"type": "key", "commitment": "C" * 43}))
        assert until(doctor, "key") == {"type": "key", "from": p, "commitment": "C" * 43}
        doctor.send(json.dumps({"type": "key", "public_key": "K" * 87}))
        assert until(patient, "key") == {"type": "key", "from": d, "public_key": "K" * 87}
        patient.close()
        assert until(doctor, "left")["pid"] == p
    codes = settled(world, aid, "call.", 2)
    assert sum(c.startswith("call.disconnected.") for c in codes) == 2
    # each instance used Redis, not a room of its own
    assert isinstance(world.services.calls._hub, RedisHub | type(None))
    assert not isinstance(world.services.calls._hub, LocalHub)
