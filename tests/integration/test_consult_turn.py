"""TURN relay credentials (TURN REST API) against a real coturn with TLS: the credentials the
platform issues allocate a relay; forged, expired or another secret's do not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consult_world import book, call_world, client, socket, until
from coturn import Coturn, allocate, coturn
from secretum.consult.turn import TurnConfig, credentials, password
from web_world import WebWorld


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


@pytest.fixture
def world(tmp_path: Path, relay: Coturn) -> WebWorld:
    world = call_world(tmp_path, turn_urls=[relay.url], turn_secret=relay.secret)
    world.clock.now = datetime.now(UTC).replace(microsecond=0)  # coturn checks real time
    for name in ("own", "gp", "admin"):
        world.sign_in(name)
    return world


def test_issued_credentials_allocate_and_forged_ones_do_not(world: WebWorld, relay: Coturn) -> None:
    got = world.client("own").get("/consult/turn-credentials")
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    body = got.json()
    assert body["ttl"] == 3600
    (server,) = body["iceServers"]
    assert server["urls"] == [relay.url]
    expiry, user_hash = server["username"].split(":")
    assert int(expiry) == int(world.clock.now.timestamp()) + 3600
    assert world.users["own"].user_id not in server["username"]  # opaque
    assert allocate(relay, server["username"], server["credential"])
    # forged: the right username, a password of another secret
    assert not allocate(relay, server["username"], password(b"not the secret", server["username"]))
    # forged: a later expiry on the same password
    later = f"{int(expiry) + 86400}:{user_hash}"
    assert not allocate(relay, later, server["credential"])
    # expired: correctly signed, an hour past
    config = TurnConfig((relay.url,), relay.secret.encode(), 3600)
    (old,) = credentials(config, "someone", world.clock.now - timedelta(hours=2))
    assert not allocate(relay, old["username"], old["credential"])


def test_welcome_carries_the_credentials_and_anonymous_get_none(
    world: WebWorld, relay: Coturn
) -> None:
    aid = book(world)
    with client(world) as tc, socket(tc, world, "gp", aid) as ws:
        (server,) = until(ws, "welcome")["ice_servers"]
        assert server["urls"] == [relay.url]
        assert allocate(relay, server["username"], server["credential"])
    assert world.client().get("/consult/turn-credentials").status_code == 401
    assert world.client("admin").get("/consult/turn-credentials").status_code == 403
    assert json.loads(world.client("gp").get("/consult/turn-credentials").text)["iceServers"]


def test_without_turn_the_list_is_empty(tmp_path: Path) -> None:
    world = call_world(tmp_path)
    assert world.client("own").get("/consult/turn-credentials").json() == {
        "iceServers": [],
        "ttl": 0,
    }
