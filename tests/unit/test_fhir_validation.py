"""FHIR validation (fhir.resources R4B): valid resources pass, invalid ones get a typed 4xx error
whose OperationOutcome validates and never echoes the input."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from secretum.access.model import Sensitivity
from secretum.records.documents import CheckedUpload, FileLimits
from secretum.records.fhir import (
    FHIR_PACKAGE,
    FhirError,
    FileTooLarge,
    InvalidResource,
    NotSupported,
    UnprocessableResource,
    UnsupportedContentType,
    bundle,
    label_restricted,
    patient_of,
    sensitivity_of,
    validate,
)

SECRET = "Marguerite-Duras-HIV"

VALID: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Duras", "given": ["Marguerite"]}],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "184127510812345"}],
        "gender": "female",
        "birthDate": "1914-04-04",
    },
    {"resourceType": "Practitioner", "name": [{"family": "Curie"}]},
    {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 1.2, "unit": "g/L"},
    },
    {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": "application/pdf", "title": "CR"}}],
    },
    {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"code": "OPTIN"}]},
    },
]


def _observation(**changes: Any) -> dict[str, Any]:
    obs = dict(VALID[2])
    obs.update(changes)
    return {k: v for k, v in obs.items() if v is not None}


INVALID: list[tuple[object, type[FhirError]]] = [
    (b"{not json " + SECRET.encode(), InvalidResource),
    (json.dumps([SECRET]), InvalidResource),
    ({"id": SECRET}, InvalidResource),  # no resourceType
    ({"resourceType": SECRET}, NotSupported),
    ({"resourceType": "Medication", "id": SECRET}, NotSupported),
    (_observation(status=None), InvalidResource),  # required element missing
    (_observation(valueQuantity={"value": SECRET}), InvalidResource),
    (_observation(effectiveDateTime=SECRET), InvalidResource),
    (_observation(**{SECRET: "x"}), InvalidResource),  # unknown element named like data
    (_observation(status=SECRET), InvalidResource),  # outside the required value set
    ({**VALID[0], "birthDate": SECRET}, InvalidResource),
    ({**VALID[0], "name": [{"family": 12}], "text": {"div": SECRET}}, InvalidResource),
]


@pytest.mark.parametrize("resource", VALID, ids=[r["resourceType"] for r in VALID])
def test_valid_resources_pass(resource: dict[str, Any]) -> None:
    out = validate(json.dumps(resource).encode())
    assert out["resourceType"] == resource["resourceType"]
    get_fhir_model_class(out["resourceType"]).model_validate(out)
    assert validate(out) == out  # normal form is stable


@pytest.mark.parametrize(("data", "error"), INVALID)
def test_invalid_input_gets_outcome_without_echo(data: object, error: type[FhirError]) -> None:
    with pytest.raises(error) as caught:
        validate(data)  # type: ignore[arg-type]
    exc = caught.value
    assert 400 <= exc.status < 500
    outcome = exc.outcome
    get_fhir_model_class("OperationOutcome").model_validate(outcome)
    assert outcome["issue"][0]["severity"] == "error"
    text = json.dumps(outcome) + str(exc) + repr(exc)
    assert SECRET not in text and "Marguerite" not in text


def test_expected_type_is_enforced() -> None:
    with pytest.raises(InvalidResource, match="must be Patient"):
        validate(VALID[2], "Patient")


def test_module_is_r4b() -> None:
    assert FHIR_PACKAGE == "fhir.resources.R4B"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=6, max_size=40).filter(lambda s: s.strip() == s and "\\" not in s))
def test_no_value_is_ever_echoed(value: str) -> None:
    for field in ("birthDate", "gender"):
        try:
            validate({**VALID[0], field: value, value: value})
        except FhirError as exc:
            diagnostics = exc.outcome["issue"][0]["diagnostics"]
            assert value not in diagnostics
        else:  # pragma: no cover - an unknown element is always refused
            pytest.fail("accepted an unknown element")


def test_patient_reference_rules() -> None:
    assert patient_of(VALID[0]) == "p1"
    assert patient_of(VALID[1]) is None
    assert patient_of(VALID[2]) == "p1"
    for ref in ("Group/g1", f"Patient/{SECRET} x", "http://elsewhere/Patient/p1", None):
        obs = {**VALID[2], "subject": {"reference": ref}}
        with pytest.raises(UnprocessableResource) as caught:
            patient_of(obs)
        assert SECRET not in str(caught.value.outcome) and caught.value.status == 422


def test_sensitivity_label() -> None:
    assert sensitivity_of(VALID[2]) is Sensitivity.NORMAL
    labelled = {**VALID[2], "meta": {"security": [{"code": "R"}]}}
    assert sensitivity_of(labelled) is Sensitivity.RESTRICTED
    other = {**VALID[2], "meta": {"security": [{"system": "urn:x", "code": "R"}]}}
    assert sensitivity_of(other) is Sensitivity.NORMAL
    copy = json.loads(json.dumps(VALID[2]))
    label_restricted(copy)
    assert sensitivity_of(copy) is Sensitivity.RESTRICTED
    validate(copy)


def test_bundle_validates() -> None:
    resources = [validate({**r, "id": f"r{i}"}) for i, r in enumerate(VALID)]
    result = bundle(resources, "searchset", base_url="https://example.org/fhir")
    assert result["total"] == len(VALID)
    get_fhir_model_class("Bundle").model_validate(result)
    assert result["entry"][0]["fullUrl"] == "https://example.org/fhir/Patient/r0"


# -- uploads --------------------------------------------------------------------------------------

PDF = b"%PDF-1.7\n" + b"x" * 300
DICOM = b"\0" * 128 + b"DICM" + b"\x02\x00" * 50


def _drain(upload: CheckedUpload) -> bytes:
    out = b""
    while chunk := upload.read(7):
        out += chunk
    return out


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/pdf", PDF),
        ("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 10),
        ("image/jpeg", b"\xff\xd8\xff\xe0" + b"\0" * 200),
        ("application/dicom", DICOM),
        ("text/plain", "compte rendu: état stable ✓".encode()),
    ],
)
def test_upload_accepts_matching_content(content_type: str, data: bytes) -> None:
    upload = CheckedUpload(io.BytesIO(data), content_type, 10_000)
    assert _drain(upload) == data and upload.size == len(data)
    assert len(upload.attachment_hash()) == 28  # base64 of 20 bytes


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/pdf", b"MZ\x90\x00" + b"\0" * 300),
        ("image/png", PDF),
        ("application/dicom", b"\0" * 200),
        ("text/plain", b"hello\0world"),
        ("text/plain", b"\xff\xfe\xfa" + b"a" * 200),
    ],
)
def test_upload_refuses_content_that_does_not_match(content_type: str, data: bytes) -> None:
    with pytest.raises(UnsupportedContentType) as caught:
        _drain(CheckedUpload(io.BytesIO(data), content_type, 10_000))
    assert caught.value.status == 415


def test_upload_size_limit_and_empty_file() -> None:
    with pytest.raises(FileTooLarge) as caught:
        _drain(CheckedUpload(io.BytesIO(PDF), "application/pdf", 100))
    assert caught.value.status == 413
    _drain(CheckedUpload(io.BytesIO(PDF), "application/pdf", len(PDF)))
    with pytest.raises(InvalidResource):
        _drain(CheckedUpload(io.BytesIO(b""), "text/plain", 100))


def test_content_type_setting() -> None:
    limits = FileLimits()
    assert limits.max_bytes == 50 * 1024 * 1024
    assert limits.content_type("Text/Plain; charset=utf-8") == "text/plain"
    for bad in ("application/x-msdownload", "", "text/html"):
        with pytest.raises(UnsupportedContentType):
            limits.content_type(bad)
    pdf_only = FileLimits(content_types=frozenset({"application/pdf"}))
    with pytest.raises(UnsupportedContentType):
        pdf_only.content_type("image/png")
