"""Rectification requests (sealed Task, notices to the care team) and restriction."""

from __future__ import annotations

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
from secretum.access.errors import AccessDenied
from secretum.access.guard import allow, deny
from secretum.access.model import Action, Sensitivity
from secretum.notices.store import NoticeKind, list_notices
from secretum.records.fhir import InvalidResource, UnprocessableResource

TEXT = "Ma glycémie du 3 mars est fausse: 0,9 et non 1,2"


def test_rectification_is_sealed_and_notifies_the_care_team(world: World) -> None:
    world.new_patient()
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    world.care_team["pat-1"] = ["doc-1", "doc-2", "doc-1"]
    task = world.rights.request_rectification(
        RequestContext(PATIENT, SELF, NOW), "pat-1", TEXT, about=("Observation", obs.resource_id)
    )
    assert task.resource_type == "Task" and task.patient_id == "pat-1"
    assert task.resource["description"] == TEXT
    assert task.resource["focus"] == {"reference": f"Observation/{obs.resource_id}"}
    assert TEXT.encode() not in world.database_text()
    with world.engine.connect() as conn:
        for doctor in ("doc-1", "doc-2"):
            (notice,) = list_notices(conn, doctor)
            assert notice.kind is NoticeKind.RECTIFICATION_REQUESTED
            assert notice.params == {"patient_id": "pat-1", "task_id": task.resource_id}
    # the care team reads it through the guarded services
    (found,) = world.records.search(RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Task")
    assert found.resource["description"] == TEXT
    row = world.audit_rows()[-2]
    assert (row["subtype"], row["resource_type"], row["resource_id"]) == (
        "create",
        "Task",
        task.resource_id,
    )


def test_rectification_rules(world: World) -> None:
    world.new_patient()
    world.new_patient("pat-2", ins="2 99 99 99 999 999 99", email="other@example.org")
    other = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-2"))
    with pytest.raises(InvalidResource):
        world.rights.request_rectification(RequestContext(PATIENT, SELF, NOW), "pat-1", "   ")
    with pytest.raises(UnprocessableResource):
        world.rights.request_rectification(
            RequestContext(PATIENT, SELF, NOW),
            "pat-1",
            TEXT,
            about=("Observation", other.resource_id),
        )
    world.guard.rules = [deny(action=Action.RECTIFY)]
    with pytest.raises(AccessDenied):
        world.rights.request_rectification(RequestContext(PATIENT, SELF, NOW), "pat-1", TEXT)
    assert world.count("notices") == 0
    assert world.count("fhir_resources") == 3


def test_rectification_of_restricted_data_is_restricted(world: World) -> None:
    world.new_patient()
    secret = world.records.create(
        RequestContext(DOCTOR, TREAT, NOW), observation_json(), sensitivity=Sensitivity.RESTRICTED
    )
    task = world.rights.request_rectification(
        RequestContext(PATIENT, SELF, NOW), "pat-1", TEXT, about=("Observation", secret.resource_id)
    )
    assert task.sensitivity is Sensitivity.RESTRICTED


def test_restriction_sets_the_flag_through_the_port(world: World) -> None:
    world.new_patient()
    world.rights.set_restriction(RequestContext(PATIENT, SELF, NOW), "pat-1")
    assert world.flags.is_restricted(None, "pat-1", NOW)  # type: ignore[arg-type]
    row = world.audit_rows()[-1]
    assert (row["action"], row["subtype"], row["patient_id"]) == ("U", "update", "pat-1")
    world.rights.set_restriction(RequestContext(PATIENT, SELF, NOW), "pat-1", restricted=False)
    assert not world.flags.is_restricted(None, "pat-1", NOW)  # type: ignore[arg-type]
    world.guard.rules = [deny(action=Action.RESTRICT), allow()]
    with pytest.raises(AccessDenied):
        world.rights.set_restriction(RequestContext(DOCTOR, TREAT, NOW), "pat-1")
    assert not world.flags.is_restricted(None, "pat-1", NOW)  # type: ignore[arg-type]
