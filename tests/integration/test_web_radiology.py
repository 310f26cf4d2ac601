"""The radiologist's pages and the de-identified export through the real app: worklist, report
editor, signing with a WebAuthn assertion (a software authenticator answering the page's JSON
endpoints), the patient's record showing the signed report, the export form and its zip."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from identity_authenticator import SoftAuthenticator, SoftCredential, cose_key
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.identity.model import CredentialKind
from secretum.identity.webauthn import credential_ref
from web_world import WebWorld, clinic


@pytest.fixture
def world(tmp_path: Path) -> tuple[WebWorld, str]:
    w = clinic(tmp_path)
    svc, now = w.services, w.clock.now
    gp, radio, own = w.users["gp"], w.users["radio"], w.users["own"]
    w.clock.advance(minutes=1)
    svc.care_team.refer(
        RequestContext(gp.actor, Purpose.TELECONSULTATION, w.clock.now),
        patient_id=own.user_id,
        practitioner_id=radio.user_id,
    )
    sending = RequestContext(gp.actor, Purpose.TELERADIOLOGY, now)
    svc.imaging.register_patient_identifier(sending, own.user_id, "HOPITAL-NORD", "SYN0001")
    study = make_ct(2)
    assert all(r.ok for r in svc.imaging.ingest(sending, map(to_bytes, study)))
    return w, str(study[0].StudyInstanceUID)


def _security_key(w: WebWorld, name: str) -> SoftAuthenticator:
    core = w.services.identity.core
    auth = SoftAuthenticator(origin=core.webauthn.origins[0])
    cid, key = os.urandom(32), ec.generate_private_key(ec.SECP256R1())
    auth.credentials[cid] = SoftCredential(cid, key, core.webauthn.rp_id, b"h")
    with w.platform.engine.begin() as conn:
        core.factors.add_credential(
            conn, ref=credential_ref(cid), credential_id=cid, user_id=w.users[name].user_id,
            kind=CredentialKind.SECURITY_KEY, name="key", public_key=cose_key(key.public_key()),
            sign_count=0, aaguid="00000000-0000-0000-0000-000000000000", backed_up=False,
            now=w.clock.now,
        )  # fmt: skip
    return auth


def _json(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_worklist_write_sign_and_the_patient_sees_it(world: tuple[WebWorld, str]) -> None:
    w, uid = world
    radio = w.client("radio", html=True)
    radio.cookies.set("lang", "en")
    page = radio.get("/radiology/worklist")
    assert page.status_code == 200 and "Martin Sophie" in page.text and uid in page.text
    assert radio.get(f"/radiology/studies/{uid}").status_code == 200
    saved = radio.post(f"/radiology/studies/{uid}/report", data={"text": "Normal chest CT."})
    assert saved.status_code == 303
    page = radio.get(f"/radiology/studies/{uid}")
    assert "Normal chest CT." in page.text and "not signed" in page.text
    report_id = next(iter(w.services.reports.report_index(w.users["own"].user_id)))["report_id"]
    auth = _security_key(w, "radio")
    api = w.client("radio")
    start = _json(api.post(f"/radiology/reports/{report_id}/sign/options", json={}))
    assertion = auth.get(json.dumps(start["options"]))
    done = _json(
        api.post(
            f"/radiology/reports/{report_id}/sign/verify",
            json={"ceremony": start["ceremony"], "credential": assertion},
        )
    )
    assert done["next"] == f"/radiology/studies/{uid}?done=signed"
    page = radio.get(f"/radiology/studies/{uid}")
    assert "signature valid" in page.text
    # reported: off the worklist
    assert uid not in radio.get("/radiology/worklist").text
    # the patient sees it in their record, signed
    patient = w.client("own", html=True)
    patient.cookies.set("lang", "en")
    record = patient.get("/me/record")
    assert record.status_code == 200
    assert "Normal chest CT." in record.text and "signature valid" in record.text
    # a replayed assertion is refused with a message, nothing signed again
    replay = api.post(
        f"/radiology/reports/{report_id}/sign/verify",
        json={"ceremony": start["ceremony"], "credential": assertion},
    )
    assert replay.status_code == 422 and "error" in replay.json()


def test_the_patient_and_other_practitioners_cannot_sign(world: tuple[WebWorld, str]) -> None:
    w, uid = world
    w.client("radio").post(f"/radiology/studies/{uid}/report", data={"text": "Draft."})
    report_id = next(iter(w.services.reports.report_index(w.users["own"].user_id)))["report_id"]
    # the patient has no access to the radiologist's pages at all
    assert w.client("own").post(f"/radiology/reports/{report_id}/sign/options").status_code == 403
    # gp is in the care team but nothing was referred to them: empty worklist
    assert uid not in w.client("gp", html=True).get("/radiology/worklist").text


def test_export_page_and_zip(world: tuple[WebWorld, str]) -> None:
    w, uid = world
    radio = w.client("radio", html=True)
    assert radio.get(f"/imaging/export/{uid}").status_code == 200
    response = radio.post(
        f"/imaging/export/{uid}",
        data={"project": "second-opinion", "purpose": "teleradiology", "burned_in": "refuse"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-export-instances"] == "2"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        assert "manifest.json" in names and len(names) == 3
        for name in names:
            assert b"Martin" not in zf.read(name) and b"SYN0001" not in zf.read(name)
    # research without the research consent: refused, as a page
    refused = radio.post(
        f"/imaging/export/{uid}",
        data={"project": "cohort", "purpose": "research", "burned_in": "refuse"},
    )
    assert refused.status_code == 403
