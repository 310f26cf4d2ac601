"""DocumentReference files: streamed in encrypted, read back; refused uploads leave nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import Any

import pytest
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    NOW,
    TREAT,
    World,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.guard import allow, deny
from secretum.access.model import Action, Sensitivity
from secretum.records.documents import DocumentService, FileLimits
from secretum.records.fhir import (
    FileTooLarge,
    InvalidResource,
    ResourceNotFound,
    UnsupportedContentType,
)

PDF = b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024) + b"\nconclusion: tumeur-benigne-secrete\n%%EOF"


def docref(pid: str = "pat-1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "description": "compte rendu IRM",
        "content": [{"attachment": {"title": "IRM.pdf", "url": "http://evil/", "size": 1}}],
        **extra,
    }


def test_round_trip_through_the_streaming_encryption(world: World) -> None:
    world.new_patient()
    doc = world.documents.create_document(
        RequestContext(DOCTOR, TREAT, NOW), docref(), io.BytesIO(PDF), "application/pdf"
    )
    attachment = doc.resource["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["size"] == len(PDF) and attachment["title"] == "IRM.pdf"
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF).digest()).decode()
    assert attachment["url"] == f"urn:secretum:file:{doc.resource_id}:1"
    (blob,) = world.blobs()
    assert b"tumeur-benigne-secrete" not in blob.read_bytes()
    with world.documents.open_document(
        RequestContext(DOCTOR, TREAT, NOW), doc.resource_id
    ) as content:
        assert (content.content_type, content.size, content.extension) == (
            "application/pdf",
            len(PDF),
            "pdf",
        )
        assert content.reader.read() == PDF
    row = world.audit_rows()[-1]
    assert (row["subtype"], row["resource_type"], row["resource_id"], row["patient_id"]) == (
        "read",
        "DocumentReference",
        doc.resource_id,
        "pat-1",
    )
    # metadata update keeps the file, whatever the client sends as attachment
    body = {**doc.resource, "description": "corrigé"}
    body["content"] = [{"attachment": {"url": "http://evil/", "size": 3, "title": "new"}}]
    updated = world.records.update(
        RequestContext(DOCTOR, TREAT, NOW), "DocumentReference", doc.resource_id, body
    )
    kept = updated.resource["content"][0]["attachment"]
    assert (kept["url"], kept["size"], kept["title"]) == (attachment["url"], len(PDF), "new")
    with world.documents.open_document(
        RequestContext(DOCTOR, TREAT, NOW), doc.resource_id
    ) as content:
        assert content.reader.read(9) == PDF[:9]


def _nothing_stored(world: World) -> None:
    assert world.blobs() == []
    assert world.count("encrypted_files") == 0
    assert world.count("fhir_resources") == 1  # the Patient only


def test_oversize_file_is_refused_and_leaves_nothing(world: World) -> None:
    world.new_patient()
    small = DocumentService(world.records, FileLimits(max_bytes=1024 * 1024))
    with pytest.raises(FileTooLarge) as caught:
        small.create_document(
            RequestContext(DOCTOR, TREAT, NOW), docref(), io.BytesIO(PDF), "application/pdf"
        )
    assert caught.value.status == 413
    _nothing_stored(world)
    assert world.audit_rows()[-1]["outcome"] == 4


def test_wrong_content_type_is_refused_and_leaves_nothing(world: World) -> None:
    world.new_patient()
    with pytest.raises(UnsupportedContentType):
        world.documents.create_document(
            RequestContext(DOCTOR, TREAT, NOW),
            docref(),
            io.BytesIO(PDF),
            "application/x-msdownload",
        )
    with pytest.raises(UnsupportedContentType):  # declared PNG, is a PDF
        world.documents.create_document(
            RequestContext(DOCTOR, TREAT, NOW), docref(), io.BytesIO(PDF), "image/png"
        )
    _nothing_stored(world)


def test_invalid_reference_or_denied_upload_leaves_nothing(world: World) -> None:
    world.new_patient()
    with pytest.raises(InvalidResource):
        world.documents.create_document(
            RequestContext(DOCTOR, TREAT, NOW),
            docref(status="lost"),
            io.BytesIO(PDF),
            "application/pdf",
        )
    world.guard.rules = [deny(action=Action.CREATE)]
    with pytest.raises(AccessDenied):
        world.documents.create_document(
            RequestContext(DOCTOR, TREAT, NOW), docref(), io.BytesIO(PDF), "application/pdf"
        )
    _nothing_stored(world)


def test_restricted_document_needs_the_guard(world: World) -> None:
    world.new_patient()
    doc = world.documents.create_document(
        RequestContext(DOCTOR, TREAT, NOW),
        docref(),
        io.BytesIO(b"resultat VIH"),
        "text/plain",
        sensitivity=Sensitivity.RESTRICTED,
    )
    world.guard.rules = [deny(sensitivity=Sensitivity.RESTRICTED), allow()]
    with pytest.raises(AccessDenied):
        world.documents.open_document(RequestContext(DOCTOR, TREAT, NOW), doc.resource_id)
    with pytest.raises(ResourceNotFound):
        world.documents.open_document(RequestContext(DOCTOR, TREAT, NOW), "no-such-doc")
