"""Care relationships, naming for restricted data, restriction of processing, and the facts the
policy reads from them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Action, Actor, Facts, Purpose, Resource, Role, Sensitivity
from secretum.audit.log import AuditLog
from secretum.audit.store import read_entries
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.policy.choices import PatientChoices
from secretum.policy.decide import decide
from secretum.policy.facts import load_facts
from secretum.policy.guard import PolicyGuard
from secretum.policy.restriction import is_restricted, restriction_history, set_restriction

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PATIENT = Actor("p1", Role.PATIENT)
DOC = Actor("d1", Role.PRACTITIONER)
TC = Purpose.TELECONSULTATION
OBS = Resource("Observation", patient_id="p1", resource_id="obs-1")
SECRET = Resource("Observation", "p1", "obs-2", Sensitivity.RESTRICTED)


@pytest.fixture
def audit(engine: Engine, tmp_path: Path) -> AuditLog:
    return AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "w.log")


def consent_tc(engine: Engine, audit: AuditLog) -> None:
    ConsentService(engine, audit, PolicyGuard()).grant(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, T0),
        patient_id="p1",
        purpose=TC,
        text_sha256=default_texts().current(TC, "en").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )


def may(engine: Engine, actor: Actor, resource: Resource, at: datetime) -> str:
    with engine.connect() as conn:
        facts = load_facts(conn, actor, resource.patient_id, at)
    return decide(actor, Action.READ, resource, TC, at, facts).reason


def test_care_relationship_start_until_and_end(engine: Engine) -> None:
    with engine.begin() as conn:
        appointment = care.start(
            conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.APPOINTMENT,
            now=T0, until=T0 + timedelta(days=7), source_id="appt-1",
        )  # fmt: skip
        referral = care.start(
            conn, patient_id="p1", practitioner_id="d2", basis=CareBasis.REFERRAL, now=T0
        )
    with engine.connect() as conn:
        assert not care.in_care_team(conn, "d1", "p1", T0 - timedelta(seconds=1))
        assert care.in_care_team(conn, "d1", "p1", T0)
        assert care.in_care_team(conn, "d1", "p1", T0 + timedelta(days=7) - timedelta(seconds=1))
        assert not care.in_care_team(conn, "d1", "p1", T0 + timedelta(days=7))  # planned end
        assert not care.in_care_team(conn, "d1", "p2", T0)  # another patient
        team = care.care_team(conn, "p1", T0 + timedelta(days=1))
    assert {(r.practitioner_id, r.basis) for r in team} == {
        ("d1", CareBasis.APPOINTMENT),
        ("d2", CareBasis.REFERRAL),
    }
    assert next(r for r in team if r.relationship_id == appointment).source_id == "appt-1"
    ended = T0 + timedelta(days=2)
    with engine.begin() as conn:
        assert care.end(conn, referral, ended, by="p1")
        assert not care.end(conn, referral, ended + timedelta(days=1))  # only once
    with engine.connect() as conn:
        assert care.in_care_team(conn, "d2", "p1", ended - timedelta(seconds=1))
        assert not care.in_care_team(conn, "d2", "p1", ended)
        history = care.relationships(conn, "p1")
    by_id = {r.relationship_id: r for r in history}
    assert len(history) == 2 and not by_id[referral].active(ended)
    assert by_id[appointment].active(ended) and by_id[referral].ended_at == ended


def test_ending_the_relationship_denies_the_next_read(engine: Engine, audit: AuditLog) -> None:
    consent_tc(engine, audit)
    with engine.begin() as conn:
        rel = care.start(
            conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.APPOINTMENT, now=T0
        )
    assert may(engine, DOC, OBS, T0 + timedelta(minutes=1)) == "allow.care-team"
    with engine.begin() as conn:
        care.end(conn, rel, T0 + timedelta(minutes=2))
    assert may(engine, DOC, OBS, T0 + timedelta(minutes=2)) == "deny.not-in-care-team"


def test_times_in_other_zones_compare_correctly(engine: Engine) -> None:
    paris = ZoneInfo("Europe/Paris")
    with engine.begin() as conn:
        care.start(
            conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.INVITATION,
            now=T0.astimezone(paris), until=(T0 + timedelta(hours=1)).astimezone(paris),
        )  # fmt: skip
    with engine.connect() as conn:
        assert care.in_care_team(conn, "d1", "p1", T0 + timedelta(minutes=59))
        assert not care.in_care_team(conn, "d1", "p1", (T0 + timedelta(hours=1)).astimezone(paris))
        with pytest.raises(ValueError, match="timezone-aware"):
            care.in_care_team(conn, "d1", "p1", T0.replace(tzinfo=None))


def test_restricted_data_needs_the_patients_naming_which_is_revocable(
    engine: Engine, audit: AuditLog
) -> None:
    choices = PatientChoices(engine, audit, PolicyGuard())
    consent_tc(engine, audit)
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.APPOINTMENT, now=T0)
    at = T0 + timedelta(minutes=1)
    assert may(engine, DOC, SECRET, at) == "deny.not-named-for-restricted"
    assert may(engine, DOC, OBS, at) == "allow.care-team"
    with pytest.raises(AccessDenied):  # a practitioner cannot name themselves
        choices.name_for_restricted(
            RequestContext(DOC, Purpose.PATIENT_REQUEST, at),
            patient_id="p1",
            practitioner_id="d1",
        )
    naming = choices.name_for_restricted(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, at),
        patient_id="p1",
        practitioner_id="d1",
    )
    again = choices.name_for_restricted(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, at),
        patient_id="p1",
        practitioner_id="d1",
    )
    with engine.connect() as conn:
        assert care.named_for_restricted(conn, "p1", at) == ["d1"]
    assert naming == again
    assert may(engine, DOC, SECRET, at) == "allow.care-team"
    revoked = at + timedelta(minutes=1)
    assert choices.revoke_named(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, revoked),
        patient_id="p1",
        practitioner_id="d1",
    )
    assert not choices.revoke_named(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, revoked),
        patient_id="p1",
        practitioner_id="d1",
    )
    assert may(engine, DOC, SECRET, revoked) == "deny.not-named-for-restricted"
    with engine.connect() as conn:
        kinds = [(e["action"], e["resource_type"]) for e in read_entries(conn, "p1")]
    assert ("C", "Consent") in kinds and ("U", "Patient") in kinds


def test_patient_invitation_opens_and_closes_the_care_team(engine: Engine, audit: AuditLog) -> None:
    choices = PatientChoices(engine, audit, PolicyGuard())
    consent_tc(engine, audit)
    rel = choices.invite(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, T0),
        patient_id="p1",
        practitioner_id="d1",
    )
    with pytest.raises(AccessDenied):
        choices.invite(
            RequestContext(DOC, Purpose.PATIENT_REQUEST, T0),
            patient_id="p1",
            practitioner_id="d1",
        )
    assert may(engine, DOC, OBS, T0) == "allow.care-team"
    assert not choices.end_relationship(
        RequestContext(Actor("p2", Role.PATIENT), Purpose.PATIENT_REQUEST, T0),
        patient_id="p2",
        relationship_id=rel,
    )  # not theirs
    assert choices.end_relationship(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, T0 + timedelta(hours=1)),
        patient_id="p1",
        relationship_id=rel,
    )
    assert may(engine, DOC, OBS, T0 + timedelta(hours=1)) == "deny.not-in-care-team"


def test_restriction_of_processing_blocks_others_not_the_patient(
    engine: Engine, audit: AuditLog
) -> None:
    choices = PatientChoices(engine, audit, PolicyGuard())
    consent_tc(engine, audit)
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.APPOINTMENT, now=T0)
    choices.set_restriction(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, T0 + timedelta(hours=1)),
        patient_id="p1",
        on=True,
    )
    before, during = T0 + timedelta(minutes=59), T0 + timedelta(hours=1)
    assert may(engine, DOC, OBS, before) == "allow.care-team"
    assert may(engine, DOC, OBS, during) == "deny.restricted-processing"
    with engine.connect() as conn:
        facts = load_facts(conn, PATIENT, "p1", during)
    assert facts.restricted_processing
    assert decide(PATIENT, Action.READ, OBS, Purpose.PATIENT_REQUEST, during, facts).allowed
    lifted = T0 + timedelta(hours=2)
    choices.set_restriction(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, lifted), patient_id="p1", on=False
    )
    with pytest.raises(AccessDenied):
        choices.set_restriction(
            RequestContext(DOC, Purpose.PATIENT_REQUEST, lifted), patient_id="p1", on=True
        )
    with engine.connect() as conn:
        history = restriction_history(conn, "p1")
    assert [(c.seq, c.restricted) for c in history] == [(1, True), (2, False)]
    assert may(engine, DOC, OBS, lifted) == "allow.care-team"


def test_restriction_state_is_read_as_of_now(engine: Engine) -> None:
    with engine.begin() as conn:
        set_restriction(conn, "p1", True, T0)
        set_restriction(conn, "p1", False, T0)  # same instant: the later change wins
        set_restriction(conn, "p1", True, T0 + timedelta(days=1))
    with engine.connect() as conn:
        assert not is_restricted(conn, "p1", T0 - timedelta(days=1))
        assert not is_restricted(conn, "p1", T0)
        assert is_restricted(conn, "p1", T0 + timedelta(days=1))
        assert not is_restricted(conn, "p2", T0 + timedelta(days=1))


def test_facts_for_roles_and_unscoped_resources(engine: Engine, audit: AuditLog) -> None:
    consent_tc(engine, audit)
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.APPOINTMENT, now=T0)
        care.name_for_restricted(conn, "p1", "d1", T0)
    at = T0 + timedelta(seconds=1)
    with engine.connect() as conn:
        doc = load_facts(conn, DOC, "p1", at)
        other_doc = load_facts(conn, Actor("d9", Role.PRACTITIONER), "p1", at)
        admin = load_facts(conn, Actor("d1", Role.ADMIN), "p1", at)  # same id, other role
        nothing = load_facts(conn, DOC, None, at)
    assert doc == Facts(frozenset({TC}), True, True, False, False)
    assert other_doc == Facts(frozenset({TC}))
    assert admin == Facts(frozenset({TC}))  # an admin is never "in the care team"
    assert nothing == Facts()
