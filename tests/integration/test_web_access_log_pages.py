"""The access log in a patient's words, and the DPO's browsing of the audit (issue 9, section
4, item 3). Before: one row per page view in audit jargon ("Requête — recherche"), no paging
by day, and no way for the DPO to look at the entries or at past reviews."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest

from secretum.audit.model import AuditEvent, EventAction, EventType
from web_world import SECRETS, WebWorld, clinic


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def _rows(page: str) -> int:
    body = page.split('id="log-h"')[1]
    return body.count("<tr") - 1  # less the header


def test_repeated_reads_are_one_sentence_and_refusals_are_said(world: WebWorld) -> None:
    pid = world.users["other"].user_id
    obs = world.ids["obs:other"]
    gp, radio = world.client("gp"), world.client("radio")
    assert radio.get(f"/fhir/Observation/{obs}").status_code == 403  # not in the care team
    for _ in range(3):
        world.clock.advance(minutes=7)
        assert gp.get(f"/fhir/Observation/{obs}").status_code == 200
    world.sign_in("other")  # (idle for 21 minutes)
    page = unescape(world.client("other", html=True).get("/me/access-log").text)
    assert re.search(
        r"Dr Gaston Généraliste \(médecine générale\) a consulté votre dossier 3 fois, "
        r"pour vos soins, entre \d\d:\d\d et \d\d:\d\d\.",
        page,
    ), page
    assert "Dr Rachel Radiologue (radiologie) a tenté de consulter votre dossier" in page
    assert "Refusé" in page
    assert "Requête" not in page and "recherche" not in page  # no audit jargon
    english = world.client("other", html=True)
    english.headers["accept-language"] = "en"
    text = unescape(english.get("/me/access-log").text)
    assert "(general practice) viewed your record 3 times, for your care, between" in text
    assert "tried to view your record" in text
    assert pid not in page  # the patient's own id is not shown


def test_the_log_is_paged_by_groups_newest_first(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    gp = world.users["gp"]
    start = world.clock.now
    for day in range(60):  # one read a day for 60 days: 60 groups
        world.platform.audit.append_committed(
            AuditEvent(
                recorded=start + timedelta(days=day, hours=1),
                event_type=EventType.PATIENT_RECORD,
                action=EventAction.READ,
                actor_id=gp.user_id,
                actor_role="practitioner",
                subtype="read",
                resource_type="Observation",
                resource_id=world.ids["obs:own"],
                patient_id=pid,
                purpose="TREAT",
            )
        )
    world.clock.advance(days=61)
    world.sign_in("own")
    patient = world.client("own", html=True)
    first = unescape(patient.get("/me/access-log").text)
    assert _rows(first) == 50 and 'href="/me/access-log?page=2"' in first
    assert "Accès plus récents" not in first
    second = unescape(patient.get("/me/access-log?page=2").text)
    assert 'href="/me/access-log?page=1"' in second and "?page=3" not in second
    assert 1 <= _rows(second) <= 50
    # the newest day comes first: the last of the 60 reads is on page 1, the first on page 2
    assert "a consulté votre dossier, pour vos soins, à 11:00." in first  # 10:00 UTC, Paris
    last_day, first_day = start + timedelta(days=59), start
    assert f"{last_day:%d/%m/%Y}" in first and f"{first_day:%d/%m/%Y}" not in first
    assert f"{first_day:%d/%m/%Y}" in second
    assert patient.get("/me/access-log?page=0").status_code == 400


def test_the_dpo_browses_the_audit_with_filters_ids_only(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    assert world.client("gp").get(f"/fhir/Observation/{world.ids['obs:own']}").status_code == 200
    dpo = world.client("dpo", html=True)
    everything = unescape(dpo.get("/dpo/audit/entries").text)
    assert "Entrées du journal d'audit" in everything and "Entrées plus anciennes" in everything
    found = dpo.get(
        "/dpo/audit/entries",
        params={
            "patient": pid,
            "event": "110110",
            "outcome": "0",
            "actor": world.users["gp"].user_id,
        },
    )
    text = unescape(found.text)
    assert found.status_code == 200 and world.ids["obs:own"][:12] in text
    assert text.count("<tr") >= 2
    assert not [marker for marker in SECRETS["own"] if marker in text]  # never health data
    older = re.search(r'href="(/dpo/audit/entries\?[^"]*before=\d+)"', everything)
    assert older and "Entrées les plus récentes" in unescape(dpo.get(unescape(older.group(1))).text)
    bad = dpo.get("/dpo/audit/entries", params={"actor": "<script>echo-9f"})
    assert bad.status_code == 400 and "echo-9f" not in bad.text
    assert dpo.get("/dpo/audit/entries", params={"since": "yesterday"}).status_code == 400
    assert world.client("admin", html=True).get("/dpo/audit/entries").status_code == 403
    assert world.client("gp", html=True).get("/dpo/audit/entries").status_code == 403
    # the DPO's search about the patient shows in the patient's own log
    log = unescape(world.client("own", html=True).get("/me/access-log").text)
    assert "Dora Delegate a consulté le journal des accès à votre dossier" in log
