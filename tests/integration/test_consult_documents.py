"""A file shared in a call, saved into the patient's record by the practitioner
(``POST /consult/{id}/documents``): through the document service's streaming encryption, the
policy (care team, teleconsultation consent) and its one audit entry; nobody else may."""

from __future__ import annotations

from pathlib import Path

import pytest

from consult_world import book, call_world, entries
from secretum.access.context import RequestContext
from secretum.access.model import Purpose
from secretum.audit.model import Outcome
from secretum.consent.store import ConsentMethod
from web_world import WebWorld

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
def world(tmp_path: Path) -> WebWorld:
    return call_world(tmp_path)


def save(world: WebWorld, who: str, aid: str, body: bytes = PDF, name: str = "ordonnance.pdf",
         content_type: str = "application/pdf") -> object:  # fmt: skip
    with world.client(who) as tc:
        return tc.post(
            f"/consult/{aid}/documents",
            files={"file": (name, body, content_type)},
            data={"name": name},
        )


def blobs(world: WebWorld) -> set[Path]:
    return {p for p in world.platform.settings.blob_dir.rglob("*") if p.is_file()}


def document_entries(world: WebWorld) -> list[dict[str, object]]:
    return [e for e in entries(world) if e["resource_type"] == "DocumentReference"]


def test_the_practitioner_saves_a_shared_file_into_the_record(world: WebWorld) -> None:
    aid = book(world)
    before = len(entries(world))
    response = save(world, "gp", aid)
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    document_id = response.json()["document_id"]  # type: ignore[attr-defined]
    # One decision, one audit entry: the document's creation, for teleconsultation.
    new = entries(world)[before:]
    assert len(new) == 1, new
    (entry,) = new
    assert entry["resource_type"] == "DocumentReference" and entry["resource_id"] == document_id
    assert entry["actor_id"] == world.users["gp"].user_id
    assert entry["outcome"] == Outcome.SUCCESS and entry["purpose"] == "TREAT"
    assert "ordonnance" not in str(entry)  # no file name (health data) in the audit
    # Readable by the practitioner and by the patient, byte for byte.
    with world.client("gp") as tc:
        got = tc.get(f"/practice/documents/{document_id}", params={"purpose": "teleconsultation"})
        assert got.status_code == 200 and got.content == PDF
    with world.client("own") as tc:
        got = tc.get(f"/me/documents/{document_id}")
        assert got.status_code == 200 and got.content == PDF
    # Sealed at rest: the blob does not hold the clear bytes.
    assert all(PDF[:64] not in p.read_bytes() for p in blobs(world))


@pytest.mark.parametrize("who", ["own", "other", "radio"])
def test_only_the_appointments_practitioner_may_save(world: WebWorld, who: str) -> None:
    aid = book(world)
    before = len(entries(world))
    response = save(world, who, aid)
    assert response.status_code == 403  # type: ignore[attr-defined]
    new = entries(world)[before:]
    assert len(new) == 1, new
    assert new[0]["outcome_desc"] == "deny.not-participant"
    assert new[0]["resource_id"] == aid and new[0]["actor_id"] == world.users[who].user_id
    assert not document_entries(world)[before:]


def test_an_unknown_appointment_is_refused(world: WebWorld) -> None:
    response = save(world, "gp", "0" * 32)
    assert response.status_code == 403  # type: ignore[attr-defined]


def test_without_the_teleconsultation_consent_nothing_is_saved(world: WebWorld) -> None:
    aid = book(world)
    own = world.users["own"]
    world.services.consent.withdraw(
        RequestContext(own.actor, Purpose.PATIENT_REQUEST, world.clock.now),
        patient_id=own.user_id,
        purpose=Purpose.TELECONSULTATION,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    before, files = len(entries(world)), blobs(world)
    response = save(world, "gp", aid)
    assert response.status_code == 403  # type: ignore[attr-defined]
    new = entries(world)[before:]
    assert len(new) == 1 and new[0]["outcome_desc"] == "deny.no-consent", new
    assert new[0]["resource_type"] == "DocumentReference"
    assert blobs(world) == files  # nothing kept


def test_a_file_of_another_type_than_declared_is_refused(world: WebWorld) -> None:
    aid = book(world)
    response = save(world, "gp", aid, body=b"<html><script>1</script>", name="x.pdf")
    assert response.status_code == 415  # type: ignore[attr-defined]
    response = save(world, "gp", aid, body=PDF, name="x.html", content_type="text/html")
    assert response.status_code == 415  # type: ignore[attr-defined]


def test_without_the_csrf_token_the_save_is_refused(world: WebWorld) -> None:
    aid = book(world)
    before = len(entries(world))
    with world.client("gp") as tc:
        del tc.headers["x-csrf-token"]
        response = tc.post(
            f"/consult/{aid}/documents",
            files={"file": ("a.pdf", PDF, "application/pdf")},
        )
    assert response.status_code == 403
    assert not document_entries(world)[before:]
