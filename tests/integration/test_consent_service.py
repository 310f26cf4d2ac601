"""Consent use cases on SQLite and PostgreSQL: evidence, history, withdrawal, audit, notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.R4B.consent import Consent
from sqlalchemy import select
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Action, Actor, Purpose, Resource, Role
from secretum.audit.log import AuditLog
from secretum.audit.store import read_entries
from secretum.consent import store
from secretum.consent.service import ConsentService, PaperForm
from secretum.consent.store import ConsentMethod, NoActiveConsent
from secretum.consent.tables import consent_withdrawals, consents
from secretum.consent.texts import UnknownText, default_texts
from secretum.notices.store import NoticeKind, list_notices
from secretum.policy import care
from secretum.policy.decide import decide
from secretum.policy.facts import load_facts
from secretum.policy.guard import PolicyGuard

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PATIENT = Actor("p1", Role.PATIENT)
DOC = Actor("d1", Role.PRACTITIONER)
TC = Purpose.TELECONSULTATION
OBS = Resource("Observation", patient_id="p1", resource_id="obs-1")
TEXTS = default_texts()


@pytest.fixture
def service(engine: Engine, tmp_path: Path) -> ConsentService:
    audit = AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "w.log")
    return ConsentService(engine, audit, PolicyGuard())


def as_(actor: Actor, at: datetime, address: str | None = None) -> RequestContext:
    return RequestContext(actor, Purpose.PATIENT_REQUEST, at, address)


def grant_tc(service: ConsentService, at: datetime, language: str = "fr") -> str:
    record = service.grant(
        as_(PATIENT, at, "192.0.2.10"),
        patient_id="p1",
        purpose=TC,
        text_sha256=TEXTS.current(TC, language).sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    return record.consent_id


def doctor_may_read(engine: Engine, at: datetime) -> bool:
    with engine.connect() as conn:
        facts = load_facts(conn, DOC, "p1", at)
        return decide(DOC, Action.READ, OBS, TC, at, facts).allowed


def test_grant_keeps_the_evidence(engine: Engine, service: ConsentService) -> None:
    text = TEXTS.current(TC, "fr")
    consent_id = grant_tc(service, T0)
    with engine.connect() as conn:
        record = store.get(conn, consent_id)
        entries = list(read_entries(conn, "p1"))
    assert record is not None
    assert (record.patient_id, record.purpose, record.grantee_id) == ("p1", TC, None)
    assert (record.text_sha256, record.text_version, record.language) == (text.sha256, 1, "fr")
    assert record.granted.method is ConsentMethod.WEB_CHECKBOX
    assert (record.granted.actor_id, record.granted.actor_role) == ("p1", "patient")
    assert record.granted.at == T0 and record.granted.source_address == "192.0.2.10"
    assert record.active(T0) and not record.active(T0 - timedelta(seconds=1))
    # one audit entry, ids and codes only
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["event_type"], entry["action"], entry["subtype"]) == ("110110", "C", "create")
    assert (entry["resource_type"], entry["resource_id"]) == ("Consent", consent_id)
    assert (entry["purpose"], entry["actor_id"]) == ("PATRQT", "p1")
    # the patient acted themselves: no notice
    with engine.connect() as conn:
        assert list_notices(conn, "p1") == []


def test_withdrawal_is_effective_on_the_very_next_request(
    engine: Engine, service: ConsentService
) -> None:
    grant_tc(service, T0)
    with engine.begin() as conn:
        care.start(
            conn, patient_id="p1", practitioner_id="d1", basis=care.CareBasis.APPOINTMENT, now=T0
        )
    assert doctor_may_read(engine, T0 + timedelta(minutes=1))
    withdraw_at = T0 + timedelta(minutes=2)
    withdrawn = service.withdraw(
        as_(PATIENT, withdraw_at), patient_id="p1", purpose=TC, method=ConsentMethod.WEB_CHECKBOX
    )
    assert len(withdrawn) == 1 and withdrawn[0].withdrawn is not None
    with engine.connect() as conn:
        assert TC not in load_facts(conn, DOC, "p1", withdraw_at).consents
    assert not doctor_may_read(engine, withdraw_at)
    assert doctor_may_read(engine, withdraw_at - timedelta(microseconds=1))  # as of before
    with pytest.raises(NoActiveConsent):
        service.withdraw(
            as_(PATIENT, withdraw_at + timedelta(seconds=1)),
            patient_id="p1",
            purpose=TC,
            method=ConsentMethod.WEB_CHECKBOX,
        )


def test_history_is_append_only_with_text_hashes(engine: Engine, service: ConsentService) -> None:
    first = grant_tc(service, T0, "fr")
    with engine.connect() as conn:
        before = conn.execute(select(consents).where(consents.c.consent_id == first)).one()
    service.withdraw(
        as_(PATIENT, T0 + timedelta(days=1)),
        patient_id="p1",
        purpose=TC,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    second = grant_tc(service, T0 + timedelta(days=2), "en")
    history = service.history(as_(PATIENT, T0 + timedelta(days=3)), "p1")
    with engine.begin() as conn:
        after = conn.execute(select(consents).where(consents.c.consent_id == first)).one()
        count = len(conn.execute(select(consents.c.consent_id)).all())
        wcount = len(conn.execute(select(consent_withdrawals.c.consent_id)).all())
    # the grant row never changed, but for its tag (re-tagged with the withdrawal time)
    assert before._mapping["row_mac"] != after._mapping["row_mac"]
    mac = consents.c.row_mac.name
    assert {k: v for k, v in before._mapping.items() if k != mac} == {
        k: v for k, v in after._mapping.items() if k != mac
    }
    assert (count, wcount) == (2, 1)
    assert [r.consent_id for r in history] == [first, second]
    assert history[0].text_sha256 == TEXTS.current(TC, "fr").sha256
    assert history[1].text_sha256 == TEXTS.current(TC, "en").sha256
    assert history[0].withdrawn is not None and history[1].withdrawn is None
    assert history[0].withdrawn.at == T0 + timedelta(days=1)


def test_granting_the_same_text_again_changes_nothing(
    engine: Engine, service: ConsentService
) -> None:
    first = grant_tc(service, T0)
    again = grant_tc(service, T0 + timedelta(hours=1))
    with engine.connect() as conn:
        entries = list(read_entries(conn, "p1"))
    # one consent; each attempt audited once (the second names the consent it found)
    assert first == again and len(entries) == 2
    assert {(e["resource_type"], e["resource_id"]) for e in entries} == {("Consent", first)}


def test_the_text_must_exist_and_match_the_purpose(engine: Engine, service: ConsentService) -> None:
    kwargs = dict(patient_id="p1", method=ConsentMethod.WEB_CHECKBOX)
    ctx = as_(PATIENT, T0)
    with pytest.raises(UnknownText):
        service.grant(ctx, purpose=TC, text_sha256="0" * 64, **kwargs)  # type: ignore[arg-type]
    research = TEXTS.current(Purpose.RESEARCH, "en").sha256
    with pytest.raises(ValueError, match="another purpose"):
        service.grant(ctx, purpose=TC, text_sha256=research, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs no consent"):
        service.grant(
            ctx,
            purpose=Purpose.PATIENT_REQUEST,
            text_sha256=research,
            **kwargs,  # type: ignore[arg-type]
        )


def test_sharing_counts_only_for_the_named_practitioner(
    engine: Engine, service: ConsentService
) -> None:
    sharing = TEXTS.current(Purpose.SHARING, "fr").sha256
    with pytest.raises(ValueError, match="names a practitioner"):
        service.grant(
            as_(PATIENT, T0),
            patient_id="p1",
            purpose=Purpose.SHARING,
            text_sha256=sharing,
            method=ConsentMethod.WEB_CHECKBOX,
        )
    record = service.grant(
        as_(PATIENT, T0),
        patient_id="p1",
        purpose=Purpose.SHARING,
        text_sha256=sharing,
        method=ConsentMethod.WEB_CHECKBOX,
        grantee_id="d1",
    )
    with engine.begin() as conn:
        for doc in ("d1", "d2"):
            care.start(
                conn, patient_id="p1", practitioner_id=doc, basis=care.CareBasis.REFERRAL, now=T0
            )
    assert record.grantee_id == "d1"
    at = T0 + timedelta(minutes=1)
    with engine.connect() as conn:
        for doc, expected in (("d1", True), ("d2", False)):
            actor = Actor(doc, Role.PRACTITIONER)
            facts = load_facts(conn, actor, "p1", at)
            assert (Purpose.SHARING in facts.consents) is expected
            assert decide(actor, Action.READ, OBS, Purpose.SHARING, at, facts).allowed is expected


def test_paper_consent_by_a_practitioner_needs_care_team_and_step_up_and_notifies(
    engine: Engine, service: ConsentService
) -> None:
    text = TEXTS.current(Purpose.TELERADIOLOGY, "fr").sha256
    stepped_up = Actor("d1", Role.PRACTITIONER, strong_auth_at=T0 - timedelta(minutes=1))
    paper = dict(
        patient_id="p1", purpose=Purpose.TELERADIOLOGY, text_sha256=text,
        method=ConsentMethod.PAPER_SCANNED, evidence_id="scan-1",
        paper_form=PaperForm(T0.date()),
    )  # fmt: skip
    with pytest.raises(AccessDenied) as denied:
        service.grant(as_(stepped_up, T0), **paper)  # type: ignore[arg-type]
    assert denied.value.decision.reason == "deny.not-in-care-team"
    with engine.begin() as conn:
        care.start(
            conn, patient_id="p1", practitioner_id="d1", basis=care.CareBasis.APPOINTMENT, now=T0
        )
    with pytest.raises(AccessDenied) as denied:
        service.grant(as_(DOC, T0), **paper)  # type: ignore[arg-type]
    assert denied.value.decision.requires == ("step-up",)
    with pytest.raises(ValueError, match="does not record"):  # a practitioner never "ticks"
        service.grant(as_(stepped_up, T0), **{**paper, "method": ConsentMethod.WEB_CHECKBOX})  # type: ignore[arg-type]
    record = service.grant(as_(stepped_up, T0), **paper)  # type: ignore[arg-type]
    with engine.connect() as conn:
        notices = list_notices(conn, "p1")
    assert record.granted.method is ConsentMethod.PAPER_SCANNED
    assert (record.granted.actor_id, record.granted.evidence_id) == ("d1", "scan-1")
    assert len(notices) == 1 and notices[0].kind is NoticeKind.CONSENT_CHANGED
    assert notices[0].params == {
        "actor_id": "d1", "consent_id": record.consent_id, "purpose": "teleradiology",
        "change": "granted",
    }  # fmt: skip


def test_others_cannot_touch_a_patients_consents(engine: Engine, service: ConsentService) -> None:
    text = TEXTS.current(TC, "fr").sha256
    for actor in (
        Actor("p2", Role.PATIENT, strong_auth_at=T0),
        Actor("a1", Role.ADMIN, strong_auth_at=T0),
        Actor("o1", Role.DPO, strong_auth_at=T0),
    ):
        method = ConsentMethod.WEB_CHECKBOX if actor.role is Role.PATIENT else None
        with pytest.raises((AccessDenied, ValueError, KeyError)):
            service.grant(
                as_(actor, T0),
                patient_id="p1",
                purpose=TC,
                text_sha256=text,
                method=method or ConsentMethod.PAPER_SCANNED,
            )
    with engine.connect() as conn:
        assert store.history(conn, "p1") == []


def test_fhir_view_validates_and_follows_withdrawal(
    engine: Engine, service: ConsentService
) -> None:
    consent_id = grant_tc(service, T0)
    active = service.fhir(as_(PATIENT, T0 + timedelta(minutes=1)), consent_id)
    service.withdraw(
        as_(PATIENT, T0 + timedelta(minutes=2)),
        patient_id="p1",
        purpose=TC,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    inactive = service.fhir(as_(PATIENT, T0 + timedelta(minutes=3)), consent_id)
    with pytest.raises(AccessDenied):
        service.fhir(as_(Actor("p2", Role.PATIENT), T0), consent_id)
    assert Consent.model_validate(active).status == "active"
    assert Consent.model_validate(inactive).status == "inactive"


def test_a_refused_grant_leaves_no_consent_and_one_failure_entry(
    engine: Engine, service: ConsentService
) -> None:
    """The door: a refused attempt changes nothing and is audited once, as a failure."""
    text = TEXTS.current(TC, "fr").sha256
    with pytest.raises(AccessDenied):
        service.grant(
            as_(Actor("p2", Role.PATIENT), T0),
            patient_id="p1",
            purpose=TC,
            text_sha256=text,
            method=ConsentMethod.WEB_CHECKBOX,
        )
    with engine.connect() as conn:
        assert store.history(conn, "p1") == []
        entries = list(read_entries(conn, "p1"))
    assert [(e["outcome"], e["actor_id"]) for e in entries] == [(4, "p2")]
