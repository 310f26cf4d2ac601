"""The join decision and the re-check on SQLite and PostgreSQL: the real policy guard, audit,
consents and care relationships of the agenda's clinic (tests/agenda_world.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from agenda_world import NO_CONSENT, PARIS, T0, Clinic, Directory, build_clinic
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Purpose, Role
from secretum.agenda import store
from secretum.agenda.model import Modality
from secretum.audit.store import read_entries
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consult.model import ConsultSettings, EndReason
from secretum.consult.model import Role as CallRole
from secretum.consult.service import ConsultService
from secretum.policy.choices import open_appointment_relationship
from secretum.policy.guard import PolicyGuard

NOW = T0 + timedelta(days=1)  # Tuesday 08:00 in Paris


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path) -> Clinic:
    return build_clinic(engine, tmp_path, publish=False)


@pytest.fixture
def consult(clinic: Clinic) -> ConsultService:
    names = {"d1": "Docteur D1", "d2": "Docteur D2", "p1": "Patient P1", NO_CONSENT: "NC"}
    return ConsultService(
        clinic.engine, clinic.audit, PolicyGuard(), contacts=Directory(names),
        settings=ConsultSettings(),
    )  # fmt: skip


def book(clinic: Clinic, patient: str, doctor: str, minutes_ahead: int = 5) -> str:
    aid = store.new_id()
    start = NOW + timedelta(minutes=minutes_ahead)
    with clinic.engine.begin() as conn:
        rel = open_appointment_relationship(
            conn, patient_id=patient, practitioner_id=doctor, at=start, now=NOW - timedelta(days=1),
            source_id=aid,
        )  # fmt: skip
        store.insert_appointment(
            conn, appointment_id=aid, practitioner_id=doctor, patient_id=patient, start=start,
            end=start + timedelta(minutes=30), modality=Modality.VIDEO, purpose="teleconsultation",
            relationship_id=rel, now=NOW - timedelta(days=1),
        )  # fmt: skip
    return aid


def ctx(user: str, role: Role) -> RequestContext:
    return RequestContext(Actor(user, role), Purpose.TELECONSULTATION, NOW)


def audit_of(clinic: Clinic, aid: str) -> list[dict[str, object]]:
    with clinic.engine.connect() as conn:
        return [e for e in read_entries(conn) if e["resource_id"] == aid]


def test_join_is_one_decision_one_entry_and_the_recheck_follows_consent(
    clinic: Clinic, consult: ConsultService
) -> None:
    aid = book(clinic, "p1", "d1")
    patient = consult.join(ctx("p1", Role.PATIENT), aid)
    assert patient.role is CallRole.PATIENT and patient.other_name == "Docteur D1"
    doctor = consult.join(ctx("d1", Role.PRACTITIONER), aid)
    assert doctor.role is CallRole.PRACTITIONER and doctor.name == "Docteur D1"
    assert doctor.start.astimezone(PARIS).hour == 8
    refusals = {
        ("p2", Role.PATIENT): "deny.not-own-record",
        ("d2", Role.PRACTITIONER): "deny.not-in-care-team",
    }
    for (user, role), reason in refusals.items():
        with pytest.raises(AccessDenied) as refused:
            consult.join(ctx(user, role), aid)
        assert refused.value.reason == reason
    entries = audit_of(clinic, aid)
    assert [(e["actor_id"], e["outcome"], e["outcome_desc"]) for e in entries] == [
        ("p1", 0, None),
        ("d1", 0, None),
        ("p2", 4, "deny.not-own-record"),
        ("d2", 4, "deny.not-in-care-team"),
    ]
    # during the call: the same questions, no entry
    assert consult.still_allowed(Actor("p1", Role.PATIENT), aid, NOW) is None
    assert len(audit_of(clinic, aid)) == 4
    ConsentService(clinic.engine, clinic.audit, PolicyGuard()).withdraw(
        RequestContext(Actor("p1", Role.PATIENT), Purpose.PATIENT_REQUEST, NOW),
        patient_id="p1", purpose=Purpose.TELECONSULTATION, method=ConsentMethod.WEB_CHECKBOX,
    )  # fmt: skip
    later = NOW + timedelta(seconds=1)
    for actor in (Actor("p1", Role.PATIENT), Actor("d1", Role.PRACTITIONER)):
        assert consult.still_allowed(actor, aid, later) is EndReason.CONSENT_WITHDRAWN
    consult.leave(ctx("p1", Role.PATIENT), patient, EndReason.CONSENT_WITHDRAWN, later)
    assert audit_of(clinic, aid)[-1]["outcome_desc"] == "call.consent-withdrawn.1s"


def test_window_and_consent_are_checked_at_join(clinic: Clinic, consult: ConsultService) -> None:
    early = book(clinic, "p1", "d1", minutes_ahead=11)
    with pytest.raises(AccessDenied) as refused:
        consult.join(ctx("p1", Role.PATIENT), early)
    assert refused.value.reason == "deny.outside-window"
    page = consult.page(ctx("p1", Role.PATIENT), early)  # the page shows it, "too early"
    assert page.window_open is False
    none = book(clinic, NO_CONSENT, "d1", minutes_ahead=3)
    for user, role in ((NO_CONSENT, Role.PATIENT), ("d1", Role.PRACTITIONER)):
        with pytest.raises(AccessDenied) as refused:
            consult.join(ctx(user, role), none)
        assert refused.value.reason == "deny.no-consent"
    past = NOW + timedelta(minutes=11 + 30 + 31)
    assert consult.still_allowed(Actor("p1", Role.PATIENT), early, past) is EndReason.TIME_OVER
