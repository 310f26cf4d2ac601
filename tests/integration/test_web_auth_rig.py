"""The rig of the web sign-in and administration tests (fixtures and helpers, no tests).

A real platform (data directory, local keystore, SQLite) whose clock the test moves, its
FastAPI app behind Starlette's TestClient over ``https://localhost`` (the cookies are
``__Host-`` and Secure), and cheap Argon2 so that tests stay fast.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from fastapi.testclient import TestClient

from secretum.bootstrap import Platform, init_platform
from secretum.config import Settings
from secretum.identity.passwords import FAST_ARGON2, PasswordHasher
from secretum.web.app import create_app
from secretum.web.deps import SESSION_COOKIE
from secretum.web.routes.auth import setup_link

T0 = datetime(2030, 3, 1, 9, 0, 7, tzinfo=UTC)
BASE = "https://localhost:8443"
ADDRESS = ("127.0.0.1", 50000)  # the audit wants an IP address
ADMIN_EMAIL = "admin@example.org"
PASSWORD = "cheval agrafe batterie correcte 42"


class Clock:
    """A platform clock the test moves."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Web:
    platform: Platform
    client: TestClient
    clock: Clock

    def new_client(self) -> TestClient:
        """Another browser on the same server (own cookies)."""
        return TestClient(self.client.app, base_url=BASE, follow_redirects=False, client=ADDRESS)


@pytest.fixture
def web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    for name in list(os.environ):
        if name.startswith("SECRETUM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SECRETUM_CONFIG", str(tmp_path / "none.toml"))
    settings = Settings(data_dir=tmp_path / "data")
    platform = init_platform(settings, "a passphrase for the web tests")
    clock = Clock()
    platform.clock = clock
    platform.services.identity.core.hasher = PasswordHasher(FAST_ARGON2)
    app = create_app(settings, services=platform)
    with TestClient(app, base_url=BASE, follow_redirects=False, client=ADDRESS) as client:
        yield Web(platform, client, clock)
    platform.close()


# -- helpers ----------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(response: httpx.Response) -> str:
    found = _CSRF.search(response.text)
    assert found and found.group(1), "no CSRF token on the page"
    return found.group(1)


def text_of(response: httpx.Response) -> str:
    """The page's text, unescaped (for message checks)."""
    return html.unescape(response.text)


def session_cookie(client: TestClient) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def setup_admin(web: Web, password: str = PASSWORD) -> None:
    link = setup_link(web.platform)
    assert link is not None and link.startswith("https://localhost:")
    path = link.removeprefix(web.platform.settings.base_url)
    page = web.client.get(path)
    assert page.status_code == 200
    done = web.client.post(
        path,
        data={
            "csrf_token": csrf_of(page),
            "display_name": "Alice Admin",
            "email": ADMIN_EMAIL,
            "password": password,
            "password_confirm": password,
        },
    )
    assert done.status_code == 200, done.text


def sign_in(
    client: TestClient, email: str, password: str = PASSWORD, next_url: str = "/"
) -> httpx.Response:
    page = client.get("/sign-in")
    return client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_of(page),
            "email": email,
            "password": password,
            "next": next_url,
        },
    )


@dataclass
class Totp:
    secret: str
    recovery_codes: list[str]

    def code(self, when: datetime) -> str:
        return pyotp.TOTP(self.secret).at(when)


def enrol_totp(web: Web, client: TestClient | None = None) -> Totp:
    """From an enrolment-only (or fresh) session: set up TOTP, return secret and codes."""
    client = client or web.client
    mfa = client.get("/account/mfa")
    assert mfa.status_code == 200
    setup = client.post("/account/totp/setup", data={"csrf_token": csrf_of(mfa)})
    assert setup.status_code == 200, setup.text
    secret = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', setup.text)
    assert secret
    qr = client.get("/account/totp/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.headers["cache-control"] == "no-store"
    totp = Totp(secret.group(1).replace(" ", ""), [])
    done = client.post(
        "/account/totp/confirm",
        data={"csrf_token": csrf_of(setup), "code": totp.code(web.clock.now)},
    )
    assert done.status_code == 200, done.text
    totp.recovery_codes = re.findall(r"<span>([^<]+)</span>", done.text.split('class="codes"')[1])
    return totp


def admin_with_totp(web: Web) -> Totp:
    """Set up the first administrator, sign in and enrol TOTP (a strong session)."""
    setup_admin(web)
    first = sign_in(web.client, ADMIN_EMAIL)
    assert first.headers["location"] == "/account/mfa"
    return enrol_totp(web)


def invite(web: Web, role: str, email: str, **extra: str) -> httpx.Response:
    """As the signed-in administrator: invite someone; the response is the link page."""
    form = web.client.get("/admin/invitations")
    assert form.status_code == 200, form.headers.get("location")
    data = {"csrf_token": csrf_of(form), "role": role, "email": email, "display_name": "Ann Other"}
    return web.client.post("/admin/invitations", data={**data, **extra})


_LINK = re.compile(r'id="link" value="https://[^/]+(/invite/[A-Za-z0-9_\-]+)"')


def invitation_path(page: httpx.Response) -> str:
    found = _LINK.search(page.text)
    assert found, page.text
    return found.group(1)


def accept(client: TestClient, path: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get(path)
    data = {"csrf_token": csrf_of(page), "password": password, "password_confirm": password}
    return client.post(path, data=data)
