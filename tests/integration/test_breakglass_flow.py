"""Break-the-glass on SQLite and PostgreSQL: step-up, grant, expiry, notice, audit, DPO review,
and a reason that never reaches the database in clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Action, Actor, Decision, Purpose, Resource, Role
from secretum.audit.log import AuditLog
from secretum.audit.store import read_entries
from secretum.crypto.kms.fake import FakeKMS
from secretum.keys.keyring import KeyRing
from secretum.notices.store import NoticeKind, list_notices
from secretum.policy.breakglass import (
    AlreadyReviewed,
    BreakGlassService,
    ReviewOutcome,
    pending_reviews,
)
from secretum.policy.decide import decide
from secretum.policy.facts import load_facts
from secretum.policy.grants import grants_of_patient
from secretum.policy.guard import PolicyGuard
from secretum.policy.restriction import set_restriction
from secretum.policy.tables import break_glass_grants
from secretum.storage.db import metadata

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
DOC = Actor("d1", Role.PRACTITIONER, strong_auth_at=T0 - timedelta(minutes=2))
DPO = Actor("o1", Role.DPO)
PATIENT = Actor("p1", Role.PATIENT)
OBS = Resource("Observation", patient_id="p1", resource_id="obs-1")
REASON = "Patient inconscient aux urgences, allergies inconnues - marqueur 7f3a9c"


@pytest.fixture
def glass(engine: Engine, vault_engine: Engine, tmp_path: Path) -> BreakGlassService:
    audit = AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "w.log")
    return BreakGlassService(engine, KeyRing(vault_engine, FakeKMS()), audit, PolicyGuard())


def read_as(engine: Engine, actor: Actor, at: datetime, action: Action = Action.READ) -> Decision:
    with engine.connect() as conn:
        facts = load_facts(conn, actor, "p1", at)
    return decide(actor, action, OBS, Purpose.EMERGENCY, at, facts)


def declare(engine: Engine, glass: BreakGlassService, **kwargs: object) -> str:
    grant = glass.declare(
        RequestContext(DOC, Purpose.EMERGENCY, T0, "192.0.2.5"), "p1", REASON, **kwargs
    )  # type: ignore[arg-type]
    return grant.grant_id


def test_declaration_needs_a_fresh_step_up_and_writes_nothing_otherwise(
    engine: Engine, glass: BreakGlassService
) -> None:
    for actor in (
        Actor("d1", Role.PRACTITIONER),
        Actor("d1", Role.PRACTITIONER, strong_auth_at=T0 - timedelta(minutes=6)),
    ):
        with pytest.raises(AccessDenied) as denied:
            glass.declare(RequestContext(actor, Purpose.EMERGENCY, T0), "p1", REASON)
        assert denied.value.decision.requires == ("step-up",)
    for actor in (
        Actor("a1", Role.ADMIN, strong_auth_at=T0),
        Actor("p2", Role.PATIENT, strong_auth_at=T0),
    ):
        with pytest.raises(AccessDenied):
            glass.declare(RequestContext(actor, Purpose.EMERGENCY, T0), "p1", REASON)
    with pytest.raises(ValueError, match="reason"):
        glass.declare(RequestContext(DOC, Purpose.EMERGENCY, T0), "p1", "   ")
    with engine.connect() as conn:
        assert grants_of_patient(conn, "p1") == []
        entries = list(read_entries(conn, "p1"))
        assert list_notices(conn, "p1") == []
    # nothing written but the audit of each refused attempt: once each, a minor failure
    assert [(e["outcome"], e["subtype"]) for e in entries] == [(4, "110127")] * 5
    assert not read_as(engine, DOC, T0)


def test_grant_gives_read_only_access_for_one_hour(
    engine: Engine, glass: BreakGlassService
) -> None:
    assert read_as(engine, DOC, T0).reason == "deny.no-break-glass"
    declare(engine, glass)
    during = read_as(engine, DOC, T0 + timedelta(minutes=59))
    assert during.allowed and during.break_glass and during.reason == "allow.break-glass"
    assert not read_as(engine, DOC, T0 + timedelta(minutes=30), Action.UPDATE)
    assert not read_as(engine, DOC, T0 + timedelta(minutes=30), Action.CREATE)
    assert not read_as(engine, Actor("d2", Role.PRACTITIONER), T0 + timedelta(minutes=1))
    assert not read_as(engine, DOC, T0 + timedelta(hours=1))  # expiry is exclusive
    expired = read_as(engine, DOC, T0 + timedelta(hours=1, seconds=1))
    assert not expired and expired.reason == "deny.no-break-glass"


def test_grant_notifies_the_patient_and_is_audited(
    engine: Engine, glass: BreakGlassService
) -> None:
    grant_id = declare(engine, glass)
    with engine.connect() as conn:
        notices = list_notices(conn, "p1")
        entries = list(read_entries(conn, "p1"))
    assert len(notices) == 1 and notices[0].kind is NoticeKind.BREAK_GLASS_ACCESS
    assert notices[0].params == {
        "actor_id": "d1",
        "grant_id": grant_id,
        "until": (T0 + timedelta(hours=1)).isoformat(),
    }
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["event_type"], entry["subtype"], entry["action"]) == ("110113", "110127", "E")
    assert (entry["purpose"], entry["actor_id"], entry["patient_id"]) == ("ETREAT", "d1", "p1")
    assert entry["source_address"] == "192.0.2.5"


def test_the_reason_is_sealed_never_in_clear(engine: Engine, glass: BreakGlassService) -> None:
    grant_id = declare(engine, glass)
    needle = "7f3a9c"
    with engine.connect() as conn:
        sealed = conn.execute(select(break_glass_grants.c.reason_sealed)).scalar_one()
        assert needle.encode() not in sealed and REASON.encode() not in sealed
        for table in metadata.sorted_tables:  # no column of any table holds it
            for row in conn.execute(select(table)).all():
                assert needle not in repr(row)
        if engine.dialect.name == "postgresql":
            dump = conn.execute(
                text(
                    "SELECT string_agg(encode(reason_sealed, 'escape'), '') FROM break_glass_grants"
                )
            ).scalar_one()
            assert needle not in dump
    if engine.dialect.name == "sqlite":
        database = Path(engine.url.database or "")
        for path in (database, Path(f"{database}-wal")):
            if path.exists():
                assert needle.encode() not in path.read_bytes()
    # the DPO reviewing it can open it (audited)
    if True:
        assert (
            glass.read_reason(
                RequestContext(DPO, Purpose.OPERATIONS, T0 + timedelta(days=1)), grant_id
            )
            == REASON
        )
        assert (
            glass.read_reason(
                RequestContext(PATIENT, Purpose.OPERATIONS, T0 + timedelta(days=1)), grant_id
            )
            == REASON
        )
        for other in (
            Actor("d2", Role.PRACTITIONER, strong_auth_at=T0),
            Actor("a1", Role.ADMIN, strong_auth_at=T0),
            Actor("p2", Role.PATIENT),
        ):
            with pytest.raises(AccessDenied):
                glass.read_reason(
                    RequestContext(other, Purpose.OPERATIONS, T0 + timedelta(days=1)), grant_id
                )
    with engine.connect() as conn:
        reads = [e for e in read_entries(conn, "p1") if e["action"] == "R" and e["outcome"] == 0]
    assert [(e["actor_id"], e["purpose"]) for e in reads] == [("o1", "HOPERAT"), ("p1", "PATRQT")]


def test_dpo_review_list(engine: Engine, glass: BreakGlassService) -> None:
    first = declare(engine, glass)
    second = glass.declare(
        RequestContext(DOC, Purpose.EMERGENCY, T0 + timedelta(minutes=1)), "p2", REASON
    ).grant_id
    with engine.connect() as conn:
        assert [g.grant_id for g in pending_reviews(conn)] == [first, second]
    if True:
        with pytest.raises(AccessDenied):
            glass.review(
                RequestContext(Actor("a1", Role.ADMIN, strong_auth_at=T0), Purpose.OPERATIONS, T0),
                first,
                ReviewOutcome.JUSTIFIED,
            )
        with pytest.raises(AccessDenied):
            glass.review(
                RequestContext(DOC, Purpose.OPERATIONS, T0), first, ReviewOutcome.JUSTIFIED
            )
        reviewed = glass.review(
            RequestContext(DPO, Purpose.OPERATIONS, T0 + timedelta(days=1)),
            first,
            ReviewOutcome.JUSTIFIED,
        )
    with engine.connect() as conn:
        assert [g.grant_id for g in pending_reviews(conn)] == [second]
    assert reviewed.review is not None
    assert (reviewed.review.reviewer_id, reviewed.review.outcome) == ("o1", ReviewOutcome.JUSTIFIED)
    with engine.connect() as conn:
        audit = [e for e in read_entries(conn, "p1") if e["actor_id"] == "o1" and not e["outcome"]]
    assert [(e["event_type"], e["action"], e["purpose"]) for e in audit] == [
        ("110113", "U", "HOPERAT")
    ]
    with pytest.raises(AlreadyReviewed):  # reviewed once
        glass.review(
            RequestContext(DPO, Purpose.OPERATIONS, T0 + timedelta(days=2)),
            first,
            ReviewOutcome.UNJUSTIFIED,
        )


def test_stop_early_and_close_expired(engine: Engine, glass: BreakGlassService) -> None:
    grant_id = declare(engine, glass)
    glass.declare(RequestContext(DOC, Purpose.EMERGENCY, T0), "p2", REASON)
    with pytest.raises(AccessDenied):
        glass.stop(
            RequestContext(
                Actor("d2", Role.PRACTITIONER), Purpose.EMERGENCY, T0 + timedelta(minutes=5)
            ),
            grant_id,
        )
    assert glass.stop(RequestContext(DOC, Purpose.EMERGENCY, T0 + timedelta(minutes=10)), grant_id)
    assert not glass.stop(
        RequestContext(DOC, Purpose.EMERGENCY, T0 + timedelta(minutes=11)), grant_id
    )
    assert not read_as(engine, DOC, T0 + timedelta(minutes=10))
    assert read_as(engine, DOC, T0 + timedelta(minutes=9)).break_glass
    with engine.begin() as conn:
        assert glass.close_expired(conn, T0 + timedelta(minutes=30)) == 0  # p2's still runs
        assert glass.close_expired(conn, T0 + timedelta(hours=2)) == 1
        assert glass.close_expired(conn, T0 + timedelta(hours=3)) == 0
        stops = [
            (e["patient_id"], e["actor_id"])
            for p in ("p1", "p2")
            for e in read_entries(conn, p)
            if e["subtype"] == "110138" and e["outcome"] == 0
        ]
    # every attempt audited once: the stop, the second stop (nothing left to close), the duty's
    assert stops == [("p1", "d1"), ("p1", "d1"), ("p2", "secretum")]


def test_duration_is_a_parameter_with_a_cap(
    engine: Engine, vault_engine: Engine, glass: BreakGlassService
) -> None:
    declare(engine, glass, duration=timedelta(minutes=15))
    assert read_as(engine, DOC, T0 + timedelta(minutes=14)).allowed
    assert not read_as(engine, DOC, T0 + timedelta(minutes=15, seconds=1)).allowed
    with pytest.raises(ValueError, match="12 hours"):
        glass.declare(
            RequestContext(DOC, Purpose.EMERGENCY, T0), "p1", REASON, duration=timedelta(days=2)
        )
    with pytest.raises(ValueError):
        BreakGlassService(engine, glass.keyring, glass.audit, PolicyGuard(), duration=timedelta(0))


def test_restricted_processing_blocks_break_glass(engine: Engine, glass: BreakGlassService) -> None:
    declare(engine, glass)
    with engine.begin() as conn:
        set_restriction(conn, "p1", True, T0 + timedelta(minutes=5))
    with pytest.raises(AccessDenied) as denied:
        glass.declare(
            RequestContext(DOC, Purpose.EMERGENCY, T0 + timedelta(minutes=6)), "p1", REASON
        )
    assert denied.value.decision.reason == "deny.restricted-processing"
    assert read_as(engine, DOC, T0 + timedelta(minutes=6)).reason == "deny.restricted-processing"
