"""Appending in the caller's transaction, concurrency, checkpoints, witness, proofs, export.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from secretum.audit import AuditEvent, AuditLog, EventAction, EventType
from secretum.audit.checkpoint import WitnessFile
from secretum.audit.merkle import root_from_leaf_hashes
from secretum.audit.store import audit_checkpoints, audit_entries

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def event(i: int, *, patient: str = "p-1", at: datetime | None = None) -> AuditEvent:
    return AuditEvent(
        recorded=at or T0 + timedelta(milliseconds=i),
        event_type=EventType.PATIENT_RECORD,
        action=EventAction.READ,
        actor_id=f"u-{i % 7}",
        actor_role="doctor",
        subtype="read",
        resource_type="Observation",
        resource_id=f"obs-{i}",
        patient_id=patient,
        purpose="TREAT",
        source_address="192.0.2.1",
    )


def make_log(engine: Engine, tmp_path: Path, **kwargs: object) -> AuditLog:
    kwargs.setdefault("checkpoint_every", 5)
    kwargs.setdefault("checkpoint_seconds", 3600)
    return AuditLog(engine, KEY, tmp_path / "witness.log", **kwargs)  # type: ignore[arg-type]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_entries)).scalar_one())


def witnessed(tmp_path: Path) -> list[int]:
    return [c.tree_size for c in WitnessFile(tmp_path / "witness.log").read().checkpoints]


def test_committed_appends_are_visible_and_numbered(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    seqs = []
    for i in range(3):
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))  # the action's own work
            seqs.append(log.append(conn, event(i)))
    assert seqs == [0, 1, 2]
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entries).order_by(audit_entries.c.seq)).all()
    assert [r.seq for r in rows] == [0, 1, 2]
    assert rows[1].resource_id == "obs-1" and rows[1].recorded == "2025-03-01T08:00:00.001000Z"
    assert log.verify(KEY.public_key()).ok


def test_append_rolls_back_with_its_transaction(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=1)
    with engine.begin() as conn:
        log.append(conn, event(0))
    with pytest.raises(RuntimeError, match="action failed"), engine.begin() as conn:
        log.append(conn, event(1))
        raise RuntimeError("action failed")
    assert count(engine) == 1
    with engine.begin() as conn:  # the process' cached head is stale now: the append recovers
        assert log.append(conn, event(2)) == 1
    assert count(engine) == 2
    log.tick(T0)
    assert witnessed(tmp_path) == [1, 2]  # the rolled back checkpoint never reached the witness
    report = log.verify(KEY.public_key())
    assert report.ok and report.entries_verified == 2 and report.checkpoints_verified == 2


def test_session_commit_writes_the_witness_at_once(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=2)
    with Session(engine) as session:
        log.append(session, event(0))
        log.append(session, event(1))
        assert witnessed(tmp_path) == []  # not committed yet
        session.commit()
    assert witnessed(tmp_path) == [2]
    with Session(engine) as session:
        log.append(session, event(2))
        log.append(session, event(3))
        session.rollback()
    assert count(engine) == 2 and witnessed(tmp_path) == [2]


def test_connection_without_explicit_begin_uses_autobegin(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    with engine.connect() as conn:
        log.append(conn, event(0))
        conn.rollback()
        log.append(conn, event(1))
        conn.commit()
    assert count(engine) == 1


def test_concurrent_appenders_make_a_gapless_valid_log(engine: Engine, tmp_path: Path) -> None:
    """Several writers, each with its own AuditLog (as several servers would have) and its
    own connections: the head row serialises them."""
    writers, per_writer = 4, 25
    logs = [make_log(engine, tmp_path, checkpoint_every=10) for _ in range(writers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def work(w: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with engine.begin() as conn:
                    logs[w].append(conn, event(w * 1000 + i))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = writers * per_writer
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)).scalars()
        assert list(seqs) == list(range(total))
        cps = conn.execute(select(audit_checkpoints.c.tree_size)).scalars().all()
    assert sorted(cps) == list(range(10, total + 1, 10))
    logs[0].flush_witness()
    report = logs[0].verify(KEY.public_key())
    assert report.ok, report.findings
    assert report.entries_verified == total and report.checkpoints_verified == len(cps)


def test_checkpoints_every_n_entries_and_every_t_seconds(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=100, checkpoint_seconds=60)
    times = [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=61)]
    for i, at in enumerate(times):
        with engine.begin() as conn:
            log.append(conn, event(i, at=at))
    log.flush_witness()
    assert witnessed(tmp_path) == [3]  # 61 s after the first entry
    with engine.begin() as conn:
        log.append(conn, event(3, at=T0 + timedelta(seconds=70)))
    assert log.tick(T0 + timedelta(seconds=100)) is None  # only 39 s since the last one
    cp = log.tick(T0 + timedelta(seconds=122))
    assert cp is not None and cp.tree_size == 4 and cp.timestamp_ms % 1000 == 0
    assert witnessed(tmp_path) == [3, 4]
    assert log.checkpoint(T0 + timedelta(seconds=200)) is None  # nothing new to sign
    assert log.verify(KEY.public_key()).checkpoints_verified == 2


def test_append_many_is_one_batch(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=1000)
    with engine.begin() as conn:
        assert log.append_many(conn, [event(i) for i in range(50)]) == range(50)
    with engine.begin() as conn:
        assert log.append(conn, event(50)) == 50
    assert log.verify(KEY.public_key()).ok


def test_inclusion_and_consistency_proofs(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=4)
    with engine.begin() as conn:
        for i in range(11):
            log.append(conn, event(i))
    with engine.connect() as conn:
        leaves = [bytes(h) for h in conn.execute(select(audit_entries.c.leaf_hash)).scalars()]
    size, root = log.tree_head()
    assert size == 11 and root == root_from_leaf_hashes(leaves)
    proof = log.inclusion_proof(5)
    assert proof.tree_size == 8  # the last checkpoint that covers entry 5
    assert proof.verify() and proof.leaf_hash == leaves[5]
    assert log.inclusion_proof(10, 11).verify()
    consistency = log.consistency_proof(4, 11)
    assert consistency.verify() and consistency.second_hash == root
    with pytest.raises(ValueError):
        log.inclusion_proof(11, 11)
    with pytest.raises(LookupError):
        log.consistency_proof(4, 12)


def test_fhir_export_validates(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    with engine.begin() as conn:
        for i in range(6):
            log.append(conn, event(i, patient="p-1" if i % 2 else "p-2"))
    exported = list(log.export_fhir(patient_id="p-1"))
    assert [r["id"] for r in exported] == ["audit-1", "audit-3", "audit-5"]
    for resource in exported:
        FhirAuditEvent.model_validate(resource)
        assert resource["entity"][0]["what"]["reference"] == "Patient/p-1"
    assert len(list(log.export_fhir())) == 6
