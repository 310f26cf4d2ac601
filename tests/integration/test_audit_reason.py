"""Deny reasons go to the audit, not to the client (issue 8): a refused attempt's entry holds
the policy's reason code in ``outcome_desc``, hashed with the rest of the entry, while the
client only ever gets the fixed "access denied". On SQLite and PostgreSQL (``world`` runs on
the ``engine`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text, update
from sqlalchemy.engine import Connection
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    NOW,
    SELF,
    TREAT,
    World,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.door import attempt
from secretum.access.errors import AccessDenied, Tampered
from secretum.access.model import Actor, Role
from secretum.audit.model import EventAction, EventType, Outcome
from secretum.audit.store import audit_entries
from secretum.audit.verify import Kind
from secretum.policy.guard import PolicyGuard
from secretum.records.service import RecordService
from secretum.storage.integrity import RowTampered
from web_world import WebWorld, clinic

ANY_KEY = Ed25519PrivateKey.generate().public_key()  # the world's log signs no checkpoint


def _policed(world: World) -> RecordService:
    repo = world.records.repo
    return RecordService(
        world.engine,
        repo.records,
        world.records.files,
        repo.blind_index,
        world.records.door.audit,
        PolicyGuard(),
    )


def _set_desc(world: World, seq: int, value: str | None) -> None:
    with world.engine.begin() as conn:
        conn.execute(
            update(audit_entries).where(audit_entries.c.seq == seq).values(outcome_desc=value)
        )


def test_a_refusal_audits_its_reason_and_tells_the_client_nothing(world: World) -> None:
    world.new_patient()  # seeded through the allow-all guard
    records = _policed(world)
    stranger = RequestContext(Actor("pat-2", Role.PATIENT), SELF, NOW)
    with pytest.raises(AccessDenied) as denied:
        records.read(stranger, "Patient", "pat-1")
    reason = denied.value.reason
    assert reason == "deny.not-own-record"
    assert str(denied.value) == "access denied" and reason not in str(denied.value)
    rows = world.audit_rows()
    refused = rows[-1]
    assert (refused["outcome"], refused["actor_id"]) == (Outcome.MINOR_FAILURE, "pat-2")
    assert refused["outcome_desc"] == reason
    assert all(r["outcome_desc"] is None for r in rows if r["outcome"] == Outcome.SUCCESS)
    log = world.records.door.audit
    exported = list(log.export_fhir())[-1]
    assert exported["outcomeDesc"] == reason and exported["outcome"] == "4"
    assert log.verify(ANY_KEY).ok


@pytest.mark.parametrize("forged", ["deny.default", None])
def test_a_rewritten_reason_is_found_by_verify(world: World, forged: str | None) -> None:
    """Changing (or blanking) a stored reason code breaks the entry's leaf hash."""
    world.new_patient()
    with pytest.raises(AccessDenied):
        _policed(world).read(RequestContext(DOCTOR, TREAT, NOW), "Patient", "pat-1")
    seq = world.audit_rows()[-1]["seq"]
    assert world.audit_rows()[-1]["outcome_desc"] is not None
    log = world.records.door.audit
    assert log.verify(ANY_KEY).ok
    _set_desc(world, seq, forged)
    report = log.verify(ANY_KEY)
    assert not report.ok and report.first is not None
    assert (report.first.kind, report.first.seq) == (Kind.MODIFIED, seq)


def test_a_reason_added_to_an_entry_without_one_is_found_by_verify(world: World) -> None:
    world.new_patient()
    log = world.records.door.audit
    assert log.verify(ANY_KEY).ok
    _set_desc(world, 0, "deny.no-consent")  # a success relabelled as a refusal's reason
    report = log.verify(ANY_KEY)
    assert report.first is not None and (report.first.kind, report.first.seq) == (
        Kind.MODIFIED,
        0,
    )


def test_tampering_is_audited_as_deny_tampered(world: World) -> None:
    world.new_patient()
    door = world.records.door
    before = len(world.audit_rows())
    ctx = RequestContext(DOCTOR, TREAT, NOW)
    tried = attempt(ctx, EventType.PATIENT_RECORD, "read", EventAction.READ)

    def work(conn: Connection) -> None:
        tried.target("Patient", "pat-1", "pat-1")
        raise RowTampered("fhir_resources", "pat-1")

    with pytest.raises(Tampered) as refused:
        door.run(tried, work)
    assert str(refused.value) == "access denied"
    entry, alert = world.audit_rows()[before:]
    assert (entry["outcome"], entry["outcome_desc"]) == (Outcome.MAJOR_FAILURE, "deny.tampered")
    assert (alert["event_type"], alert["outcome_desc"]) == (
        EventType.SECURITY_ALERT,
        "deny.tampered",
    )
    assert door.audit.verify(ANY_KEY).ok


def test_a_refused_fhir_read_keeps_the_reason_out_of_the_http_body(tmp_path: Path) -> None:
    """Over HTTP (SQLite): the body is the generic OperationOutcome; the audit entry and its
    FHIR export name the reason."""
    world: WebWorld = clinic(tmp_path)
    patient = world.client("own")
    refused = patient.get(f"/fhir/Observation/{world.ids['obs:other']}")
    assert refused.status_code == 403
    assert refused.json()["issue"][0] == {
        "severity": "error",
        "code": "forbidden",
        "diagnostics": "access denied",
    }
    assert "deny." not in refused.text and "not-own" not in refused.text
    with world.platform.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT actor_id, outcome, outcome_desc FROM audit_entries "
                "ORDER BY seq DESC LIMIT 1"
            )
        ).one()
    assert row[0] == world.users["own"].user_id and row[1] == Outcome.MINOR_FAILURE
    assert row[2] == "deny.not-own-record"
    other = world.users["other"].user_id  # the refused read was of the other patient's data
    entries = world.client("dpo").get("/fhir/AuditEvent", params={"patient": other})
    assert entries.status_code == 200, entries.text
    descs = [e["resource"].get("outcomeDesc") for e in entries.json()["entry"]]
    assert "deny.not-own-record" in descs
