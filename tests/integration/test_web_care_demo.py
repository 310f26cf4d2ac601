"""``secretum demo``: the fictitious clinic is created through the use cases, printed, usable
by its accounts, and never created twice."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.demo import DOMAIN, DemoAlreadySeeded, seed_demo
from secretum.identity.service_signin import SignedIn
from secretum.web.app import create_app
from secretum.web.deps import SESSION_COOKIE
from web_world import Clock, build_platform


def test_demo_clinic_is_seeded_once_and_usable(tmp_path: Path) -> None:
    clock = Clock()
    platform = build_platform(tmp_path / "data", clock)
    printed: list[str] = []
    result = seed_demo(platform, clock.now, echo=printed.append)
    roles = sorted(a["role"] for a in result["accounts"])
    assert roles == [
        "admin",
        "dpo",
        "patient",
        "patient",
        "patient",
        "practitioner",
        "practitioner",
    ]
    assert all(a["email"].endswith(DOMAIN) for a in result["accounts"])
    text = "\n".join(printed)
    assert "DEMO ONLY" in text and all(a["password"] in text for a in result["accounts"])
    with pytest.raises(DemoAlreadySeeded):
        seed_demo(platform, clock.now, echo=printed.append)
    paul = result["patients"]["paul"]
    records = platform.services.records.search(
        RequestContext(Actor(paul, Role.PATIENT), Purpose.PATIENT_REQUEST, clock.now), paul
    )
    kinds = sorted(r.resource_type for r in records)
    assert kinds.count("Observation") == 3 and "DocumentReference" in kinds and "Patient" in kinds
    # a demo patient signs in with the printed password and sees their record
    account = next(a for a in result["accounts"] if a["user_id"] == paul)
    signed = platform.services.identity.sign_in.sign_in_password(
        account["email"], account["password"], now=clock.now
    )
    assert isinstance(signed, SignedIn)
    client = TestClient(
        create_app(platform.settings, services=platform),
        base_url="https://testserver",
        client=("192.0.2.1", 5000),
    )
    client.cookies.set(SESSION_COOKIE, signed.session_id)
    page = unescape(client.get("/me/record", headers={"accept": "text/html"}).text)
    assert "Paul" in page and "Radiographie thoracique" in page and "Pression artérielle" in page
    # the restricted measurement of Léa is visible to her GP (named), not to the radiologist
    lea = result["patients"]["lea"]
    gp = next(a for a in result["accounts"] if a["email"].startswith("gp@"))
    seen = platform.services.records.search(
        RequestContext(
            Actor(gp["user_id"], Role.PRACTITIONER), Purpose.TELECONSULTATION, clock.now
        ),
        lea,
    )
    assert any(str(r.sensitivity) == "restricted" for r in seen)
