"""The DPO's oversight use cases (secretum.policy.oversight) on SQLite and PostgreSQL: the
verifications kept, browsing the entries with filters and a cursor, each call decided (only a
DPO) and audited (DCM 110101)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.browse import EntryFilter
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.audit.store import audit_entries
from secretum.policy.guard import PolicyGuard
from secretum.rights.oversight import InvalidQuery, OversightService

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
DPO = Actor("dpo-1", Role.DPO)


def _ctx(who: Actor, now: datetime) -> RequestContext:
    return RequestContext(who, Purpose.OPERATIONS, now)


@pytest.fixture
def oversight(engine: Engine) -> OversightService:
    key = Ed25519PrivateKey.generate()
    log = AuditLog(engine, signing_key=key)
    for i in range(30):  # 3 patients, 2 practitioners, every 5th refused, one a day
        log.append_committed(
            AuditEvent(
                recorded=T0 + timedelta(days=i),
                event_type=EventType.PATIENT_RECORD,
                action=EventAction.READ,
                actor_id=f"pr-{i % 2}",
                actor_role="practitioner",
                subtype="read",
                resource_type="Observation",
                resource_id=f"obs-{i}",
                patient_id=f"pat-{i % 3}",
                purpose="TREAT",
                outcome=4 if i % 5 == 0 else 0,
            )
        )
    return OversightService(engine, log, PolicyGuard(), key.public_key())


def test_browse_filters_pages_and_is_audited(oversight: OversightService, engine: Engine) -> None:
    now = T0 + timedelta(days=40)
    wanted = EntryFilter(patient_id="pat-1", actor_id="pr-1")
    page = oversight.browse(_ctx(DPO, now), wanted, limit=2)
    assert [e.resource_id for e in page.entries] == ["obs-25", "obs-19"]
    assert all(e.patient_id == "pat-1" and e.actor_id == "pr-1" for e in page.entries)
    rest = oversight.browse(_ctx(DPO, now), wanted, limit=2, before=page.next_before)
    assert [e.resource_id for e in rest.entries] == ["obs-13", "obs-7"]
    last = oversight.browse(_ctx(DPO, now), wanted, limit=2, before=rest.next_before)
    assert [e.resource_id for e in last.entries] == ["obs-1"] and last.next_before is None
    refused = oversight.browse(_ctx(DPO, now), EntryFilter(outcome=4), limit=50)
    assert {e.resource_id for e in refused.entries} == {f"obs-{i}" for i in range(0, 30, 5)}
    days = EntryFilter(since=T0 + timedelta(days=3), until=T0 + timedelta(days=5, hours=1))
    assert [e.resource_id for e in oversight.browse(_ctx(DPO, now), days).entries] == [
        "obs-5",
        "obs-4",
        "obs-3",
    ]
    kinds = oversight.browse(_ctx(DPO, now), EntryFilter(event_type=str(EventType.EXPORT)))
    assert kinds.entries == []
    with engine.connect() as conn:
        used = conn.execute(
            select(audit_entries.c.action, audit_entries.c.patient_id).where(
                audit_entries.c.event_type == "110101"
            )
        ).all()
    # every browse is on record, with the patient searched for when there is one
    assert sorted(map(tuple, used), key=str) == sorted(
        [("R", "pat-1")] * 3 + [("R", None)] * 3, key=str
    )


def test_verifications_are_kept_and_only_a_dpo_may_look(oversight: OversightService) -> None:
    now = T0 + timedelta(days=40)
    first = oversight.verify(_ctx(DPO, now))
    assert first.ok and first.entries_verified == 30 and first.actor_id == "dpo-1"
    second = oversight.verify(_ctx(DPO, now + timedelta(minutes=1)))
    history = oversight.verifications(_ctx(DPO, now + timedelta(minutes=2)))
    assert [v.id for v in history] == [second.id, first.id]
    assert history[0].entries_verified == 31  # the first verification's own entry
    for who in (Actor("pr-0", Role.PRACTITIONER), Actor("adm", Role.ADMIN)):
        with pytest.raises(AccessDenied):
            oversight.verify(_ctx(who, now))
        with pytest.raises(AccessDenied):
            oversight.browse(_ctx(who, now), EntryFilter())
        with pytest.raises(AccessDenied):
            oversight.verifications(_ctx(who, now))
        with pytest.raises(AccessDenied):
            oversight.reviews(_ctx(who, now))
    with pytest.raises(InvalidQuery):
        oversight.browse(_ctx(DPO, now), EntryFilter(), limit=0)
    with pytest.raises(InvalidQuery):
        oversight.browse(_ctx(DPO, now), EntryFilter(), before=-1)
