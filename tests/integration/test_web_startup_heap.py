"""At start-up the app freezes the heap built so far (out of the cyclic GC's reach), once per
process: full collections then traverse only what requests allocate."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from secretum.web import app as web_app


def test_startup_freezes_the_heap_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_app, "_heap_frozen", False)
    freezes: list[int] = []
    real_freeze = gc.freeze

    def freeze() -> None:
        real_freeze()
        freezes.append(gc.get_freeze_count())

    monkeypatch.setattr(gc, "freeze", freeze)
    try:
        with TestClient(web_app.create_app()) as client:
            assert client.get("/healthz").status_code == 200
        assert len(freezes) == 1 and freezes[0] > 0
        with TestClient(web_app.create_app()) as client:  # a second app: nothing more
            assert client.get("/healthz").status_code == 200
        assert len(freezes) == 1
    finally:
        gc.unfreeze()  # give this test session's objects back to the collector
