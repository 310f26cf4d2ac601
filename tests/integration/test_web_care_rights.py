"""The patient's rights over HTTP: the export (after a step-up) is a zip whose Bundle validates
with fhir.resources (R4B) and holds the files; an erasure within the retention period is
scheduled, and once carried out nothing of the patient can be decrypted (HTTP 410, and the
stores raise); restriction and rectification."""

from __future__ import annotations

import io
import json
import re
import zipfile
from html import unescape
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import text
from structlog.testing import capture_logs

from identity_authenticator import PASSWORD
from secretum.access.context import RequestContext
from secretum.access.errors import RecordErased
from secretum.access.model import Actor, Purpose, Role
from secretum.crypto.errors import KeyShreddedError
from secretum.identity.errors import AccountErased
from web_world import PDF, SECRETS, WebWorld, clinic


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return clinic(tmp_path)


def test_export_after_step_up_is_a_valid_bundle_with_the_files(world: WebWorld) -> None:
    world.clock.advance(minutes=6)
    patient = world.client("own", html=True)
    detour = patient.get("/me/rights/export")
    assert detour.status_code == 303
    assert detour.headers["location"] == "/account/step-up?next=/me/rights%3Fready%3Dexport"
    api = world.client("own").get(f"/fhir/Patient/{world.users['own'].user_id}/$everything")
    assert api.status_code == 401 and "step-up" in api.json()["issue"][0]["diagnostics"]
    world.step_up("own")
    patient = world.client("own", html=True)
    assert "Identité confirmée" in unescape(patient.get("/me/rights?ready=export").text)
    response = patient.get("/me/rights/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    doc = world.ids["doc:own"]
    assert set(archive.namelist()) == {"bundle.json", f"files/{doc}.pdf"}
    assert archive.read(f"files/{doc}.pdf") == PDF
    bundle = json.loads(archive.read("bundle.json"))
    Bundle.model_validate(bundle)  # raises if not valid FHIR R4B
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Patient", "Observation", "DocumentReference", "Consent", "AuditEvent"} <= kinds
    consents = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent"
    ]
    with world.platform.engine.connect() as conn:
        given = conn.execute(
            text("SELECT count(*) FROM consents WHERE patient_id = :p"),
            {"p": world.users["own"].user_id},
        ).scalar_one()
    assert len(consents) == given > 0  # the consents given, as the consent records hold them
    assert SECRETS["own"][2] in json.dumps(bundle, ensure_ascii=False)
    assert not any(
        SECRETS["other"][2] in json.dumps(e, ensure_ascii=False) for e in bundle["entry"]
    )


def test_erasure_is_scheduled_then_nothing_can_be_decrypted(world: WebWorld) -> None:
    pid = world.users["own"].user_id
    patient = world.client("own", html=True)
    refused = patient.post("/me/rights/erasure", data={})
    assert refused.status_code == 400 and "confirmation" in unescape(refused.text)
    world.step_up("own")
    patient = world.client("own", html=True)
    outcome = patient.post("/me/rights/erasure", data={"confirm": "yes"})
    assert outcome.status_code == 200
    text = unescape(outcome.text)
    assert "programmé pour le" in text and "02/03/2046" in text
    assert "20 ans" in text and "R1112-7" in text
    # within retention: processing is restricted, the care team is refused
    gp = world.client("gp")
    with capture_logs() as logs:
        denied = gp.get(f"/fhir/Observation/{world.ids['obs:own']}")
    assert denied.status_code == 403 and "deny." not in denied.text
    assert logs[0]["reason"] == "deny.restricted-processing"
    assert "programmé" in unescape(world.client("own", html=True).get("/me/rights").text)
    # the retention period ends; the periodic job shreds the patient's key
    world.clock.advance(days=365 * 21)
    done = {duty.__name__: duty() for _period, duty in world.platform.duties()}  # the server's
    assert done["run_due_erasures"].shredded == [pid]
    # the patient's account is closed with their data: session ended, sign-in refused (410)
    assert (
        world.services.identity.sessions.resolve(world.users["own"].session_id, now=world.clock.now)
        is None
    )
    with pytest.raises(AccountErased):
        world.services.identity.sign_in.sign_in_password(
            world.users["own"].email, PASSWORD, now=world.clock.now
        )
    # what the record service answers the patient now: erased (FHIR 410 "deleted")
    patient = Actor(pid, Role.PATIENT)
    for read in (
        lambda: world.services.records.read(
            RequestContext(patient, Purpose.PATIENT_REQUEST, world.clock.now),
            "Observation",
            world.ids["obs:own"],
        ),
        lambda: world.services.documents.open_document(
            RequestContext(patient, Purpose.PATIENT_REQUEST, world.clock.now), world.ids["doc:own"]
        ),
    ):
        with pytest.raises(RecordErased):
            read()
    world.sign_in("gp")
    # straight to the stores: the key is gone, the ciphertexts stay unreadable
    records, files = world.platform.records, world.platform.files
    with pytest.raises(KeyShreddedError):
        world.platform.keyring.data_key(pid)
    with world.platform.engine.connect() as conn:
        repo = world.services.records.repo
        row = repo.find(conn, world.ids["obs:own"])
        assert row is not None
        with pytest.raises(KeyShreddedError):
            repo.load(conn, row)
        with pytest.raises(KeyShreddedError):
            files.open(conn, world.ids["doc:own"], 1).read()
    assert records is not None
    # other patients are untouched
    other = world.client("gp").get(f"/fhir/Observation/{world.ids['obs:other']}")
    assert other.status_code == 200


def test_erasure_past_retention_is_done_at_once(tmp_path: Path) -> None:
    world = clinic(tmp_path, retention_years=0)
    world.step_up("own")
    outcome = world.client("own", html=True).post("/me/rights/erasure", data={"confirm": "yes"})
    assert outcome.status_code == 200
    assert "plus personne ne peut le lire" in unescape(outcome.text)
    # the account is closed for good: its session ended, sign-in says why, admins cannot reopen
    ended = world.services.identity.sessions.resolve(
        world.users["own"].session_id, now=world.clock.now
    )
    assert ended is None
    anonymous = world.client(html=True)
    form = anonymous.get("/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]*)"', form.text)
    assert token is not None
    email = world.users["own"].email
    refused = anonymous.post(
        "/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert refused.status_code == 410
    assert "effacées à la demande du patient" in unescape(refused.text)
    world.step_up("admin")
    admin = world.client("admin", html=True)
    assert "effacé" in unescape(admin.get("/admin/users").text)
    reopen = admin.post(
        f"/admin/users/{world.users['own'].user_id}/status", data={"status": "active"}
    )
    assert reopen.status_code == 400
    with world.platform.engine.connect() as conn:
        closed = conn.execute(
            text(
                "SELECT actor_role, action FROM audit_entries"
                " WHERE resource_type = 'Account' AND resource_id = :pid"
            ),
            {"pid": world.users["own"].user_id},
        ).all()
    assert ("patient", "U") in [tuple(r) for r in closed]  # closed by the patient's erasure


def test_restriction_on_and_off(world: WebWorld) -> None:
    patient = world.client("own", html=True)
    gp = world.client("gp")
    url = f"/fhir/Observation/{world.ids['obs:own']}"
    assert gp.get(url).status_code == 200
    on = patient.post("/me/rights/restriction", data={"restricted": "on"})
    assert on.status_code == 303 and on.headers["location"].endswith("done=restricted")
    assert gp.get(url).status_code == 403
    assert patient.get("/me/record").status_code == 200  # the patient keeps their rights
    assert "actuellement limité" in unescape(patient.get("/me/rights").text)
    assert patient.post("/me/rights/restriction", data={"restricted": "off"}).status_code == 303
    assert gp.get(url).status_code == 200
    assert patient.post("/me/rights/restriction", data={"restricted": "maybe"}).status_code == 400


def test_rectification_request_reaches_the_record(world: WebWorld) -> None:
    patient = world.client("own", html=True)
    text = "Ma glycémie du 2 mars est fausse, marqueur-rect-4a2"
    about = f"Observation/{world.ids['obs:own']}"
    sent = patient.post("/me/rights/rectification", data={"text": text, "about": about})
    assert sent.status_code == 303
    assert "marqueur-rect-4a2" in unescape(patient.get("/me/record").text)
    record = world.client("gp", html=True).get(f"/practice/patients/{world.users['own'].user_id}")
    assert "marqueur-rect-4a2" in unescape(record.text)
    bad = patient.post("/me/rights/rectification", data={"text": "x", "about": "nonsense"})
    assert bad.status_code == 400
    other = f"Observation/{world.ids['obs:other']}"
    refused = patient.post("/me/rights/rectification", data={"text": "x", "about": other})
    assert refused.status_code == 422
    empty = patient.post("/me/rights/rectification", data={"text": "  "})
    assert empty.status_code == 400
