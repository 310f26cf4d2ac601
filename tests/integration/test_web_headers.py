"""Security headers on every response: 200, 404, 405, 422, 500 (and the app factory basics)."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from secretum.web.app import create_app
from secretum.web.headers import SecurityHeadersMiddleware
from secretum.web.requestlog import RequestLogMiddleware

EXPECTED = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(self), microphone=(self), geolocation=()",
    "cache-control": "no-store",
}


class Item(BaseModel):
    quantity: int


def _test_app(debug: bool = False) -> FastAPI:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @router.post("/items")
    async def create_item(item: Item) -> dict[str, int]:
        return {"quantity": item.quantity}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @router.get("/cached")
    async def cached(response: Response) -> dict[str, str]:
        response.headers["Cache-Control"] = "public, max-age=60"
        return {"ok": "yes"}

    return create_app(extra_routers=[router], debug=debug)


@pytest.fixture
def client() -> TestClient:
    return TestClient(_test_app(), base_url="https://testserver", raise_server_exceptions=False)


def _assert_security_headers(response) -> None:  # type: ignore[no-untyped-def]
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    hsts = response.headers["strict-transport-security"]
    directives = [d.strip() for d in hsts.split(";")]
    max_age = int(next(d for d in directives if d.startswith("max-age=")).split("=", 1)[1])
    assert max_age >= 31536000
    assert "includeSubDomains" in directives
    assert response.headers.get("x-request-id")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/healthz", None, 200),
        ("GET", "/items/7", None, 200),
        ("GET", "/does/not/exist", None, 404),
        ("POST", "/healthz", None, 405),
        ("DELETE", "/items/7", None, 405),
        ("GET", "/items/not-a-number", None, 422),
        ("POST", "/items", {"quantity": "many"}, 422),
        ("GET", "/boom", None, 500),
    ],
)
def test_every_response_has_security_headers(
    client: TestClient, method: str, path: str, body: object, status: int
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    _assert_security_headers(response)


def test_500_when_nothing_inside_responded_still_has_headers() -> None:
    """An exception escaping before any response (no Starlette error page) -> our own 500."""

    async def explode(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("before any response")

    app = SecurityHeadersMiddleware(RequestLogMiddleware(explode))
    response = TestClient(app, raise_server_exceptions=False).get("/anything")
    assert response.status_code == 500
    _assert_security_headers(response)


def test_healthz_says_only_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"


def test_route_may_choose_its_own_caching(client: TestClient) -> None:
    response = client.get("/cached")
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["x-frame-options"] == "DENY"


def test_docs_disabled_unless_debug(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    debug_client = TestClient(_test_app(debug=True))
    assert debug_client.get("/docs").status_code == 200
    assert debug_client.get("/openapi.json").status_code == 200


def test_factory_keeps_wiring_on_state() -> None:
    marker = object()
    app = create_app(services=marker)
    assert app.state.services is marker
    assert app.state.settings is None
