"""Nothing blocks the event loop (issue 9, section 3): the busiest read, GET /fhir/{type}/{id},
and the record pages open their database connections and unwrap data keys through the KMS in
a worker thread, never on the loop's thread.

Each blocking entry point (``Engine.connect``, the KMS ``unwrap``) is wrapped to note whether
it runs on a thread that is running an event loop (``asyncio.get_running_loop()`` answers
there, and only there). Before the fix, the FHIR read ran its whole read path on the loop
(``Door.read_async``): both lists below held entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from secretum.crypto.kms.fake import FakeKMS
from web_world import clinic


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _spy(calls: list[bool], wrapped: Callable[..., Any]) -> Callable[..., Any]:
    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(_on_loop())
        return wrapped(*args, **kwargs)

    return spy


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Observation/{obs}",
        "/fhir/Observation/{obs}/_history/1",
        "/practice/patients/{pid}",
        "/me/record",
    ],
)
def test_reads_never_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    world = clinic(tmp_path)
    who = "own" if path.startswith("/me") else "gp"
    client = world.client(who, html=not path.startswith("/fhir"))
    url = path.format(obs=world.ids["obs:own"], pid=world.users["own"].user_id)
    connects: list[bool] = []
    unwraps: list[bool] = []
    monkeypatch.setattr(Engine, "connect", _spy(connects, Engine.connect))
    monkeypatch.setattr(FakeKMS, "unwrap", _spy(unwraps, FakeKMS.unwrap))
    world.platform.keyring._cache.clear()  # the read must unwrap the patient's key again
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert connects and unwraps  # the read did both...
    assert not any(connects) and not any(unwraps)  # ...never on the event loop's thread
