"""Who opened my record: exactly the audited accesses of that patient, newest first, paginated;
reading the list is audited; and no audit entry holds health data."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    INS,
    NOW,
    PATIENT,
    SECRETS,
    SELF,
    TREAT,
    World,
    observation_json,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.guard import Rule, allow, deny
from secretum.access.model import Action, Actor, Decision, Purpose, Role
from secretum.records.fhir import InvalidResource

OTHER = Actor("pat-2", Role.PATIENT)


def _activity(world: World) -> None:
    world.new_patient("pat-1")
    world.new_patient("pat-2", ins="2 99 99 99 999 999 99", email="other@example.org")
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-1"))
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-2"))
    world.records.read(
        RequestContext(DOCTOR, TREAT, NOW + timedelta(minutes=1)), "Observation", obs.resource_id
    )
    world.guard.rules = [Rule(Decision(True, "allow.bg", break_glass=True), user_id="doc-9")]
    world.guard.rules.append(deny(user_id="doc-9"))
    world.guard.rules.append(allow())
    world.records.read(
        RequestContext(Actor("doc-9", Role.PRACTITIONER), Purpose.EMERGENCY, NOW),
        "Patient",
        "pat-1",
    )
    world.guard.rules = [deny(user_id="spy"), allow()]
    with pytest.raises(AccessDenied):
        world.records.read(
            RequestContext(Actor("spy", Role.PRACTITIONER), TREAT, NOW), "Patient", "pat-1"
        )
    world.guard.rules = [allow()]


def test_lists_exactly_the_patients_audited_accesses(world: World) -> None:
    _activity(world)
    expected = [r["seq"] for r in world.audit_rows() if r["patient_id"] == "pat-1"][::-1]
    page = world.rights.access_history(RequestContext(PATIENT, SELF, NOW), "pat-1", limit=200)
    assert [e.seq for e in page.entries] == expected and page.next_before is None
    assert {e.resource_id for e in page.entries} >= {"pat-1"}
    bg = [e for e in page.entries if e.actor_id == "doc-9"]
    assert len(bg) == 1 and bg[0].break_glass and bg[0].purpose == "ETREAT"
    spy = [e for e in page.entries if e.actor_id == "spy"]
    assert len(spy) == 1 and spy[0].outcome == 4 and not spy[0].break_glass
    doc_read = [e for e in page.entries if e.actor_id == "doc-1" and e.subtype == "read"]
    assert doc_read[0].recorded == NOW + timedelta(minutes=1)
    assert doc_read[0].actor_role == "practitioner" and doc_read[0].purpose == "TREAT"
    # nothing of pat-2
    others = {r["seq"] for r in world.audit_rows() if r["patient_id"] == "pat-2"}
    assert others and not others & {e.seq for e in page.entries}


def test_pagination_and_the_reading_is_audited(world: World) -> None:
    _activity(world)
    first = world.rights.access_history(RequestContext(PATIENT, SELF, NOW), "pat-1", limit=2)
    last = world.audit_rows()[-1]
    assert (last["event_type"], last["action"], last["patient_id"], last["actor_id"]) == (
        "110101",
        "R",
        "pat-1",
        "pat-1",
    )
    assert len(first.entries) == 2 and first.next_before == first.entries[-1].seq
    second = world.rights.access_history(
        RequestContext(PATIENT, SELF, NOW), "pat-1", limit=2, before=first.next_before
    )
    assert second.entries[0].seq < first.entries[-1].seq
    # each read of the list shows in the next one, newest first
    previous = world.audit_rows()[-1]
    again = world.rights.access_history(RequestContext(PATIENT, SELF, NOW), "pat-1", limit=1)
    assert again.entries[0].seq == previous["seq"] and again.entries[0].event_type == "110101"
    with pytest.raises(InvalidResource):
        world.rights.access_history(RequestContext(PATIENT, SELF, NOW), "pat-1", limit=0)


def test_another_patient_is_refused(world: World) -> None:
    _activity(world)
    world.guard.rules = [
        allow(action=Action.READ_ACCESS_LOG, user_id="pat-1", patient_id="pat-1"),
    ]
    with pytest.raises(AccessDenied):
        world.rights.access_history(RequestContext(OTHER, SELF, NOW), "pat-1")
    assert world.audit_rows()[-1]["outcome"] == 4


def test_no_health_data_in_any_audit_entry(world: World) -> None:
    _activity(world)
    world.documents.create_document(
        RequestContext(DOCTOR, TREAT, NOW),
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/pat-1"},
            "description": SECRETS[3],
        },
        io.BytesIO(SECRETS[3].encode()),
        "text/plain",
    )
    with pytest.raises(InvalidResource):
        world.records.create(
            RequestContext(DOCTOR, TREAT, NOW), observation_json(status=SECRETS[0])
        )
    world.records.find_patients(RequestContext(DOCTOR, TREAT, NOW), "ins", INS)
    world.rights.request_rectification(
        RequestContext(PATIENT, SELF, NOW), "pat-1", f"{SECRETS[0]} is wrong"
    )
    world.rights.export(RequestContext(PATIENT, SELF, NOW), "pat-1")
    world.rights.request_erasure(RequestContext(PATIENT, SELF, NOW), "pat-1")
    rows = world.audit_rows()
    assert len(rows) > 10
    for row in rows:
        flat = " ".join(str(v) for k, v in row.items() if k != "leaf_hash")
        for secret in (*SECRETS, INS, "1984-12-01", "is wrong"):
            assert secret not in flat, (secret, row["seq"])
