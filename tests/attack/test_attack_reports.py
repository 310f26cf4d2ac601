"""The attacker against signed radiology reports (issue 10, section 6): one who changes a
signed report (one byte), moves a signature onto another report or version, replays an
assertion, signs with the wrong origin or relying party or without user verification, writes a
signature through the FHIR API; a radiologist who was not referred; a patient who tries to
sign. Each is refused, or fails verification naming the check that failed."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from sqlalchemy import select, update
from webauthn.helpers import base64url_to_bytes

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    STRANGER,
    TR,
    ImagingWorld,
    imaging_world,
)
from radiology_world import RP, RadiologyWorld, radiology_world  # noqa: F401 (rw is a fixture)
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Purpose, Role
from secretum.crypto.errors import IntegrityError
from secretum.radiology.canonical import SIGNED_VERSION_EXTENSION
from secretum.radiology.ceremony import stored_signature
from secretum.radiology.service import SigningRefused
from secretum.radiology.signing import check_signature
from secretum.records.fhir import FhirRecord, UnprocessableResource
from secretum.records.tables import sealed_records

PATIENT = RequestContext(Actor("pat-1", Role.PATIENT), Purpose.PATIENT_REQUEST, NOW)
OUTSIDER = RequestContext(STRANGER, TR, NOW)


def _signed(rw: RadiologyWorld, text: str = "Normal chest CT.") -> FhirRecord:
    uid = rw.study(1)
    draft = rw.reports.save_draft(READING, uid, text)
    start = rw.reports.begin_signing(READING, draft.resource_id)
    assertion = rw.authenticators[RADIOLOGIST.user_id].get(start.options)
    return rw.reports.finish_signing(READING, draft.resource_id, start.challenge_id, assertion)


def _changed(record: FhirRecord, resource: dict) -> FhirRecord:  # type: ignore[type-arg]
    return dataclasses.replace(record, resource=resource)


def test_a_report_changed_by_one_byte_fails_verification(rw: RadiologyWorld) -> None:
    signed = _signed(rw)
    assert rw.reports.check(signed).valid
    body = copy.deepcopy(signed.resource)
    body["conclusion"] = "Normal chest CT!"  # one byte
    verdict = rw.reports.check(_changed(signed, body))
    assert not verdict.valid
    assert verdict.check is not None
    assert {"content_matches", "signature_valid"} <= set(verdict.check.failures())


def test_a_byte_flipped_in_the_stored_report_is_tampering(rw: RadiologyWorld) -> None:
    signed = _signed(rw)
    t = sealed_records.c
    with rw.engine.begin() as conn:
        sealed = conn.execute(
            select(t.sealed).where(t.record_id == signed.resource_id, t.version == signed.version)
        ).scalar_one()
        flipped = bytearray(sealed)
        flipped[len(flipped) // 2] ^= 0x01
        conn.execute(
            update(sealed_records)
            .where(t.record_id == signed.resource_id, t.version == signed.version)
            .values(sealed=bytes(flipped))
        )
    with pytest.raises(IntegrityError):  # never returned, not even to be verified
        rw.reports.verify(READING, signed.resource_id)


def test_a_signature_moved_to_another_report_or_version_fails(rw: RadiologyWorld) -> None:
    first = _signed(rw, "Report one.")
    other = _signed(rw, "Report two.")
    moved = copy.deepcopy(other.resource)
    moved["extension"] = first.resource["extension"]
    assert not rw.reports.check(_changed(other, moved)).valid
    # the whole signed body written back as a later version: its signed version is not this one
    later = _changed(dataclasses.replace(first, version=first.version + 1), first.resource)
    verdict = rw.reports.check(later)
    assert not verdict.valid and verdict.check is not None
    assert verdict.check.failures() == ["version_matches"]
    # and the signed-version extension removed: the content hash no longer matches
    stripped = copy.deepcopy(first.resource)
    stripped["extension"] = [
        e for e in stripped["extension"] if e["url"] != SIGNED_VERSION_EXTENSION
    ]
    assert not rw.reports.check(_changed(first, stripped)).valid


def test_an_assertion_made_for_another_reports_hash_is_refused(rw: RadiologyWorld) -> None:
    a = rw.reports.save_draft(READING, rw.study(1), "Report A.")
    b = rw.reports.save_draft(READING, rw.study(1), "Report B.")
    start_a = rw.reports.begin_signing(READING, a.resource_id)
    start_b = rw.reports.begin_signing(READING, b.resource_id)
    for_b = rw.authenticators[RADIOLOGIST.user_id].get(start_b.options)
    with pytest.raises(SigningRefused):
        rw.reports.finish_signing(READING, a.resource_id, start_a.challenge_id, for_b)
    # B's ceremony on A's report is refused too (the ceremony names its report)
    with pytest.raises(SigningRefused):
        rw.reports.finish_signing(READING, a.resource_id, start_b.challenge_id, for_b)
    assert not rw.reports.verify(READING, a.resource_id).signed


def test_a_replayed_assertion_is_refused(rw: RadiologyWorld) -> None:
    uid = rw.study(1)
    draft = rw.reports.save_draft(READING, uid, "Normal.")
    start = rw.reports.begin_signing(READING, draft.resource_id)
    assertion = rw.authenticators[RADIOLOGIST.user_id].get(start.options)
    rw.reports.finish_signing(READING, draft.resource_id, start.challenge_id, assertion)
    with pytest.raises(SigningRefused):  # the ceremony was spent
        rw.reports.finish_signing(READING, draft.resource_id, start.challenge_id, assertion)
    # an amendment with the same text: a new ceremony, the old assertion does not sign it
    rw.reports.save_draft(READING, uid, "Normal.", report_id=draft.resource_id)
    again = rw.reports.begin_signing(READING, draft.resource_id)
    with pytest.raises(SigningRefused):
        rw.reports.finish_signing(READING, draft.resource_id, again.challenge_id, assertion)


@pytest.mark.parametrize(
    "forgery",
    [
        {"origin": "https://evil.test"},
        {"rp_id": "evil.test"},
        {"user_verified": False},
        {"challenge": b"\x00" * 32},
    ],
    ids=["origin", "rp-id", "no-user-verification", "challenge"],
)
def test_a_forged_assertion_is_refused(
    rw: RadiologyWorld,
    forgery: dict,  # type: ignore[type-arg]
    request: pytest.FixtureRequest,
) -> None:
    draft = rw.reports.save_draft(READING, rw.study(1), "Normal.")
    start = rw.reports.begin_signing(READING, draft.resource_id)
    assertion = rw.authenticators[RADIOLOGIST.user_id].get(start.options, **forgery)
    # the check that catches it is named (py_webauthn's own refusal comes on top)
    options = json.loads(start.options)
    digest = base64url_to_bytes(options["challenge"])
    sig = stored_signature(assertion, RADIOLOGIST.user_id, digest, NOW, RP.rp_id)
    key = rw.keys.key(sig.credential_id)
    check, _ = check_signature(RP, sig, content_sha256=digest, key=key, version_matches=True)
    expected = {
        "origin": "origin_ok",
        "rp-id": "rp_ok",
        "no-user-verification": "signature_valid",
        "challenge": "challenge_matches",
    }
    assert expected[request.node.callspec.id.split("-", 1)[1]] in check.failures()
    with pytest.raises(SigningRefused):
        rw.reports.finish_signing(READING, draft.resource_id, start.challenge_id, assertion)


def test_another_persons_key_does_not_sign(rw: RadiologyWorld) -> None:
    draft = rw.reports.save_draft(READING, rw.study(1), "Normal.")
    start = rw.reports.begin_signing(READING, draft.resource_id)
    mallory = rw.enrol("mallory")
    forged = mallory.get(start.options.replace('"allowCredentials"', '"ignored"'))
    with pytest.raises(SigningRefused):
        rw.reports.finish_signing(READING, draft.resource_id, start.challenge_id, forged)


def test_a_radiologist_not_referred_cannot_open_the_item_nor_write_nor_sign(
    rw: RadiologyWorld,
) -> None:
    uid = rw.study(1)
    draft = rw.reports.save_draft(READING, uid, "Normal.")
    rw.enrol(STRANGER.user_id)
    assert rw.reports.worklist(OUTSIDER) == []
    with pytest.raises(AccessDenied):
        rw.reports.study(OUTSIDER, uid)
    with pytest.raises(AccessDenied):
        rw.reports.save_draft(OUTSIDER, uid, "Mine now.")
    with pytest.raises(AccessDenied):
        rw.reports.begin_signing(OUTSIDER, draft.resource_id)
    # nor finish a ceremony the referred radiologist started
    start = rw.reports.begin_signing(READING, draft.resource_id)
    forged = rw.authenticators[STRANGER.user_id].get(
        start.options.replace('"allowCredentials"', '"ignored"')
    )
    with pytest.raises(AccessDenied):
        rw.reports.finish_signing(OUTSIDER, draft.resource_id, start.challenge_id, forged)
    assert not rw.reports.verify(READING, draft.resource_id).signed


def test_a_patient_cannot_sign(rw: RadiologyWorld) -> None:
    draft = rw.reports.save_draft(READING, rw.study(1), "Normal.")
    with pytest.raises(AccessDenied):
        rw.reports.begin_signing(PATIENT, draft.resource_id)
    start = rw.reports.begin_signing(READING, draft.resource_id)
    assertion = rw.authenticators[RADIOLOGIST.user_id].get(start.options)
    with pytest.raises(AccessDenied):
        rw.reports.finish_signing(PATIENT, draft.resource_id, start.challenge_id, assertion)
    assert not rw.reports.verify(READING, draft.resource_id).signed


def test_a_signature_cannot_be_written_through_the_fhir_api(rw: RadiologyWorld) -> None:
    signed = _signed(rw)
    body = copy.deepcopy(signed.resource)
    body.pop("meta", None)
    with pytest.raises(UnprocessableResource):
        rw.reports.records.update(READING, "DiagnosticReport", signed.resource_id, body)
    body["id"] = "forged-report"
    with pytest.raises(UnprocessableResource):
        rw.reports.records.create(READING, body)
