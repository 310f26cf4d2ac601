"""Practitioners find their patients (issue 9, section 4, item 4): a search in "my patients"
(name, INS or e-mail; audited as a search, never the words), break-the-glass by INS (exact,
after the step-up; no search by name: no enumeration), and a record page in sections (tabs,
CSS only). Before: no search, a 32-character id to type, one long column of forms."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select

from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.audit.store import audit_entries
from web_world import WebWorld, clinic

INS_OID = "urn:oid:1.2.250.1.213.1.4.10"  # INS-NIR, test
INS = "2800575123456 12"


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def _give_ins(world: WebWorld, name: str, ins: str, writer: str, purpose: Purpose) -> None:
    """Add an INS to a patient's Patient resource (as their practitioner would)."""
    pid = world.users[name].user_id
    svc, now = world.services, world.clock.now
    ctx = RequestContext(world.users[writer].actor, purpose, now)
    record = svc.records.read(ctx, "Patient", pid)
    body = {k: v for k, v in record.resource.items() if k != "meta"}
    body["identifier"] = [{"system": INS_OID, "value": ins.replace(" ", "")}]
    svc.records.update(ctx, "Patient", pid, body, if_match=record.version)


def _audit(world: WebWorld, **where: str) -> list[dict[str, object]]:
    query = select(audit_entries)
    for column, value in where.items():
        query = query.where(audit_entries.c[column] == value)
    with world.platform.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def test_search_my_patients_by_name_and_by_ins(world: WebWorld) -> None:
    gp = world.client("gp", html=True)
    everyone = unescape(gp.get("/practice/patients").text)
    assert "Zéphyrin" in everyone and "Quintal" in everyone and 'type="search"' in everyone
    before = len(_audit(world, event_type="110112", subtype="search"))
    found = unescape(gp.post("/practice/patients", data={"q": "zephyrin apolline"}).text)
    assert "Apolline Zéphyrin-Test" in found and "Quintal" not in found
    assert "1 patient(s) trouvé(s)" in found
    searches = _audit(world, event_type="110112", subtype="search")
    assert len(searches) == before + 1 and searches[-1]["actor_id"] == world.users["gp"].user_id
    assert "zephyrin" not in str(_audit(world)).lower()  # the words searched are not kept
    none = unescape(gp.post("/practice/patients", data={"q": "Casimir"}).text)
    assert "Ondulé" not in none and "0 patient(s) trouvé(s)" in none  # not my patient
    _give_ins(world, "other", INS, "gp", Purpose.TELECONSULTATION)
    by_ins = unescape(gp.post("/practice/patients", data={"q": INS}).text)
    assert "Bérénice Quintal-Test" in by_ins and "Zéphyrin" not in by_ins
    radio = unescape(
        world.client("radio", html=True).post("/practice/patients", data={"q": INS}).text
    )
    assert "Quintal" not in radio  # an INS of someone else's patient finds nothing
    assert "q=" not in gp.post("/practice/patients", data={"q": INS}).url.query.decode()


def test_break_glass_by_ins_after_the_step_up_only(world: WebWorld) -> None:
    pid = world.users["nocare"].user_id
    _give_ins(world, "nocare", INS, "radio", Purpose.TELERADIOLOGY)
    page = unescape(world.client("gp", html=True).get("/practice/break-glass").text)
    assert 'name="ins"' in page and "Pourquoi pas une recherche par nom" in page
    world.clock.advance(minutes=6)  # the enrolment's second factor is no longer fresh
    form = {"ins": INS, "reason": "Inconscient aux urgences"}
    stale = world.client("gp").post("/practice/break-glass", data=form)
    assert stale.status_code == 303 and stale.headers["location"].startswith("/account/step-up")
    unknown = world.client("gp").post(
        "/practice/break-glass", data={"ins": "180057512345699", "reason": "x"}
    )
    assert unknown.status_code == 303  # the same detour: an INS is never probed without it
    assert _audit(world, actor_id=world.users["gp"].user_id, purpose="ETREAT") == []
    world.step_up("gp")
    gp = world.client("gp", html=True)
    nobody = gp.post("/practice/break-glass", data={"ins": "180057512345699", "reason": "x"})
    assert nobody.status_code == 404 and "Aucun patient ne peut être trouvé" in unescape(
        nobody.text
    )
    declared = gp.post("/practice/break-glass", data=form)
    assert declared.status_code == 303
    assert declared.headers["location"].startswith(f"/practice/patients/{pid}?purpose=emergency")
    lookups = _audit(world, actor_id=world.users["gp"].user_id, subtype="search", purpose="ETREAT")
    assert [r["outcome"] for r in lookups] == [4, 0]  # each lookup on record
    assert lookups[1]["patient_id"] == pid


def test_the_record_page_has_sections_as_tabs(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    gp = world.client("gp", html=True)
    page = unescape(gp.get(f"/practice/patients/{pid}").text)
    tabs = re.findall(r'<a href="#(\w+)">', page.split('class="tabs"')[1].split("</nav>")[0])
    assert tabs == ["summary", "measurements", "documents", "consents", "actions"]
    for tab in tabs:
        assert f'<section id="{tab}" class="tab-panel"' in page
    panel = page.split('id="measurements"')[1].split('id="documents"')[0]
    assert "/observations" in panel  # the form to add a measurement is in its section
    assert "<script>" not in page and " onclick=" not in page  # CSS only (strict CSP)
    saved = gp.post(
        f"/practice/patients/{pid}/observations", data={"code": "weight", "value": "70"}
    )
    assert saved.headers["location"].endswith("#measurements")  # back on its section
