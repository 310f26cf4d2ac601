"""verify() names the first tampered entry: each attack is done in SQL, as an intruder would.

The log: 20 entries, one per transaction, checkpoints signed at sizes 5, 10, 15 and 20; the
witness file holds a signed tree head per transaction (sizes 1 to 20, those at 5, 10, 15 and 20
being the checkpoints themselves).
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Engine

from secretum.audit import (
    AuditEvent,
    AuditLog,
    EventAction,
    EventType,
    Kind,
    VerifyReport,
    verify_log,
)
from secretum.audit.merkle import CompactRange
from secretum.audit.model import CANONICAL_FIELDS, LEAF_TEMPLATE
from secretum.audit.store import (
    ENTRY_COLUMNS,
    audit_checkpoints,
    audit_entries,
    audit_head,
    entry_row,
)
from secretum.audit.verify import _SCAN_SQL

KEY = Ed25519PrivateKey.generate()
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SIZE = 20


def event(i: int) -> AuditEvent:
    return AuditEvent(
        recorded=T0 + timedelta(seconds=i),
        event_type=EventType.PATIENT_RECORD,
        action=EventAction.READ,
        actor_id=f"u-{i}",
        actor_role="doctor",
        resource_type="DocumentReference",
        resource_id=f"doc-{i}",
        patient_id="p-1",
        purpose="TREAT",
    )


@pytest.fixture
def log(engine: Engine, tmp_path: Path) -> AuditLog:
    audit = AuditLog(engine, KEY, tmp_path / "witness.log", checkpoint_every=5)
    for i in range(SIZE):
        with engine.begin() as conn:
            audit.append(conn, event(i))
        audit.wait_witnessed()  # the action's answer waits for its head: one per transaction
    audit.flush_witness()
    return audit


def check(log: AuditLog) -> VerifyReport:
    return log.verify(KEY.public_key())


def sql(engine: Engine, *statements: object) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement) if isinstance(statement, str) else statement)  # type: ignore[arg-type]


def shift_up(engine: Engine, start: int, by: int = 1) -> None:
    """Renumber entries ``start..`` to ``start+by..`` (in two steps: seq is the primary key)."""
    sql(
        engine,
        f"UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= {start}",
        f"UPDATE audit_entries SET seq = seq - {1000 - by} WHERE seq >= 1000",
    )


def insert_row(engine: Engine, seq: int, ev: AuditEvent, leaf: bytes | None = None) -> None:
    real = hashlib.sha256(b"\x00" + ev.canonical(seq)).digest()
    row = dict(zip(ENTRY_COLUMNS, entry_row(seq, ev, leaf or real), strict=True))
    sql(engine, audit_entries.insert().values(**row))


def rehash_everything(engine: Engine) -> None:
    """The strong attacker: recompute every leaf hash and the head from the rows as they are."""
    with engine.begin() as conn:
        rows = conn.exec_driver_sql(_SCAN_SQL).all()
        crange = CompactRange()
        for row in rows:
            leaf = hashlib.sha256((LEAF_TEMPLATE % tuple(row[:-1])).encode()).digest()
            crange.append(leaf)
            seq = row[CANONICAL_FIELDS.index("seq")]
            conn.execute(
                update(audit_entries).where(audit_entries.c.seq == seq).values(leaf_hash=leaf)
            )
        conn.execute(
            update(audit_head).values(tree_size=crange.size, compact_range=crange.to_bytes())
        )


def assert_first(report: VerifyReport, kind: Kind, seq: int | None) -> None:
    assert not report.ok
    first = report.first
    assert first is not None, report
    assert (first.kind, first.seq) == (kind, seq), report.findings


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    report = check(log)
    assert report.ok, report.findings
    assert report.entries_verified == SIZE and report.checkpoints_verified == SIZE
    assert report.root_hash == log.tree_head()[1]


def test_modified_entry(engine: Engine, log: AuditLog) -> None:
    sql(engine, update(audit_entries).where(audit_entries.c.seq == 7).values(actor_id="u-99"))
    assert_first(check(log), Kind.MODIFIED, 7)


def test_modified_outcome(engine: Engine, log: AuditLog) -> None:
    sql(engine, update(audit_entries).where(audit_entries.c.seq == 3).values(outcome=8))
    assert_first(check(log), Kind.MODIFIED, 3)


def test_deleted_entry(engine: Engine, log: AuditLog) -> None:
    sql(engine, delete(audit_entries).where(audit_entries.c.seq == 7))
    assert_first(check(log), Kind.DELETED, 7)


def test_deleted_entry_with_later_ones_renumbered(engine: Engine, log: AuditLog) -> None:
    sql(
        engine,
        delete(audit_entries).where(audit_entries.c.seq == 7),
        "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 7",
        "UPDATE audit_entries SET seq = seq - 1001 WHERE seq >= 1000",
    )
    assert_first(check(log), Kind.DELETED, 7)


def test_inserted_entry_with_a_correct_hash(engine: Engine, log: AuditLog) -> None:
    shift_up(engine, 7)
    insert_row(engine, 7, event(500))
    assert_first(check(log), Kind.INSERTED, 7)


def test_inserted_entry_with_a_junk_hash(engine: Engine, log: AuditLog) -> None:
    shift_up(engine, 7)
    insert_row(engine, 7, event(500), leaf=bytes(32))
    assert_first(check(log), Kind.INSERTED, 7)


def test_replayed_copy_of_an_earlier_entry(engine: Engine, log: AuditLog) -> None:
    with engine.connect() as conn:
        original = conn.execute(select(audit_entries).where(audit_entries.c.seq == 2)).one()
    shift_up(engine, 7)
    sql(engine, audit_entries.insert().values(**{**original._asdict(), "seq": 7}))
    assert_first(check(log), Kind.INSERTED, 7)


def test_appended_past_the_head(engine: Engine, log: AuditLog) -> None:
    """Entries after the last checkpoint are covered by no signature yet, but they must follow
    the checkpoint policy: this one comes 481 s after the checkpoint at 20 (policy: 60 s), so
    its append would have signed a checkpoint, and none follows it."""
    insert_row(engine, SIZE, event(500))
    assert_first(check(log), Kind.INSERTED, SIZE)


def test_appended_past_the_head_beyond_the_policy_count(engine: Engine, log: AuditLog) -> None:
    """Five entries within the time window, but the log signs a checkpoint every 5 entries: the
    fifth after the checkpoint at 20 should have been followed by one."""
    for i in range(5):
        insert_row(engine, SIZE + i, event(SIZE + i))
    assert_first(check(log), Kind.INSERTED, SIZE + 4)
    assert verify_log(log.engine, KEY.public_key()).ok  # without the policy: only a note


def test_reordered_pair(engine: Engine, log: AuditLog) -> None:
    sql(
        engine,
        "UPDATE audit_entries SET seq = 1000 WHERE seq = 7",
        "UPDATE audit_entries SET seq = 7 WHERE seq = 8",
        "UPDATE audit_entries SET seq = 8 WHERE seq = 1000",
    )
    assert_first(check(log), Kind.REORDERED, 7)


def test_truncated_tail(engine: Engine, log: AuditLog) -> None:
    sql(engine, delete(audit_entries).where(audit_entries.c.seq >= 12))
    assert_first(check(log), Kind.TRUNCATED, 12)


def test_truncated_tail_with_head_and_checkpoints_rewritten(engine: Engine, log: AuditLog) -> None:
    """The intruder fixes the head row and drops the database checkpoints: the witness file
    outside the database still remembers the signed sizes up to 20."""
    sql(
        engine,
        delete(audit_entries).where(audit_entries.c.seq >= 12),
        delete(audit_checkpoints).where(audit_checkpoints.c.tree_size > 12),
    )
    rehash_everything(engine)
    report = check(log)
    assert_first(report, Kind.TRUNCATED, 12)
    assert report.first is not None and report.first.tree_size == SIZE


def test_forged_signature_in_the_witness(log: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "witness.log"
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace('"signature":"', '"signature":"AAAA', 1)
    path.write_text("\n".join(lines) + "\n")
    report = check(log)
    bad = [f for f in report.findings if f.kind is Kind.BAD_SIGNATURE]
    assert [(f.seq, f.tree_size) for f in bad] == [(None, SIZE)]


def test_forged_checkpoint_in_the_database(engine: Engine, log: AuditLog) -> None:
    stmt = update(audit_checkpoints).where(audit_checkpoints.c.tree_size == 10)
    sql(engine, stmt.values(root_hash=bytes(32)))
    report = check(log)
    assert [f.tree_size for f in report.findings if f.kind is Kind.BAD_SIGNATURE] == [10]


def test_checkpoint_signed_by_another_key_is_refused(engine: Engine, log: AuditLog) -> None:
    report = log.verify(Ed25519PrivateKey.generate().public_key())
    assert {f.kind for f in report.findings} == {Kind.BAD_SIGNATURE}
    assert len(report.findings) == SIZE + 4  # SIZE heads in the witness, 4 in the database


def test_full_rewrite_with_recomputed_hashes(engine: Engine, log: AuditLog) -> None:
    """Entry 7 changed and every hash recomputed: rows and head agree, but the roots witnessed
    at sizes 8 to 20 do not. The head at 7 still matches, so entry 7 itself is named."""
    sql(engine, update(audit_entries).where(audit_entries.c.seq == 7).values(actor_id="u-99"))
    rehash_everything(engine)
    report = check(log)
    assert_first(report, Kind.CHECKPOINT_MISMATCH, 7)
    assert report.first is not None and report.first.tree_size == 8
    assert report.checkpoints_verified == 7


def test_rewritten_head_row(engine: Engine, log: AuditLog) -> None:
    sql(engine, update(audit_head).values(compact_range=bytes(32) * 2))
    assert_first(check(log), Kind.HEAD_MISMATCH, None)


def test_deleted_witness_file(log: AuditLog, tmp_path: Path) -> None:
    (tmp_path / "witness.log").unlink()
    report = check(log)
    assert [f.kind for f in report.findings] == [Kind.WITNESS_MISMATCH]
    assert "file lost" in report.findings[0].message


def test_dropped_witness_line(log: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "witness.log"
    lines = path.read_text().splitlines()
    kept = [line for line in lines if '"tree_size":10,' not in line]  # the checkpoint at 10
    assert len(kept) == len(lines) - 1
    path.write_text("\n".join(kept) + "\n")
    report = check(log)
    assert [(f.kind, f.tree_size) for f in report.findings] == [(Kind.WITNESS_MISMATCH, 10)]


def test_forged_database_checkpoint_is_not_copied_to_the_witness(
    engine: Engine, log: AuditLog, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(
            audit_checkpoints.insert().values(
                tree_size=SIZE + 5,
                root_hash=bytes(32),
                timestamp_ms=0,
                key_id="00" * 32,
                signature=bytes(64),
            )
        )
    assert log.flush_witness() == SIZE
    assert len((tmp_path / "witness.log").read_text().splitlines()) == SIZE
    report = check(log)
    assert [(f.kind, f.tree_size) for f in report.findings] == [(Kind.BAD_SIGNATURE, SIZE + 5)]
