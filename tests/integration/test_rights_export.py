"""Export of the whole record: a Bundle that validates, and a streamed zip with the files."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from fhir.resources.R4B import get_fhir_model_class
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    NOW,
    PATIENT,
    SELF,
    TREAT,
    World,
    observation_json,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, StepUpRequired
from secretum.access.guard import Rule, deny
from secretum.access.model import Action, Decision, Sensitivity

PDF = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024 + 5)
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(4000)


def _doc(world: World, data: bytes, content_type: str) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/pat-1"},
    }
    stored = world.documents.create_document(
        RequestContext(DOCTOR, TREAT, NOW), body, io.BytesIO(data), content_type
    )
    return stored.resource_id


def test_export_bundle_validates_and_zip_holds_the_files(world: World) -> None:
    world.new_patient("pat-1")
    world.new_patient("pat-2", ins="2 99 99 99 999 999 99", email="other@example.org")
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-1"))
    world.records.create(
        RequestContext(DOCTOR, TREAT, NOW),
        observation_json("pat-1"),
        sensitivity=Sensitivity.RESTRICTED,
    )
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-2"))
    pdf_id, png_id = _doc(world, PDF, "application/pdf"), _doc(world, PNG, "image/png")

    export = world.rights.export(
        RequestContext(PATIENT, SELF, NOW), "pat-1", base_url="https://h.example/fhir"
    )
    bundle = export.bundle
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "searchset"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Observation") == 2 and kinds.count("DocumentReference") == 2
    assert kinds.count("Patient") == 1 and "AuditEvent" in kinds
    subjects = {
        e["resource"].get("subject", {}).get("reference")
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert subjects == {"Patient/pat-1"}
    audit = world.audit_rows()[-1]
    assert (audit["event_type"], audit["action"], audit["patient_id"]) == ("110106", "R", "pat-1")

    chunks = list(export.iter_zip(chunk_size=256 * 1024))
    assert len(chunks) > 4 and max(len(c) for c in chunks) < 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["bundle.json", f"files/{pdf_id}.pdf", f"files/{png_id}.png"]
        )
        assert archive.read(f"files/{pdf_id}.pdf") == PDF
        assert archive.read(f"files/{png_id}.png") == PNG
        inner = json.loads(archive.read("bundle.json"))
    get_fhir_model_class("Bundle").model_validate(inner)
    urls = {
        e["resource"]["content"][0]["attachment"]["url"]
        for e in inner["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    }
    assert urls == {f"files/{pdf_id}.pdf", f"files/{png_id}.png"}


def test_export_refused_or_needing_step_up(world: World) -> None:
    world.new_patient()
    world.guard.rules = [Rule(Decision(False, "deny.step-up", requires=("step-up",)))]
    with pytest.raises(AccessDenied) as caught:
        world.rights.export(RequestContext(PATIENT, SELF, NOW), "pat-1")
    assert caught.value.decision.requires == ("step-up",)
    world.guard.rules = [Rule(Decision(True, "allow.self", requires=("step-up",)))]
    with pytest.raises(StepUpRequired):
        world.rights.export(RequestContext(PATIENT, SELF, NOW), "pat-1")
    world.guard.rules = [deny(action=Action.EXPORT)]
    with pytest.raises(AccessDenied):
        world.rights.export(RequestContext(PATIENT, SELF, NOW), "pat-1")
    rows = world.audit_rows()[-3:]
    assert [(r["event_type"], r["outcome"]) for r in rows] == [("110106", 4)] * 3
