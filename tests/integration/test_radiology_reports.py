"""Radiology reports end to end (SQLite and PostgreSQL), real policy: the worklist of studies
referred to the radiologist and not yet reported, a draft (FHIR DiagnosticReport sealed in the
records), signing with a WebAuthn assertion over the canonical form, verification, an
amendment as a new signed version, the patient's view."""

from __future__ import annotations

import json

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    ImagingWorld,
    imaging_world,
)
from radiology_world import RadiologyWorld, radiology_world  # noqa: F401 (rw is a fixture)
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.model import EventType
from secretum.radiology.canonical import StoredSignature, canonical_form, content_hash
from secretum.records.fhir import FhirRecord

PATIENT = RequestContext(Actor("pat-1", Role.PATIENT), Purpose.PATIENT_REQUEST, NOW)


def sign(rw: RadiologyWorld, report_id: str, ctx: RequestContext = READING) -> FhirRecord:
    start = rw.reports.begin_signing(ctx, report_id)
    assertion = rw.authenticators[ctx.actor.user_id].get(start.options)
    return rw.reports.finish_signing(ctx, report_id, start.challenge_id, assertion)


def test_worklist_draft_sign_verify_and_the_patient_sees_it(rw: RadiologyWorld) -> None:
    uid = rw.study()
    items = rw.reports.worklist(READING)
    assert [(i.study_uid, i.patient_id, i.draft_id) for i in items] == [(uid, "pat-1", None)]
    draft = rw.reports.save_draft(READING, uid, "No pulmonary embolism.")
    assert draft.resource["status"] == "preliminary"
    assert [i.draft_id for i in rw.reports.worklist(READING)] == [draft.resource_id]
    before = len(rw.iw.audit_rows(RADIOLOGIST.user_id))
    signed = sign(rw, draft.resource_id)
    assert signed.version == 2 and signed.resource["status"] == "final"
    sig = StoredSignature.of(signed.resource)
    assert sig is not None and sig.signer_id == RADIOLOGIST.user_id
    assert sig.content_sha256 == content_hash(signed.resource)
    client = json.loads(sig.client_data_json)
    assert client["type"] == "webauthn.get" and client["origin"] == "https://secretum.test"
    # begin + finish: one audited update each, naming the report and the patient
    rows = rw.iw.audit_rows(RADIOLOGIST.user_id)[before:]
    assert [(r["event_type"], r["resource_id"], r["patient_id"]) for r in rows] == [
        (EventType.PATIENT_RECORD.value, draft.resource_id, "pat-1")
    ] * 2
    # reported: off the worklist
    assert rw.reports.worklist(READING) == []
    verification = rw.reports.verify(READING, draft.resource_id)
    assert verification.valid and verification.signer_id == RADIOLOGIST.user_id
    # the patient sees the signed report, verified
    shown = rw.reports.signed_reports(PATIENT, "pat-1")
    assert [(s.record.version, s.verification.valid) for s in shown] == [(2, True)]
    assert shown[0].record.resource["conclusion"] == "No pulmonary embolism."


def test_an_amendment_is_a_new_signed_version_and_the_previous_stays(rw: RadiologyWorld) -> None:
    uid = rw.study()
    draft = rw.reports.save_draft(READING, uid, "First reading.")
    first = sign(rw, draft.resource_id)
    amended = rw.reports.save_draft(
        READING, uid, "First reading. Addendum: small nodule.", report_id=draft.resource_id
    )
    assert amended.version == 3 and amended.resource["status"] == "preliminary"
    # while the amendment is a draft the patient still sees the signed version
    assert [s.record.version for s in rw.reports.signed_reports(PATIENT, "pat-1")] == [2]
    second = sign(rw, draft.resource_id)
    assert second.version == 4 and second.resource["status"] == "amended"
    assert rw.reports.verify(READING, draft.resource_id, version=first.version).valid
    assert rw.reports.verify(READING, draft.resource_id, version=second.version).valid
    assert not rw.reports.verify(READING, draft.resource_id, version=3).signed
    shown = rw.reports.signed_reports(PATIENT, "pat-1")
    assert [s.record.version for s in shown] == [4]


def test_the_canonical_form_is_rfc8785_without_meta_and_signature(rw: RadiologyWorld) -> None:
    uid = rw.study()
    draft = rw.reports.save_draft(READING, uid, "Été: «normal».")
    signed = sign(rw, draft.resource_id)
    form = canonical_form(signed.resource)
    assert b"meta" not in form and b"report-signature" not in form
    assert b'": ' not in form and b'", "' not in form and b"\n" not in form
    parsed = json.loads(form)
    assert list(parsed) == sorted(parsed)
    assert "Été: «normal».".encode() in form  # UTF-8, not escaped


def test_operator_verification_gives_a_verdict_and_is_audited(rw: RadiologyWorld) -> None:
    uid = rw.study()
    draft = rw.reports.save_draft(READING, uid, "Normal.")
    sign(rw, draft.resource_id)
    cli = RequestContext(Actor("cli", Role.DPO), Purpose.OPERATIONS, NOW)
    verdict = rw.reports.verify_for_operator(cli, draft.resource_id)
    assert verdict.valid and verdict.version == 2
    last = rw.iw.audit_rows("cli")[-1]
    assert (last["resource_id"], last["patient_id"], last["outcome"]) == (
        draft.resource_id,
        "pat-1",
        0,
    )
