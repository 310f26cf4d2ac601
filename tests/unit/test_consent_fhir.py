"""Each consent is a valid FHIR R4 Consent (checked with fhir.resources' R4B models)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.consent import Consent
from pydantic import ValidationError

from secretum.access.model import CONSENTED_PURPOSES, Purpose
from secretum.consent.fhir import to_fhir_consent
from secretum.consent.store import ConsentMethod, ConsentRecord, Evidence
from secretum.consent.texts import default_texts

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def record(purpose: Purpose, *, withdrawn: bool = False, paper: bool = False) -> ConsentRecord:
    text = default_texts().current(purpose, "fr")
    granted = (
        Evidence(ConsentMethod.PAPER_SCANNED, "d1", "practitioner", T0, "192.0.2.7", "doc-9")
        if paper
        else Evidence(ConsentMethod.WEB_CHECKBOX, "p1", "patient", T0, "2001:db8::1")
    )
    return ConsentRecord(
        consent_id="c" * 32,
        patient_id="p1",
        purpose=purpose,
        grantee_id="d7" if purpose is Purpose.SHARING else None,
        text_sha256=text.sha256,
        text_version=text.version,
        language="fr",
        granted=granted,
        withdrawn=(
            Evidence(ConsentMethod.WEB_CHECKBOX, "p1", "patient", T0 + timedelta(days=3))
            if withdrawn
            else None
        ),
    )


def validate(resource: dict[str, Any]) -> Consent:
    return Consent.model_validate(json.loads(json.dumps(resource)))  # via real JSON


@pytest.mark.parametrize("purpose", sorted(CONSENTED_PURPOSES))
def test_active_consent_validates(purpose: Purpose) -> None:
    resource = to_fhir_consent(record(purpose))
    assert validate(resource).status == "active"
    assert resource["patient"] == {"reference": "Patient/p1"}
    assert resource["policy"][0]["uri"].endswith(record(purpose).text_sha256)
    assert resource["provision"]["type"] == "permit"
    assert "end" not in resource["provision"]["period"]
    assert resource["category"][0]["coding"][1]["code"] == str(purpose)


def test_scope_and_recipient_follow_the_purpose() -> None:
    sharing = to_fhir_consent(record(Purpose.SHARING))
    research = to_fhir_consent(record(Purpose.RESEARCH))
    treat = to_fhir_consent(record(Purpose.REMOTE_MONITORING))
    for resource in (sharing, research, treat):
        validate(resource)
    assert sharing["scope"]["coding"][0]["code"] == "patient-privacy"
    assert sharing["provision"]["actor"][0]["reference"] == {"reference": "Practitioner/d7"}
    assert sharing["provision"]["purpose"][0]["code"] == "COC"
    assert research["scope"]["coding"][0]["code"] == "research"
    assert research["provision"]["purpose"][0]["code"] == "HRESCH"
    assert treat["scope"]["coding"][0]["code"] == "treatment"
    assert "actor" not in treat["provision"]


def test_withdrawn_consent_is_inactive_with_an_end() -> None:
    resource = to_fhir_consent(record(Purpose.TELECONSULTATION, withdrawn=True))
    consent = validate(resource)
    assert consent.status == "inactive"
    assert resource["provision"]["period"] == {
        "start": "2026-03-01T09:00:00Z",
        "end": "2026-03-04T09:00:00Z",
    }


def test_paper_consent_points_at_the_scan_and_the_recorder() -> None:
    resource = to_fhir_consent(record(Purpose.TELERADIOLOGY, paper=True))
    validate(resource)
    assert resource["sourceReference"] == {"reference": "DocumentReference/doc-9"}
    extensions = {e["url"].rsplit(":", 1)[1]: e for e in resource["extension"]}
    assert extensions["consent-method"]["valueCode"] == "paper-scanned-by-practitioner"
    assert extensions["consent-recorder"]["valueReference"] == {"reference": "Practitioner/d1"}
    assert resource["performer"] == [{"reference": "Patient/p1"}]  # the patient consents


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("status",), None),  # required (1..1)
        (("scope",), None),  # required (1..1)
        (("category",), None),  # required (1..*)
        (("scope",), "treatment"),  # a CodeableConcept, not a string
        (("dateTime",), "yesterday"),
        (("provision", "period", "start"), "soon"),
        (("id",), "not an id!"),
        (("patient",), "Patient/p1"),  # a Reference, not a string
        (("secret",), "no such element"),
    ],
)
def test_an_invalid_consent_fails_validation(path: tuple[str, ...], value: object) -> None:
    resource = to_fhir_consent(record(Purpose.TELECONSULTATION))
    target = resource
    for key in path[:-1]:
        target = target[key]
    validate(resource)  # valid before the change
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(ValidationError):
        validate(resource)
