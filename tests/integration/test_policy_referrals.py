"""Referrals and appointments open care relationships, decided and audited (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from test_policy_care import DOC, OBS, PATIENT, T0, TC, consent_tc, may

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.audit.store import audit_entries, read_entries
from secretum.notices.store import NoticeKind, list_notices
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.policy.choices import APPOINTMENT_FOLLOW_UP, PatientChoices
from secretum.policy.guard import PolicyGuard
from secretum.policy.referrals import CareTeamService
from secretum.policy.tables import care_relationships

RADIOLOGIST = Actor("r1", Role.PRACTITIONER)
STRANGER = Actor("s1", Role.PRACTITIONER)


@pytest.fixture
def audit(engine: Engine, tmp_path: Path) -> AuditLog:
    return AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "w.log")


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        relationships = conn.execute(select(func.count()).select_from(care_relationships))
        entries = conn.execute(select(func.count()).select_from(audit_entries))
        return int(relationships.scalar_one()), int(entries.scalar_one())


def test_a_care_team_practitioner_refers_the_patient(engine: Engine, audit: AuditLog) -> None:
    team = CareTeamService(engine, audit, PolicyGuard())
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.INVITATION, now=T0)
    consent_tc(engine, audit)
    radiology = Actor("r1", Role.PRACTITIONER)
    reading = OBS
    assert may(engine, radiology, reading, T0 + timedelta(minutes=1)) == "deny.not-in-care-team"
    rid = team.refer(
        RequestContext(DOC, TC, T0 + timedelta(minutes=1)),
        patient_id="p1",
        practitioner_id="r1",
        until=T0 + timedelta(days=30),
    )
    later = T0 + timedelta(minutes=2)
    assert may(engine, radiology, reading, later) == "allow.care-team"
    assert may(engine, radiology, reading, T0 + timedelta(days=31)) == "deny.not-in-care-team"
    with engine.connect() as conn:
        [referral] = [r for r in care.relationships(conn, "p1") if r.relationship_id == rid]
        told = list_notices(conn, "p1")
        entries = list(read_entries(conn))
    assert referral.basis is CareBasis.REFERRAL and referral.source_id == "d1"
    assert [(n.kind, n.params["practitioner_id"]) for n in told] == [(NoticeKind.REFERRED, "r1")]
    last = entries[-1]
    assert (last["actor_id"], last["resource_type"], last["action"]) == ("d1", "CareTeam", "C")
    assert last["patient_id"] == "p1" and last["purpose"] == "TREAT"


@pytest.mark.parametrize(
    ("who", "purpose", "setup", "error"),
    [
        ("stranger", TC, "team+consent", AccessDenied),  # not in the care team
        ("doctor", TC, "team", AccessDenied),  # no consent for the purpose
        ("doctor", Purpose.RESEARCH, "team+consent", AccessDenied),  # consent for another one
        ("patient", TC, "team+consent", AccessDenied),  # patients invite, they do not refer
        ("doctor-self", TC, "team+consent", ValueError),  # to oneself
    ],
)
def test_refused_referrals_change_nothing(
    engine: Engine, audit: AuditLog, who: str, purpose: Purpose, setup: str, error: type
) -> None:
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=CareBasis.INVITATION, now=T0)
    if "consent" in setup:
        consent_tc(engine, audit)
    before = _counts(engine)
    actor = {"stranger": STRANGER, "patient": PATIENT}.get(who, DOC)
    to = "d1" if who == "doctor-self" else "r1"
    with pytest.raises(error):
        CareTeamService(engine, audit, PolicyGuard()).refer(
            RequestContext(actor, purpose, T0 + timedelta(minutes=1)),
            patient_id="p1",
            practitioner_id=to,
        )
    # nothing changed; the refused attempt is audited, once
    assert _counts(engine) == (before[0], before[1] + 1)


def test_a_patient_books_an_appointment(engine: Engine, audit: AuditLog) -> None:
    team = PatientChoices(engine, audit, PolicyGuard())
    at = T0 + timedelta(days=3)
    consent_tc(engine, audit)
    rid = team.book_appointment(
        RequestContext(PATIENT, Purpose.PATIENT_REQUEST, T0),
        patient_id="p1",
        practitioner_id="d1",
        at=at,
    )
    assert may(engine, DOC, OBS, T0 + timedelta(minutes=1)) == "allow.care-team"
    follow_up_end = at + APPOINTMENT_FOLLOW_UP
    assert may(engine, DOC, OBS, follow_up_end - timedelta(seconds=1)) == "allow.care-team"
    assert may(engine, DOC, OBS, follow_up_end) == "deny.not-in-care-team"
    with engine.connect() as conn:
        [booked] = [r for r in care.relationships(conn, "p1") if r.relationship_id == rid]
    assert booked.basis is CareBasis.APPOINTMENT and booked.ends_at == follow_up_end


@pytest.mark.parametrize(
    ("actor", "days"),
    [(PATIENT, -1), (PATIENT, 0), (PATIENT, 366), (Actor("p2", Role.PATIENT), 3), (DOC, 3)],
)
def test_refused_appointments_change_nothing(
    engine: Engine, audit: AuditLog, actor: Actor, days: int
) -> None:
    before = _counts(engine)
    with pytest.raises((AccessDenied, ValueError)):
        PatientChoices(engine, audit, PolicyGuard()).book_appointment(
            RequestContext(actor, Purpose.PATIENT_REQUEST, T0),
            patient_id="p1",
            practitioner_id="d1",
            at=T0 + timedelta(days=days),
        )
    # nothing changed; the refused attempt is audited, once
    assert _counts(engine) == (before[0], before[1] + 1)
