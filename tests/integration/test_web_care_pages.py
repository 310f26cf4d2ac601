"""The care pages: forms that build valid FHIR, uploads refused with 413/415 and nothing kept,
pages in French by default and in English, every form field labelled, no inline script or
style, and no health data in the logs or the audit entries of a whole flow."""

from __future__ import annotations

import io
import logging
import re
from html import unescape
from pathlib import Path

import pytest
from fhir.resources.R4B.observation import Observation
from sqlalchemy import select, text

from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.audit.checkpoint import WitnessFile
from secretum.audit.store import audit_entries
from secretum.logs import configure_logging
from web_world import PDF, SECRETS, WebWorld, clinic

PAGES = {
    "own": ["/me/record", "/me/consents", "/me/care-team", "/me/access-log", "/me/rights"],
    "gp": ["/practice/patients", "/practice/patients/{own}", "/practice/break-glass"],
    "dpo": ["/dpo/audit", "/dpo/break-glass"],
}
#: Prefixes of our message keys: a page showing one has a missing translation.
KEY = re.compile(
    r"\b(?:care|record|consents|care_team|access|rights|practice|break_glass|dpo|"
    r"error|reason|notice|done|purpose|pou|event|interaction|fhir|gender|method|"
    r"basis|task|review|obs|unit|specialty|role|finding|language)\.[a-z_.-]+\b"
)


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def counts(world: WebWorld) -> tuple[int, int, int]:
    with world.platform.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("fhir_resources", "sealed_records", "encrypted_files")
        )


def blobs(world: WebWorld) -> list[Path]:
    return [p for p in world.platform.settings.blob_dir.rglob("*") if p.is_file()]


def url(world: WebWorld, page: str) -> str:
    return page.format(own=world.users["own"].user_id)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_pages_are_translated_labelled_and_script_free(world: WebWorld, lang: str) -> None:
    for user, pages in PAGES.items():
        client = world.client(user, html=True)
        client.cookies.set("lang", lang)
        for page in pages:
            response = client.get(url(world, page))
            assert response.status_code == 200, page
            html = response.text
            assert f'<html lang="{lang}">' in html
            body = html[html.index("<main") :]
            assert not KEY.search(unescape(re.sub(r"<[^>]+>", " ", body))), (page, KEY.search(body))
            assert "<script" not in body and "style=" not in html and "<style" not in html
            ids = set(re.findall(r'<label for="([^"]+)"', body))
            fields = re.findall(r"<(?:input|select|textarea)\b([^>]*)>", body)
            for attrs in fields:
                if 'type="hidden"' in attrs:
                    continue
                field_id = re.search(r'id="([^"]+)"', attrs)
                assert field_id and field_id.group(1) in ids, (page, attrs)
    french = world.client("own", html=True).get("/me/record").text
    assert "Mon dossier" in french  # French without a cookie or Accept-Language


def test_observation_form_builds_valid_fhir(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    gp = world.client("gp", html=True)
    form = {"code": "glycemia", "value": "1,12", "sensitivity": "restricted"}
    not_named = gp.post(f"/practice/patients/{pid}/observations", data=form)
    assert not_named.status_code == 403 and "nommé" in unescape(not_named.text)
    named = world.client("own").post(
        "/me/care-team/name", data={"practitioner_id": world.users["gp"].user_id}
    )
    assert named.status_code == 303
    saved = gp.post(f"/practice/patients/{pid}/observations", data=form)
    assert saved.status_code == 303 and "done=observation" in saved.headers["location"]
    seen_by_radio = world.services.records.search(
        RequestContext(world.users["radio"].actor, Purpose.TELERADIOLOGY, world.clock.now),
        pid,
        "Observation",
    )
    assert all(str(r.sensitivity) == "normal" for r in seen_by_radio)  # radio was not named
    mine = world.services.records.search(
        RequestContext(world.users["own"].actor, Purpose.PATIENT_REQUEST, world.clock.now),
        pid,
        "Observation",
    )
    [new] = [r for r in mine if str(r.sensitivity) == "restricted"]
    Observation.model_validate(new.resource)
    assert new.resource["code"]["coding"][0]["code"] == "2339-0"
    assert new.resource["valueQuantity"] == {
        "value": 1.12,
        "unit": "g/L",
        "system": "http://unitsofmeasure.org",
        "code": "g/L",
    }
    before = counts(world)
    for value in ("abc-echo", "-3", "1e400", "NaN", "", "99"):
        refused = gp.post(
            f"/practice/patients/{pid}/observations", data={"code": "glycemia", "value": value}
        )
        assert refused.status_code == 400 and "abc-echo" not in refused.text
    assert (
        gp.post(
            f"/practice/patients/{pid}/observations", data={"code": "nonsense", "value": "1"}
        ).status_code
        == 400
    )
    assert counts(world) == before


def test_uploads_refused_with_413_and_415_keep_nothing(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    gp = world.client("gp", html=True)
    before, stored = counts(world), blobs(world)
    wrong_type = gp.post(
        f"/practice/patients/{pid}/documents",
        data={"title": "t"},
        files={"file": ("x.exe", io.BytesIO(b"MZ\x90\x00"), "application/x-msdownload")},
    )
    assert wrong_type.status_code == 415 and "Rien n" in unescape(wrong_type.text)
    lying = gp.post(
        f"/practice/patients/{pid}/documents",
        data={"title": "t"},
        files={"file": ("x.pdf", io.BytesIO(b"not a pdf at all"), "application/pdf")},
    )
    assert lying.status_code == 415
    limit = world.services.documents.limits.max_bytes
    world.services.documents.limits = type(world.services.documents.limits)(max_bytes=4096)
    try:
        big = PDF + b"0" * 8192
        streamed = gp.post(
            f"/practice/patients/{pid}/documents",
            data={"title": "t"},
            files={"file": ("b.pdf", io.BytesIO(big), "application/pdf")},
        )
        assert streamed.status_code == 413
        announced = gp.post(
            f"/practice/patients/{pid}/documents",
            content=b"x" * 100_000,
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert announced.status_code == 413
    finally:
        world.services.documents.limits = type(world.services.documents.limits)(max_bytes=limit)
    not_multipart = gp.post(f"/practice/patients/{pid}/documents", data={"title": "t"})
    assert not_multipart.status_code == 415
    missing = gp.post(
        f"/practice/patients/{pid}/documents",
        data={"title": "t"},
        files={"other": ("a.pdf", io.BytesIO(PDF), "application/pdf")},
    )
    assert missing.status_code == 400
    assert counts(world) == before and blobs(world) == stored
    ok = gp.post(
        f"/practice/patients/{pid}/documents",
        data={"title": "Radio"},
        files={"file": ("r.pdf", io.BytesIO(PDF), "application/pdf")},
    )
    assert ok.status_code == 303 and len(blobs(world)) == len(stored) + 1


def test_no_health_data_in_logs_or_audit_entries(world: WebWorld, tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream=stream, install_excepthooks=False)
    markers = [
        *(s for values in SECRETS.values() for s in values),
        "motif-secret-91c",
        "rectif-secret-72d",
        "obs-secret-5.55",
        "titre-secret-33e",
    ]
    try:
        pid = world.users["own"].user_id
        own, gp = world.client("own", html=True), world.client("gp", html=True)
        for page in ("/me/record", "/me/consents", "/me/access-log", "/me/rights"):
            own.get(page)
        own.post("/me/rights/rectification", data={"text": "rectif-secret-72d"})
        gp.get(f"/practice/patients/{pid}")
        gp.post(
            f"/practice/patients/{pid}/observations",
            data={"code": "weight", "value": "obs-secret-5.55"},
        )
        gp.post(
            f"/practice/patients/{pid}/documents",
            data={"title": "titre-secret-33e"},
            files={"file": ("titre-secret-33e.pdf", io.BytesIO(PDF), "application/pdf")},
        )
        gp.get(f"/practice/documents/{world.ids['doc:own']}")
        world.client("gp").post(
            "/fhir/Observation", json={"resourceType": "Observation", "status": "motif-secret-91c"}
        )
        world.step_up("gp")
        world.client("gp").post(
            "/practice/break-glass",
            data={"patient_id": world.users["nocare"].user_id, "reason": "motif-secret-91c"},
        )
        world.client("dpo").get("/dpo/break-glass")
        world.step_up("own")
        world.client("own").get("/me/rights/export")
        world.client("own").get(f"/fhir/Observation/{world.ids['obs:other']}")
    finally:
        logging.getLogger().removeHandler(handler)
    logs = stream.getvalue()
    assert "http.request" in logs  # the capture worked
    leaked = [m for m in markers if m in logs]
    assert not leaked, leaked
    with world.platform.engine.connect() as conn:
        rows = conn.execute(select(audit_entries)).all()
    audit_text = "\n".join(str(tuple(r)) for r in rows)
    assert not [m for m in markers if m in audit_text]


def test_dpo_verifies_the_audit_log_and_sees_the_first_finding(world: WebWorld) -> None:
    """ "Verify now" is a POST that redirects (303) to the audit page showing the result kept
    server-side: a refresh re-reads it and never verifies again (before: the POST rendered the
    page, and a refresh re-posted). The last verifications are listed."""
    dpo = world.client("dpo", html=True)
    state = unescape(dpo.get("/dpo/audit").text)
    assert "Nombre d'entrées" in state and "Vérifier maintenant" in state
    assert "Aucune vérification pour l'instant" in state
    audit = world.platform.audit
    audit.checkpoint(world.clock.now)
    posted = dpo.post("/dpo/audit/verify")
    assert posted.status_code == 303
    location = posted.headers["location"]
    assert location.startswith("/dpo/audit?verified=")
    verified = unescape(dpo.get(location).text)
    # every signed root: the witnessed heads (one per witness flush) and the checkpoint
    witnessed = WitnessFile(world.platform.settings.witness_path).read().checkpoints
    signed = len({c.tree_size for c in witnessed} | {c.tree_size for c in audit.checkpoints()})
    # (counted after the page: the verification itself saw those signed before it ran)
    found = re.search(r", ([0-9]+) point\(s\) de contrôle signé\(s\)", verified)
    assert "Journal intègre" in verified and found and 1 <= int(found.group(1)) <= signed
    assert "Dora Delegate" in verified  # who verified, in the history
    with world.platform.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET actor_id = 'forged' WHERE seq = 3"))
    tampered_at = dpo.post("/dpo/audit/verify").headers["location"]
    assert tampered_at != location
    tampered = unescape(dpo.get(tampered_at).text)
    assert "Anomalie détectée" in tampered and "Entrée modifiée" in tampered
    assert "entrée n° 3" in tampered
    again = unescape(dpo.get(location).text)  # the first result, as it was: no new run
    assert "Journal intègre" in again.split('id="history-h"')[0]
    with world.platform.engine.connect() as conn:
        runs = conn.execute(text("SELECT ok, first_kind, first_seq FROM audit_verifications"))
        assert sorted(tuple(r) for r in runs) == [(False, "modified", 3), (True, None, None)]
        uses = conn.execute(
            select(audit_entries.c.action).where(
                audit_entries.c.event_type == "110101",
                audit_entries.c.actor_id == world.users["dpo"].user_id,
            )
        ).all()
    # each verification (E) and each page view (R: the state and the history) is audited
    assert sorted(a for (a,) in uses) == ["E", "E"] + ["R"] * 8
    assert world.client("admin", html=True).get("/dpo/audit").status_code == 403
    assert world.client("admin", html=True).post("/dpo/audit/verify").status_code == 403


def test_bad_query_parameters_give_a_page_without_echo(world: WebWorld) -> None:
    patient = world.client("own", html=True)
    bad = patient.get("/me/access-log", params={"page": "echo-7a1"})
    assert bad.status_code == 400 and "echo-7a1" not in bad.text
    assert "<main" in bad.text  # a page, not a JSON dump of the input
    purpose = world.client("gp", html=True).get(
        f"/practice/patients/{world.users['own'].user_id}", params={"purpose": "echo-7a1"}
    )
    assert purpose.status_code == 400 and "echo-7a1" not in purpose.text


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    gp = world.client("gp", html=True)
    del gp.headers["x-csrf-token"]
    before = counts(world)
    refused = gp.post(
        f"/practice/patients/{pid}/observations", data={"code": "weight", "value": "70"}
    )
    assert refused.status_code == 403 and "Rechargez la page" in unescape(refused.text)
    token = world.csrf("gp")
    accepted = gp.post(
        f"/practice/patients/{pid}/observations",
        data={"code": "weight", "value": "70", "csrf_token": token},
    )
    assert accepted.status_code == 303
    assert counts(world)[0] == before[0] + 1


def test_the_access_log_keeps_the_name_of_a_practitioner_who_left(world: WebWorld) -> None:
    """A practitioner's account disabled since: the patient still sees who opened the record."""
    assert world.client("gp").get(f"/fhir/Observation/{world.ids['obs:own']}").status_code == 200
    world.step_up("admin")
    admin = world.client("admin", html=True)
    disabled = admin.post(
        f"/admin/users/{world.users['gp'].user_id}/status", data={"status": "disabled"}
    )
    assert disabled.status_code == 303
    page = unescape(world.client("own", html=True).get("/me/access-log").text)
    assert "Dr Gaston Généraliste" in page
    assert "Personne inconnue" not in page
    invite = unescape(world.client("own", html=True).get("/me/care-team").text)
    assert world.users["gp"].user_id not in invite  # but no longer offered to invite
