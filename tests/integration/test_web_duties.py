"""Periodic duties of the web app (audit checkpoints): run at shutdown, survive failures."""

from __future__ import annotations

from fastapi.testclient import TestClient

from secretum.web.app import create_app


def test_duties_run_at_shutdown_and_failures_do_not_stop_the_app() -> None:
    calls: list[str] = []

    def good() -> None:
        calls.append("good")

    def bad() -> None:
        calls.append("bad")
        raise RuntimeError("disk full")

    app = create_app(duties=[(3600.0, good), (3600.0, bad)])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert calls == []  # the period has not elapsed
    assert calls == ["good", "bad"]
