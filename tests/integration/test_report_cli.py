"""``secretum report verify`` on a real data directory: a report signed through the platform's
services with a credential registered in the identity context, verified later by the command;
a damaged stored report and an unknown id end in exit code 1."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from typer.testing import CliRunner

from identity_authenticator import SoftAuthenticator, SoftCredential, cose_key
from imaging_data import make_ct, to_bytes
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.bootstrap import open_platform
from secretum.cli import app
from secretum.config import Settings
from secretum.consent.store import ConsentMethod
from secretum.identity.model import CredentialKind
from secretum.identity.webauthn import credential_ref
from secretum.policy import care
from secretum.records.tables import sealed_records

PASSPHRASE = "correct horse battery staple, but longer"
TR = Purpose.TELERADIOLOGY


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECRETUM_KEYSTORE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SECRETUM_CONFIG", str(tmp_path / "none.toml"))


def _signed_report() -> str:
    platform = open_platform(Settings(), dev=True)
    try:
        svc, now = platform.services, platform.clock()
        pid, gp, rad = (
            "pat-cli",
            Actor("gp-cli", Role.PRACTITIONER),
            Actor("rad-cli", Role.PRACTITIONER),
        )
        with platform.engine.begin() as conn:
            care.start(conn, patient_id=pid, practitioner_id=gp.user_id,
                       basis=care.CareBasis.INVITATION, now=now - timedelta(hours=1))  # fmt: skip
            care.start(conn, patient_id=pid, practitioner_id=rad.user_id,
                       basis=care.CareBasis.REFERRAL, now=now - timedelta(hours=1))  # fmt: skip
        svc.consent.grant(
            RequestContext(Actor(pid, Role.PATIENT), Purpose.PATIENT_REQUEST, now),
            patient_id=pid,
            purpose=TR,
            text_sha256=svc.consent.texts.current(TR, "en").sha256,
            method=ConsentMethod.WEB_CHECKBOX,
        )
        sending, reading = RequestContext(gp, TR, now), RequestContext(rad, TR, now)
        svc.records.create(
            sending, {"resourceType": "Patient", "id": pid}, resource_id=pid, patient_id=pid
        )
        svc.imaging.register_patient_identifier(sending, pid, "HOPITAL-NORD", "SYN0001")
        study = make_ct(1)
        assert all(r.ok for r in svc.imaging.ingest(sending, map(to_bytes, study)))
        # the radiologist's security key, registered in the identity context
        authenticator = SoftAuthenticator(origin=platform.settings.base_url)
        cid, key = os.urandom(32), ec.generate_private_key(ec.SECP256R1())
        rp_id = svc.identity.core.webauthn.rp_id
        authenticator.credentials[cid] = SoftCredential(cid, key, rp_id, b"rad-cli")
        with platform.engine.begin() as conn:
            svc.identity.core.factors.add_credential(
                conn, ref=credential_ref(cid), credential_id=cid, user_id=rad.user_id,
                kind=CredentialKind.SECURITY_KEY, name="key", public_key=cose_key(key.public_key()),
                sign_count=0, aaguid="00000000-0000-0000-0000-000000000000", backed_up=False,
                now=now,
            )  # fmt: skip
        draft = svc.reports.save_draft(reading, str(study[0].StudyInstanceUID), "Normal.")
        start = svc.reports.begin_signing(reading, draft.resource_id)
        assertion = authenticator.get(start.options)
        svc.reports.finish_signing(reading, draft.resource_id, start.challenge_id, assertion)
        return draft.resource_id
    finally:
        platform.close()


def test_report_verify_valid_then_damaged(env: None) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    report_id = _signed_report()
    result = runner.invoke(app, ["report", "verify", report_id])
    assert result.exit_code == 0, result.output
    assert "valid signature" in result.output and "Normal." not in result.output
    result = runner.invoke(app, ["report", "verify", report_id, "--json"])
    verdict = json.loads(result.output)
    assert verdict["valid"] and verdict["version"] == 2 and all(verdict["checks"].values())
    # the draft version is not signed
    assert runner.invoke(app, ["report", "verify", report_id, "--version", "1"]).exit_code == 1
    assert runner.invoke(app, ["report", "verify", "no-such-report"]).exit_code == 1
    # one byte of the stored report flipped: damaged, refused
    platform = open_platform(Settings(), dev=True)
    try:
        t = sealed_records.c
        with platform.engine.begin() as conn:
            where = (t.record_id == report_id, t.version == 2)
            sealed = bytearray(conn.execute(select(t.sealed).where(*where)).scalar_one())
            sealed[-5] ^= 0x01
            conn.execute(update(sealed_records).where(*where).values(sealed=bytes(sealed)))
    finally:
        platform.close()
    result = runner.invoke(app, ["report", "verify", report_id])
    assert result.exit_code == 1 and "damaged" in result.output
