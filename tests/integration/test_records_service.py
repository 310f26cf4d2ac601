"""FHIR record use cases end to end: create, read, update, history, search, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
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
    patient_json,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, StepUpRequired
from secretum.access.guard import Rule, allow, deny
from secretum.access.model import Action, Decision, Role, Sensitivity
from secretum.crypto.errors import IntegrityError
from secretum.records.fhir import (
    InvalidResource,
    NotSupported,
    ResourceNotFound,
    UnprocessableResource,
    VersionConflict,
)
from secretum.records.tables import sealed_records


def test_create_read_update_history(world: World) -> None:
    world.new_patient()
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    assert obs.version == 1 and obs.patient_id == "pat-1"
    assert obs.resource["meta"]["versionId"] == "1"
    assert obs.resource["meta"]["lastUpdated"] == "2026-03-01T09:30:00.000000Z"

    read = world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id)
    assert read.resource == obs.resource

    later = NOW + timedelta(hours=1)
    changed = {**read.resource, "status": "amended"}
    updated = world.records.update(
        RequestContext(DOCTOR, TREAT, later), "Observation", obs.resource_id, changed, if_match=1
    )
    assert updated.version == 2 and updated.resource["status"] == "amended"
    assert updated.resource["meta"]["lastUpdated"] == "2026-03-01T10:30:00.000000Z"

    history = world.records.history(
        RequestContext(DOCTOR, TREAT, later), "Observation", obs.resource_id
    )
    assert [h.version for h in history] == [2, 1]
    assert [h.resource["status"] for h in history] == ["amended", "final"]
    old = world.records.read(
        RequestContext(DOCTOR, TREAT, later), "Observation", obs.resource_id, version=1
    )
    assert old.resource["status"] == "final"
    with pytest.raises(ResourceNotFound):
        world.records.read(
            RequestContext(DOCTOR, TREAT, later), "Observation", obs.resource_id, version=3
        )


def test_search_by_patient_and_type(world: World) -> None:
    world.new_patient("pat-1")
    world.new_patient("pat-2", ins="2 99 99 99 999 999 99", email="other@example.org")
    a = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-1"))
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-2"))
    found = world.records.search(RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Observation")
    assert [r.resource_id for r in found] == [a.resource_id]
    everything = world.records.search(RequestContext(PATIENT, SELF, NOW), "pat-1")
    assert {r.resource_type for r in everything} == {"Patient", "Observation"}
    assert all(r.patient_id == "pat-1" for r in everything)
    with pytest.raises(NotSupported):
        world.records.search(RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Medication")


def test_update_rules(world: World) -> None:
    world.new_patient("pat-1")
    world.new_patient("pat-2", ins="2 99 99 99 999 999 99", email="other@example.org")
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    body = dict(obs.resource)
    with pytest.raises(VersionConflict) as stale:
        world.records.update(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id, body, if_match=7
        )
    assert stale.value.status == 412
    other = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    with pytest.raises(UnprocessableResource):  # the body's id is not the URL's
        world.records.update(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", other.resource_id, body
        )
    with pytest.raises(UnprocessableResource):
        moved = {**body, "subject": {"reference": "Patient/pat-2"}}
        world.records.update(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id, moved
        )
    with pytest.raises(InvalidResource):
        wrong = {**body, "resourceType": "Patient"}
        world.records.update(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id, wrong
        )
    with pytest.raises(ResourceNotFound):  # an Observation id is no Patient id
        world.records.update(RequestContext(DOCTOR, TREAT, NOW), "Patient", obs.resource_id, body)
    with pytest.raises(ResourceNotFound):
        world.records.update(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", "nope", {**body, "id": "nope"}
        )
    with pytest.raises(NotSupported):
        world.records.update(RequestContext(DOCTOR, TREAT, NOW), "AuditEvent", "audit-0", body)
    assert (
        world.records.read(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id
        ).version
        == 1
    )


def test_subject_must_be_an_existing_patient_of_the_request(world: World) -> None:
    world.new_patient("pat-1")
    with pytest.raises(UnprocessableResource) as missing:
        world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json("ghost"))
    assert "ghost" not in str(missing.value.outcome)
    with pytest.raises(UnprocessableResource):
        world.records.create(
            RequestContext(DOCTOR, TREAT, NOW), observation_json("pat-1"), patient_id="pat-2"
        )
    no_subject = observation_json()
    del no_subject["subject"]
    with pytest.raises(UnprocessableResource):
        world.records.create(RequestContext(DOCTOR, TREAT, NOW), no_subject)
    assert world.count("fhir_resources") == 1


def test_invalid_input_changes_nothing_and_is_audited(world: World) -> None:
    world.new_patient()
    before = (world.count("sealed_records"), world.count("fhir_resources"))
    bad = observation_json(valueQuantity={"value": SECRETS[0]})
    bad[SECRETS[1]] = SECRETS[4]
    with pytest.raises(InvalidResource) as err:
        world.records.create(RequestContext(DOCTOR, TREAT, NOW), bad)
    assert err.value.status == 400
    assert SECRETS[0] not in str(err.value.outcome) and SECRETS[3] not in str(err.value.outcome)
    assert (world.count("sealed_records"), world.count("fhir_resources")) == before
    last = world.audit_rows()[-1]
    assert (last["subtype"], last["outcome"], last["actor_id"]) == ("create", 4, "doc-1")


def test_database_holds_no_clear_content(world: World) -> None:
    world.new_patient()
    world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    dump = world.database_text()
    for secret in (*SECRETS, INS, "1984-12-01"):
        assert secret.encode() not in dump, secret
    with world.engine.connect() as conn:
        sealed = [bytes(v) for v in conn.execute(select(sealed_records.c.sealed)).scalars()]
    assert sealed and not any(SECRETS[3].encode() in s for s in sealed)


def test_ciphertext_moved_to_another_record_is_refused(world: World) -> None:
    world.new_patient()
    a = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json(text_="a"))
    b = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json(text_="b"))
    with world.engine.begin() as conn:
        sealed_a = conn.execute(
            select(sealed_records.c.sealed).where(sealed_records.c.record_id == a.resource_id)
        ).scalar_one()
        conn.execute(
            update(sealed_records)
            .where(sealed_records.c.record_id == b.resource_id)
            .values(sealed=sealed_a)
        )
    with pytest.raises(IntegrityError):
        world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Observation", b.resource_id)
    assert world.audit_rows()[-1]["outcome"] == 8


def test_guard_deny_raises_audits_and_writes_nothing(world: World) -> None:
    world.new_patient()
    world.guard.rules = [deny("deny.no-consent", action=Action.CREATE)]
    before = (world.count("sealed_records"), world.count("fhir_resources"), len(world.blobs()))
    audit_before = len(world.audit_rows())
    with pytest.raises(AccessDenied) as denied:
        world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    assert denied.value.decision.reason == "deny.no-consent" and denied.value.status == 403
    assert (world.count("sealed_records"), world.count("fhir_resources"), len(world.blobs())) == (
        before
    )
    rows = world.audit_rows()
    assert len(rows) == audit_before + 1
    failure = rows[-1]
    assert failure["outcome"] == 4 and failure["patient_id"] == "pat-1"
    assert (failure["event_type"], failure["action"], failure["subtype"]) == (
        "110110",
        "C",
        "create",
    )


def test_step_up_is_surfaced(world: World) -> None:
    world.new_patient()
    world.guard.rules = [Rule(Decision(True, "allow.self", requires=("step-up",)))]
    with pytest.raises(StepUpRequired) as needed:
        world.records.read(RequestContext(PATIENT, SELF, NOW), "Patient", "pat-1")
    assert needed.value.decision.requires == ("step-up",)


def test_guard_is_asked_once_with_the_resource(world: World) -> None:
    world.new_patient()
    obs = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    world.guard.calls.clear()
    world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id)
    (call,) = world.guard.calls
    assert call.action is Action.READ and call.purpose is TREAT
    assert (call.resource.kind, call.resource.patient_id, call.resource.resource_id) == (
        "Observation",
        "pat-1",
        obs.resource_id,
    )
    row = world.audit_rows()[-1]
    assert (row["event_type"], row["subtype"], row["action"], row["purpose"]) == (
        "110110",
        "read",
        "R",
        "TREAT",
    )
    assert (row["resource_type"], row["resource_id"], row["outcome"]) == (
        "Observation",
        obs.resource_id,
        0,
    )


def test_restricted_resources_are_filtered_from_search(world: World) -> None:
    world.new_patient()
    normal = world.records.create(RequestContext(DOCTOR, TREAT, NOW), observation_json())
    labelled = observation_json(meta={"security": [{"code": "R"}]})
    secret = world.records.create(RequestContext(DOCTOR, TREAT, NOW), labelled)
    by_param = world.records.create(
        RequestContext(DOCTOR, TREAT, NOW), observation_json(), sensitivity=Sensitivity.RESTRICTED
    )
    assert secret.sensitivity is by_param.sensitivity is Sensitivity.RESTRICTED
    assert by_param.resource["meta"]["security"][0]["code"] == "R"

    world.guard.rules = [deny(sensitivity=Sensitivity.RESTRICTED), allow()]
    seen = world.records.search(RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Observation")
    assert [r.resource_id for r in seen] == [normal.resource_id]
    with pytest.raises(AccessDenied):
        world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Observation", secret.resource_id)
    # an update cannot lower the label
    world.guard.rules = [allow()]
    body = {**secret.resource, "meta": {}}
    kept = world.records.update(
        RequestContext(DOCTOR, TREAT, NOW), "Observation", secret.resource_id, body
    )
    assert kept.sensitivity is Sensitivity.RESTRICTED
    allowed = world.records.search(RequestContext(DOCTOR, TREAT, NOW), "pat-1", "Observation")
    assert len(allowed) == 3


def test_break_glass_access_is_marked_etreat(world: World) -> None:
    world.new_patient()
    world.guard.rules = [Rule(Decision(True, "allow.break-glass", break_glass=True))]
    world.records.read(RequestContext(DOCTOR, TREAT, NOW), "Patient", "pat-1")
    assert world.audit_rows()[-1]["purpose"] == "ETREAT"


def test_lookup_by_ins_and_email_through_the_blind_index(world: World) -> None:
    world.new_patient()
    (found,) = world.records.find_patients(
        RequestContext(DOCTOR, TREAT, NOW), "ins", "184127510812345"
    )
    assert found.resource_id == "pat-1"
    assert world.records.find_patients(
        RequestContext(DOCTOR, TREAT, NOW), "email", "MARGUERITE@example.org"
    )
    assert (
        world.records.find_patients(
            RequestContext(DOCTOR, TREAT, NOW), "ins", "2 00 00 00 000 000 00"
        )
        == []
    )
    # a second holder of the INS is accepted, indexed, and raised as an identity alert
    world.new_patient("pat-2", email="x@example.org")
    alert = world.audit_rows()[-2]
    assert (alert["event_type"], alert["resource_id"], alert["patient_id"]) == (
        "110113",
        "pat-2",
        "pat-1",
    )
    both = world.records.find_patients(RequestContext(DOCTOR, TREAT, NOW), "ins", INS)
    assert sorted(r.resource_id for r in both) == ["pat-1", "pat-2"]
    # a changed INS is re-indexed
    body = patient_json()
    del body["identifier"]
    world.records.update(RequestContext(PATIENT, SELF, NOW), "Patient", "pat-1", body)
    (left,) = world.records.find_patients(RequestContext(DOCTOR, TREAT, NOW), "ins", INS)
    assert left.resource_id == "pat-2"
    world.guard.rules = [deny(patient_id="pat-1"), allow()]
    with pytest.raises(AccessDenied):
        world.records.find_patients(RequestContext(DOCTOR, TREAT, NOW), "email", SECRETS[2])


def test_practitioner_and_consent_resources(world: World) -> None:
    world.new_patient()
    doc = world.records.create(
        RequestContext(DOCTOR, TREAT, NOW),
        {"resourceType": "Practitioner", "name": [{"family": "Curie"}]},
        resource_id="doc-1",
    )
    assert doc.patient_id is None
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat-1"},
        "policyRule": {"coding": [{"code": "OPTIN"}]},
    }
    with pytest.raises(NotSupported):  # a consent is given through its use case, with evidence
        world.records.create(RequestContext(PATIENT, SELF, NOW), consent)
    assert world.count("sealed_records") == 2  # the patient and the practitioner only


def test_consents_are_read_only_fhir_from_the_consent_records(world: World) -> None:
    from secretum.access.model import Purpose
    from secretum.consent.service import ConsentService
    from secretum.consent.store import ConsentMethod
    from secretum.policy.guard import PolicyGuard

    world.new_patient()
    consents = ConsentService(world.records.door.engine, world.records.door.audit, PolicyGuard())
    text = consents.texts.current(Purpose.TELECONSULTATION, "fr").sha256
    given = consents.grant(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, NOW),
        patient_id="pat-1",
        purpose=Purpose.TELECONSULTATION,
        text_sha256=text,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    found = world.records.search(RequestContext(PATIENT, SELF, NOW), "pat-1", "Consent")
    assert [c.resource_id for c in found] == [given.consent_id]
    one = world.records.read(RequestContext(PATIENT, SELF, NOW), "Consent", given.consent_id)
    assert one.resource["status"] == "active" and one.version == 1
    consents.withdraw(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, NOW + timedelta(hours=1)),
        patient_id="pat-1",
        purpose=Purpose.TELECONSULTATION,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    after = world.records.read(RequestContext(PATIENT, SELF, NOW), "Consent", given.consent_id)
    assert after.resource["status"] == "inactive" and after.version == 2
    with pytest.raises(ResourceNotFound):
        world.records.read(RequestContext(PATIENT, SELF, NOW), "Consent", "f" * 32)
    with pytest.raises(NotSupported):
        world.records.update(
            RequestContext(PATIENT, SELF, NOW), "Consent", given.consent_id, one.resource
        )


def test_audit_events_are_read_only_fhir(world: World) -> None:
    world.new_patient()
    events = world.records.search(RequestContext(PATIENT, SELF, NOW), "pat-1", "AuditEvent")
    assert events and all(e.resource["resourceType"] == "AuditEvent" for e in events)
    one = world.records.read(
        RequestContext(PATIENT, SELF, NOW), "AuditEvent", events[0].resource_id
    )
    assert one.resource == events[0].resource
    with pytest.raises(NotSupported):
        world.records.create(RequestContext(PATIENT, SELF, NOW), {"resourceType": "AuditEvent"})
    with pytest.raises(ResourceNotFound):
        world.records.read(RequestContext(PATIENT, SELF, NOW), "AuditEvent", "audit-99999")


def test_roles_in_audit(world: World) -> None:
    world.new_patient()
    assert world.audit_rows()[-1]["actor_role"] == str(Role.PATIENT)
