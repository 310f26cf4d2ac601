"""Refusals and unknown addresses are pages for people, JSON for programs.

A browser that meets a 403 or a 404 gets a page in its language with the site's navigation
and a working language button (the pre-sign-in CSRF token is set even on an error page); an
API client keeps the short JSON answer, and the FHIR API keeps its ``OperationOutcome``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from web_world import WebWorld, build_world


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return build_world(tmp_path)


def _title(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert found, html[:500]
    return found.group(1).strip()


def test_unknown_address_is_a_page_in_the_visitors_language(world: WebWorld) -> None:
    browser = world.client(html=True)
    page = browser.get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert _title(page.text) == "Introuvable"
    browser.cookies.set("lang", "en")
    page = browser.get("/no/such/page")
    assert _title(page.text) == "Not found"
    assert "does not exist, or you have no access to it" in page.text


def test_programs_keep_the_json_answer(world: WebWorld) -> None:
    api = world.client()
    answer = api.get("/no/such/page")
    assert answer.status_code == 404 and answer.json() == {"detail": "Not Found"}
    fhir = world.client(html=True).get("/fhir/NoSuchType/1")
    assert not fhir.headers["content-type"].startswith("text/html")


def test_a_page_not_for_the_role_says_so_in_words(world: WebWorld) -> None:
    patient = world.client("own", html=True)
    patient.cookies.set("lang", "en")
    page = patient.get("/admin/users")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert _title(page.text) == "Access refused"
    assert "This page is not meant for your role." in page.text
    assert world.client("own").get("/admin/users").json() == {"detail": "not for this role"}


def test_the_language_button_works_on_an_error_page_before_sign_in(world: WebWorld) -> None:
    visitor = world.client(html=True)
    page = visitor.get("/no/such/page")
    token = re.search(r'action="/lang">.*?name="csrf_token" value="([^"]+)"', page.text, re.S)
    assert token, "the language form carries no CSRF token"
    switched = visitor.post("/lang", data={"csrf_token": token.group(1), "lang": "en"})
    assert switched.status_code == 303 and switched.cookies.get("lang") == "en"


def test_favicon(world: WebWorld) -> None:
    client = world.client()
    moved = client.get("/favicon.ico")
    assert moved.status_code == 301 and moved.headers["location"] == "/static/favicon.svg"
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
