"""A demo patient without a second factor can export their record (issue 9, section 4,
item 1). Before the fix: the export sent them to the step-up page, which only offered "Sign in
again"; a password sign-in is never a strong one, so the rights page said "identity
confirmed" and Download went back to the step-up page, forever.

Through the pages, as a browser would (sign-in form, CSRF fields), on the demo clinic that
``secretum demo`` seeds."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from secretum.demo import seed_demo
from secretum.web.app import create_app
from web_world import Clock, build_platform

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _field(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF field on the page"
    return found.group(1)


@pytest.fixture
def demo(tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    clock = Clock()
    platform = build_platform(tmp_path / "data", clock)
    result = seed_demo(platform, clock.now, echo=lambda _: None)
    paul = next(a for a in result["accounts"] if a["user_id"] == result["patients"]["paul"])
    assert paul["totp_secret"] is None  # demo patients have no second factor
    client = TestClient(
        create_app(platform.settings, services=platform),
        base_url="https://testserver",
        client=("192.0.2.1", 5000),
        follow_redirects=False,
        headers={"accept": "text/html"},
    )
    form = client.get("/sign-in")
    signed = client.post(
        "/sign-in",
        data={
            "email": paul["email"],
            "password": paul["password"],
            "next": "/me/rights",
            "csrf_token": _field(form.text),
        },
    )
    assert signed.status_code == 303, signed.text
    return client, paul


def test_a_patient_without_a_factor_exports_after_a_password_step_up(
    demo: tuple[TestClient, dict[str, str]],
) -> None:
    client, paul = demo
    rights = client.get("/me/rights")
    assert rights.status_code == 200
    detour = client.get("/me/rights/export")
    assert detour.status_code == 303
    assert detour.headers["location"] == "/account/step-up?next=/me/rights%3Fready%3Dexport"
    step_up = client.get(detour.headers["location"])
    page = unescape(step_up.text)
    assert 'action="/account/step-up/password"' in page
    assert 'href="/account/mfa"' in page and "Ajouter un second facteur" in page
    assert "/account/step-up/again" not in page  # it cannot help here: it looped
    token = _field(step_up.text)
    wrong = client.post(
        "/account/step-up/password",
        data={"password": "not it", "next": "/me/rights?ready=export", "csrf_token": token},
    )
    assert wrong.status_code in (400, 401) and 'action="/account/step-up/password"' in wrong.text
    assert client.get("/me/rights/export").status_code == 303  # still not confirmed
    done = client.post(
        "/account/step-up/password",
        data={
            "password": paul["password"],
            "next": "/me/rights?ready=export",
            "csrf_token": token,
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/me/rights?ready=export"
    assert "Identité confirmée" in unescape(client.get(done.headers["location"]).text)
    export = client.get("/me/rights/export")
    assert export.status_code == 200, export.headers.get("location")
    assert export.headers["content-type"] == "application/zip"
    assert "bundle.json" in zipfile.ZipFile(io.BytesIO(export.content)).namelist()


def test_sign_in_again_alone_never_confirms_a_patient_without_a_factor(
    demo: tuple[TestClient, dict[str, str]],
) -> None:
    """The old way out, kept for accounts with a factor, shown to none without: after it the
    export still needs a step-up (the loop the patient was caught in)."""
    client, paul = demo
    page = client.get("/account/step-up?next=/me/rights")
    again = client.post(
        "/account/step-up/again", data={"next": "/me/rights", "csrf_token": _field(page.text)}
    )
    assert again.status_code == 303
    form = client.get("/sign-in")
    client.post(
        "/sign-in",
        data={
            "email": paul["email"],
            "password": paul["password"],
            "csrf_token": _field(form.text),
        },
    )
    assert client.get("/me/rights/export").status_code == 303
