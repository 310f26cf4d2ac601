"""The record and rights services behind the real policy (PolicyGuard: load_facts + decide) and
the real restriction flag (PolicyRestrictionFlags)."""

from __future__ import annotations

from datetime import timedelta

import pytest
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
from secretum.access.model import Actor, Role
from secretum.policy.guard import PolicyGuard
from secretum.records.service import RecordService
from secretum.rights import PolicyRestrictionFlags, RightsService


@pytest.fixture
def policed(world: World) -> tuple[RecordService, RightsService]:
    """Services on the same stores as ``world``, guarded by the real policy."""
    world.new_patient()  # seeded through the allow-all guard
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    repo = world.records.repo
    records = RecordService(
        world.engine,
        repo.records,
        world.records.files,
        repo.blind_index,
        world.records.door.audit,
        PolicyGuard(),
    )
    shredder = world.rights.erasures.shred
    rights = RightsService(
        records, care_team_of=lambda *_: [], flags=PolicyRestrictionFlags(), shred=shredder
    )
    return records, rights


def test_patient_reads_own_record_and_stranger_is_denied(
    world: World, policed: tuple[RecordService, RightsService]
) -> None:
    records, _ = policed
    (patient,) = records.search(RequestContext(PATIENT, SELF, NOW), "pat-1", "Patient")
    assert patient.resource_id == "pat-1"
    with pytest.raises(AccessDenied) as denied:
        records.search(
            RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Observation"
        )  # no care relationship
    assert denied.value.decision.reason.startswith("deny.")
    assert world.audit_rows()[-1]["outcome"] == 4
    with pytest.raises(AccessDenied):
        records.read(RequestContext(Actor("pat-2", Role.PATIENT), SELF, NOW), "Patient", "pat-1")


def test_export_needs_a_fresh_step_up(
    world: World, policed: tuple[RecordService, RightsService]
) -> None:
    _, rights = policed
    with pytest.raises(StepUpRequired) as needed:
        rights.export(RequestContext(PATIENT, SELF, NOW), "pat-1")
    assert needed.value.decision.requires == ("step-up",)
    fresh = Actor("pat-1", Role.PATIENT, strong_auth_at=NOW - timedelta(minutes=1))
    export = rights.export(RequestContext(fresh, SELF, NOW), "pat-1")
    assert export.bundle["total"] >= 2


def test_erasure_within_retention_sets_the_policy_restriction(
    world: World, policed: tuple[RecordService, RightsService]
) -> None:
    _, rights = policed
    fresh = Actor("pat-1", Role.PATIENT, strong_auth_at=NOW)
    outcome = rights.request_erasure(RequestContext(fresh, SELF, NOW), "pat-1")
    assert not outcome.shredded
    flags = PolicyRestrictionFlags()
    with world.engine.connect() as conn:
        assert flags.is_restricted(conn, "pat-1", NOW)
