"""Erasure: after the retention period the keys are shredded at once; within it the record is
restricted and the erasure scheduled, and the job shreds it when it comes due."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    INS,
    NOW,
    PATIENT,
    SELF,
    TREAT,
    World,
    observation_json,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, RecordErased
from secretum.access.model import Action, Actor, Role
from secretum.crypto.errors import KeyShreddedError
from secretum.notices.store import NoticeKind, list_notices
from secretum.rights.erasure import add_years


def _record(world: World) -> tuple[str, str]:
    world.new_patient()
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    doc = world.documents.create_document(
        RequestContext(DOCTOR, TREAT, NOW),
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/pat-1"},
        },
        io.BytesIO(b"%PDF-1.5 ordonnance"),
        "application/pdf",
    )
    return obs.resource_id, doc.resource_id


def _assert_unreadable(world: World, obs_id: str, doc_id: str) -> None:
    store = world.records.repo.records
    with world.engine.connect() as conn:
        for record_id in store.ids_of_patient(conn, "pat-1"):
            with pytest.raises(KeyShreddedError):
                store.get(conn, record_id)
        with pytest.raises(KeyShreddedError):
            world.records.files.open(conn, doc_id)
    with pytest.raises(RecordErased) as gone:  # through the service: a typed 410
        world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Observation", obs_id)
    assert isinstance(gone.value, KeyShreddedError) and gone.value.status == 410
    assert world.records.find_patients(RequestContext(DOCTOR, TREAT, NOW), "ins", INS) == []


def _notices(world: World) -> list[NoticeKind]:
    with world.engine.connect() as conn:
        return [n.kind for n in list_notices(conn, "pat-1")]


def test_erasure_after_retention_shreds_at_once(world: World) -> None:
    obs_id, doc_id = _record(world)
    later = add_years(NOW, 20) + timedelta(days=1)
    outcome = world.rights.request_erasure(RequestContext(PATIENT, SELF, later), "pat-1")
    assert outcome.shredded and outcome.due_at == add_years(NOW, 20)
    assert world.keyring.is_shredded("pat-1")
    _assert_unreadable(world, obs_id, doc_id)
    shred = [r for r in world.audit_rows() if r["action"] == "D"]
    assert [(r["patient_id"], r["outcome"]) for r in shred] == [("pat-1", 0)]
    assert NoticeKind.ERASURE_DONE in _notices(world)
    assert not world.flags.is_restricted(None, "pat-1", later)  # type: ignore[arg-type]


def test_erasure_within_retention_restricts_and_schedules(world: World) -> None:
    obs_id, doc_id = _record(world)
    soon = NOW + timedelta(days=30)
    outcome = world.rights.request_erasure(RequestContext(PATIENT, SELF, soon), "pat-1")
    assert not outcome.shredded and outcome.due_at == add_years(NOW, 20)
    assert world.flags.is_restricted(None, "pat-1", soon)  # type: ignore[arg-type]
    assert not world.keyring.is_shredded("pat-1")
    assert _notices(world) == [NoticeKind.ERASURE_SCHEDULED]
    request = world.audit_rows()[-1]
    assert (request["action"], request["subtype"], request["patient_id"]) == (
        "E",
        "operation",
        "pat-1",
    )
    # still readable meanwhile (the policy decides who may, from the restriction flag)
    world.records.read(RequestContext(PATIENT, SELF, soon), "Observation", obs_id)

    early = world.rights.run_due_erasures(add_years(NOW, 20) - timedelta(seconds=1))
    assert early.shredded == [] and not world.keyring.is_shredded("pat-1")
    run = world.rights.run_due_erasures(add_years(NOW, 20))
    assert run.shredded == ["pat-1"] and run.failed == []
    _assert_unreadable(world, obs_id, doc_id)
    assert _notices(world)[0] is NoticeKind.ERASURE_DONE
    assert world.rights.run_due_erasures(add_years(NOW, 21)).shredded == []  # done once


def test_activity_during_retention_postpones_the_erasure(world: World) -> None:
    _record(world)
    world.rights.request_erasure(RequestContext(PATIENT, SELF, NOW), "pat-1")
    touched = NOW + timedelta(days=400)
    world.records.create(RequestContext(DOCTOR, TREAT, touched), observation_json())
    run = world.rights.run_due_erasures(add_years(NOW, 20))
    assert run.postponed == ["pat-1"] and not world.keyring.is_shredded("pat-1")
    assert world.rights.run_due_erasures(add_years(touched, 20)).shredded == ["pat-1"]


def test_denied_erasure_changes_nothing(world: World) -> None:
    _record(world)
    from secretum.access.guard import deny

    world.guard.rules = [deny(action=Action.ERASE)]
    with pytest.raises(AccessDenied):
        world.rights.request_erasure(RequestContext(DOCTOR, TREAT, add_years(NOW, 30)), "pat-1")
    assert not world.keyring.is_shredded("pat-1") and world.count("scheduled_erasures") == 0
    assert world.audit_rows()[-1]["outcome"] == 4


def test_add_years_handles_leap_day() -> None:
    from datetime import UTC, datetime

    assert add_years(datetime(2024, 2, 29, tzinfo=UTC), 20) == datetime(2044, 2, 29, tzinfo=UTC)
    assert add_years(datetime(2024, 2, 29, tzinfo=UTC), 1) == datetime(2025, 2, 28, tzinfo=UTC)


def test_a_patient_with_no_medical_record_is_erased_at_once(world: World) -> None:
    """Nothing to retain: no 20-year wait, nothing restricted, the erasure is done now."""
    nobody = Actor("pat-2", Role.PATIENT)
    outcome = world.rights.request_erasure(RequestContext(nobody, SELF, NOW), "pat-2")
    assert outcome.shredded and outcome.due_at == NOW
    assert not world.flags.is_restricted(None, "pat-2", NOW)  # type: ignore[arg-type]
    assert world.rights.run_due_erasures(NOW + timedelta(days=1)).shredded == []  # done once
