"""Attacks on the imaging viewer's tickets and pages over the real app: a ticket stolen out of a
page, replayed from another session of the same person, flipped, forged, stretched to another
series, another patient's study under my patient's URL; and the probes that must learn nothing
(unknown and forbidden alike). Every refusal is audited; nothing returns pixels."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from sqlalchemy import select

from imaging_web_world import add_study, imaging_clinic
from secretum.audit.store import audit_entries
from web_world import WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return imaging_clinic(tmp_path_factory.mktemp("viewer-attack"))


def _viewer(world: WebWorld, name: str = "nocare") -> str:
    pid = world.users[name].user_id
    return (
        f"/practice/patients/{pid}/imaging/studies/{world.ids['study:' + name]}"
        f"/series/{world.ids['series:' + name]}"
    )


def _ticket(world: WebWorld, who: str = "radio", name: str = "nocare") -> str:
    page = world.client(who, html=True).get(_viewer(world, name))
    assert page.status_code == 200, page.text
    found = re.search(r'data-base="/practice/imaging/view/([A-Za-z0-9_-]+)/frames/"', page.text)
    assert found
    return found.group(1)


def _frame(ticket: str, sop: str, n: int = 1) -> str:
    return f"/practice/imaging/view/{ticket}/frames/{sop}/{n}"


def _refusals(world: WebWorld, who: str) -> list[dict[str, Any]]:
    uid = world.users[who].user_id
    with world.platform.engine.connect() as conn:
        rows = conn.execute(
            select(audit_entries)
            .where(audit_entries.c.actor_id == uid, audit_entries.c.outcome == 4)
            .order_by(audit_entries.c.seq)
        )
        return [dict(r._mapping) for r in rows]


def _refused(response: Any) -> None:
    assert response.status_code in (403, 404), response.status_code
    assert not response.headers.get("content-type", "").startswith("image")


def test_a_ticket_is_worth_nothing_in_another_session(world: WebWorld) -> None:
    ticket = _ticket(world)
    sop = world.ids["sops:nocare"][0]
    assert world.client("radio").get(_frame(ticket, sop)).status_code == 200
    old = world.users["radio"].session_id
    world.sign_in("radio")  # the same person, a new session (another browser)
    try:
        before = len(_refusals(world, "radio"))
        _refused(world.client("radio").get(_frame(ticket, sop)))
        [entry] = _refusals(world, "radio")[before:]
        assert entry["outcome_desc"] == "deny.viewing-ticket"
    finally:
        world.users["radio"].session_id = old


def test_a_stolen_ticket_serves_no_one_else(world: WebWorld) -> None:
    ticket = _ticket(world)
    sop = world.ids["sops:nocare"][0]
    for thief in ("gp", "dpo", "admin"):
        _refused(world.client(thief).get(_frame(ticket, sop)))
    _refused(world.client("nocare").get(_frame(ticket, sop)))  # not even the patient's session
    assert world.client().get(_frame(ticket, sop)).status_code == 401
    assert any(e["outcome_desc"] == "deny.viewing-ticket" for e in _refusals(world, "gp"))


def test_a_flipped_or_forged_ticket_is_refused(world: WebWorld) -> None:
    ticket = _ticket(world)
    sop = world.ids["sops:nocare"][0]
    raw = bytearray(base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4)))
    for position in (0, 13, len(raw) // 2, len(raw) - 1):
        forged = bytearray(raw)
        forged[position] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        _refused(world.client("radio").get(_frame(text, sop)))
    for junk in ("x", "A" * 40, "A" * 3000):
        _refused(world.client("radio").get(_frame(junk, sop)))


def test_a_series_ticket_does_not_reach_another_series_or_patient(world: WebWorld) -> None:
    ticket = _ticket(world)
    _study, series, sops = add_study(world, "nocare")  # a second study of the same patient
    _refused(world.client("radio").get(_frame(ticket, sops[0])))
    _refused(
        world.client("radio").get(f"/practice/imaging/view/{ticket}/series/{series}/thumbnail")
    )
    _refused(world.client("radio").get(_frame(ticket, world.ids["sops:own"][0])))
    _refused(world.client("radio").get(_frame(ticket, world.ids["sops:nocare"][0], 2)))


def test_another_patients_study_under_my_patients_url(world: WebWorld) -> None:
    """``own``'s study (radio may read it) under ``nocare``'s URL: not found, not shown."""
    pid = world.users["nocare"].user_id
    url = f"/practice/patients/{pid}/imaging/studies/{world.ids['study:own']}"
    r = world.client("radio", html=True).get(url)
    assert r.status_code == 404 and "/practice/imaging/view/" not in r.text


def test_unknown_and_forbidden_studies_look_alike_on_the_frames(world: WebWorld) -> None:
    ticket = _ticket(world)
    real = world.client("gp").get(_frame(ticket, world.ids["sops:nocare"][0]))
    fake = world.client("gp").get(_frame(ticket, "1.2.3.4"))
    assert (real.status_code, real.content) == (fake.status_code, fake.content)


def test_a_forbidden_study_under_another_url_looks_unknown(world: WebWorld) -> None:
    """gp cares for ``own`` but not ``nocare``: nocare's study under own's URL answers as a
    UID that does not exist (not "you are not in the care team")."""
    pid = world.users["own"].user_id
    client = world.client("gp", html=True)
    forbidden = client.get(f"/practice/patients/{pid}/imaging/studies/{world.ids['study:nocare']}")
    unknown = client.get(f"/practice/patients/{pid}/imaging/studies/1.2.3.4.5")
    assert forbidden.status_code == unknown.status_code == 404
    strip = re.compile(r'name="csrf-token" content="[^"]*"|value="[^"]{20,}"')
    assert strip.sub("", forbidden.text) == strip.sub("", unknown.text)
