"""Appending in the caller's transaction, concurrency, checkpoints, witness, proofs, export.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from secretum.audit import AuditEvent, AuditLog, EventAction, EventType
from secretum.audit.checkpoint import WitnessError, WitnessFile
from secretum.audit.merkle import root_from_leaf_hashes
from secretum.audit.store import audit_checkpoints, audit_entries, audit_head
from secretum.storage.db import make_engine

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


def signed_sizes(log: AuditLog, tmp_path: Path) -> set[int]:
    """Every size with a signed root: witnessed heads and database checkpoints (what verify
    checks the tree against)."""
    return set(witnessed(tmp_path)) | {c.tree_size for c in log.checkpoints()}


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


def test_session_commit_is_witnessed_when_the_barrier_returns(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=2)
    with Session(engine) as session:
        log.append(session, event(0))
        log.append(session, event(1))
        assert log.committed_size == 0  # not committed yet
        session.commit()
    assert log.committed_size == 2
    assert log.wait_witnessed() == 2 and witnessed(tmp_path) == [2]
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
                logs[w].wait_witnessed()  # the answer
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
    assert report.entries_verified == total and report.witnessed_size == total
    # a head per flush (here about one per transaction: each waits for its own), the
    # checkpoints among them; a flusher whose tree starts from the head row may jump a size
    assert report.checkpoints_verified == len(signed_sizes(logs[0], tmp_path)) > total // 2


def test_checkpoints_every_n_entries_and_every_t_seconds(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=100, checkpoint_seconds=60)
    times = [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=61)]
    for i, at in enumerate(times):
        with engine.begin() as conn:
            log.append(conn, event(i, at=at))
        log.wait_witnessed()
    log.flush_witness()
    assert [c.tree_size for c in log.checkpoints()] == [3]  # 61 s after the first entry
    assert witnessed(tmp_path) == [1, 2, 3]  # a head per transaction; the checkpoint is the 3rd
    with engine.begin() as conn:
        log.append(conn, event(3, at=T0 + timedelta(seconds=70)))
    log.wait_witnessed()
    assert log.tick(T0 + timedelta(seconds=100)) is None  # only 39 s since the last one
    cp = log.tick(T0 + timedelta(seconds=122))
    assert cp is not None and cp.tree_size == 4 and cp.timestamp_ms % 1000 == 0
    # the head of the 4th append; the checkpoint at 4 has its root: no second line
    assert witnessed(tmp_path) == [1, 2, 3, 4]
    assert log.checkpoint(T0 + timedelta(seconds=200)) is None  # nothing new to sign
    assert log.verify(KEY.public_key()).checkpoints_verified == 4


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


# -- the append path: head sealed at checkpoints, concurrency, rollbacks --------------------


def test_the_head_is_sealed_at_checkpoints_only(engine: Engine, tmp_path: Path) -> None:
    """Appends between checkpoints write their entry and nothing else: the head row keeps the
    compact range of the last checkpoint, and the tree head adds the entries since."""
    log = make_log(engine, tmp_path, checkpoint_every=5)
    for i in range(7):
        with engine.begin() as conn:
            log.append(conn, event(i))
    with engine.connect() as conn:
        head = conn.execute(select(audit_head)).one()
        leaves = [bytes(h) for h in conn.execute(select(audit_entries.c.leaf_hash)).scalars()]
    assert (head.tree_size, head.checkpoint_size) == (5, 5)
    assert log.tree_head() == (7, root_from_leaf_hashes(leaves))
    log.flush_witness()
    report = log.verify(KEY.public_key())
    assert report.ok and report.entries_verified == 7, report.findings
    assert any("2 entries after the last seal" in note for note in report.notes)


def test_an_append_after_the_sealed_part_was_deleted_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=5)
    for i in range(6):
        with engine.begin() as conn:
            log.append(conn, event(i))
    with engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq >= 3))
    with pytest.raises(RuntimeError, match="sealed at 5"), engine.begin() as conn:
        log.append(conn, event(6))
    assert count(engine) == 3  # nothing written over the gap


def test_appends_after_another_writer_and_after_rollbacks(engine: Engine, tmp_path: Path) -> None:
    """Two logs (two processes) take turns; entries are rolled back in between, alone, in
    batches and with the checkpoint they made: each append still lands right after the last
    committed entry, and every checkpoint covers exactly the entries committed before it."""
    a = make_log(engine, tmp_path, checkpoint_every=3)
    b = make_log(engine, tmp_path, checkpoint_every=3)
    plan = "aabarbbaRabrrabaRbbaab"  # a/b: commit one, r: roll one back, R: roll back a batch
    expected = 0
    for i, step in enumerate(plan):
        log = b if step == "b" or (step in "rR" and i % 2) else a
        try:
            with engine.begin() as conn:
                if step == "R":
                    log.append_many(conn, [event(100 * i + j) for j in range(4)])
                else:
                    assert log.append(conn, event(100 * i)) == expected
                if step in "rR":
                    raise RuntimeError("the action failed")
        except RuntimeError:
            continue
        log.wait_witnessed()
        expected += 1
    with engine.connect() as conn:
        seqs = list(conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)))
        cps = sorted(conn.execute(select(audit_checkpoints.c.tree_size)).scalars())
    assert [s for (s,) in seqs] == list(range(expected))
    assert cps == list(range(3, expected + 1, 3))
    a.flush_witness()
    report = a.verify(KEY.public_key())
    assert report.ok and report.checkpoints_verified == len(signed_sizes(a, tmp_path))
    assert report.witnessed_size == expected, report.findings


def test_concurrent_appends_rollbacks_and_batches(engine: Engine, tmp_path: Path) -> None:
    """Threads sharing one AuditLog and threads with their own, some transactions rolled back,
    some appending batches, one thread signing checkpoints on its own: the committed log has
    no gap, every checkpoint matches it, and no entry waits past the checkpoint policy."""
    shared = make_log(engine, tmp_path, checkpoint_every=7)
    logs = [shared, shared, make_log(engine, tmp_path, checkpoint_every=7)]
    logs.append(make_log(engine, tmp_path, checkpoint_every=7))
    errors: list[BaseException] = []
    committed: list[int] = []  # entries per committed transaction
    barrier = threading.Barrier(len(logs) + 1)

    def work(w: int) -> None:
        try:
            barrier.wait()
            for i in range(30):
                with engine.begin() as conn:
                    if i % 5 == 4:
                        batch = [event(w * 1000 + i + j) for j in (0, 1)]
                        appended = len(logs[w].append_many(conn, batch))
                    else:
                        logs[w].append(conn, event(w * 1000 + i))
                        appended = 1
                    if (i + w) % 4 == 0:
                        conn.rollback()
                        continue
                logs[w].wait_witnessed()  # the answer
                committed.append(appended)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def checkpoints() -> None:
        try:
            barrier.wait()
            for i in range(10):
                shared.checkpoint(T0 + timedelta(seconds=i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(logs))]
    threads.append(threading.Thread(target=checkpoints))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = sum(committed)
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)).scalars()
        assert list(seqs) == list(range(total))
    for log in logs:
        log.wait_witnessed()
    shared.flush_witness()
    report = shared.verify(KEY.public_key())
    assert report.ok, report.findings
    assert report.checkpoints_verified == len(signed_sizes(shared, tmp_path)) > 0
    assert report.witnessed_size == total


def test_no_deadlock_when_a_transaction_appends_twice(engine: Engine, tmp_path: Path) -> None:
    """A transaction appends (fast path), a second writer waits for that entry, then the first
    appends again and seals a checkpoint: the waiter must not hold the head row's lock (on
    PostgreSQL that would be a deadlock, reported after a second)."""
    first = make_log(engine, tmp_path, checkpoint_every=3)
    second = make_log(engine, tmp_path, checkpoint_every=3)  # no cached position: slow path
    with engine.begin() as conn:
        first.append(conn, event(0))
    errors: list[BaseException] = []
    seqs: list[int] = []

    def waiter() -> None:
        try:
            with engine.begin() as conn:
                seqs.append(second.append(conn, event(50)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    with engine.begin() as conn:
        assert first.append(conn, event(1)) == 1
        thread.start()
        time.sleep(0.3)  # the waiter is blocked on entry 1 (or on BEGIN IMMEDIATE)
        assert first.append(conn, event(2)) == 2  # a checkpoint is due at 3
    thread.join()
    assert errors == [] and seqs == [3]
    assert [cp.tree_size for cp in first.checkpoints()] == [3]
    first.flush_witness()
    assert first.verify(KEY.public_key()).ok


_WORKER = """
import sys
from datetime import UTC, datetime, timedelta
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from secretum.audit import AuditEvent, AuditLog, EventAction, EventType
from secretum.storage.db import make_engine

url, key, witness, worker, n = sys.argv[1:6]
engine = make_engine(url)
log = AuditLog(engine, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key)), witness,
               checkpoint_every=10, checkpoint_seconds=3600)
t0 = datetime(2025, 3, 1, tzinfo=UTC)
for i in range(int(n)):
    event = AuditEvent(recorded=t0 + timedelta(milliseconds=i), event_type=EventType.QUERY,
                       action=EventAction.EXECUTE, actor_id=f"w{worker}-{i}", actor_role="bot")
    with engine.begin() as conn:
        log.append(conn, event)
        if i % 6 == 5:
            conn.rollback()
engine.dispose()
"""


def test_several_processes_append_to_one_gapless_log(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    witness = str(tmp_path / "witness.log")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, raw, witness, str(w), "40"],
            stderr=subprocess.PIPE,
        )
        for w in range(3)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    total = 3 * (40 - 40 // 6)
    assert count(engine) == total
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)).scalars()
        assert list(seqs) == list(range(total))
        cps = sorted(conn.execute(select(audit_checkpoints.c.tree_size)).scalars())
    assert cps == list(range(10, total + 1, 10))
    log = AuditLog(engine, key, witness, checkpoint_every=10, checkpoint_seconds=3600)
    log.flush_witness()
    report = log.verify(key.public_key())
    assert report.ok and report.entries_verified == total, report.findings


@pytest.mark.parametrize("first", ["begin", "autobegin"])
def test_sqlite_begin_failure_is_a_sqlalchemy_error(tmp_path: Path, first: str) -> None:
    """BEGIN IMMEDIATE goes straight to the driver; a lock timeout still comes out as
    SQLAlchemy's OperationalError, and the connection's next transaction is a real one (its
    rollback undoes its writes), explicit or implicit."""
    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="database is locked"):
                conn.begin() if first == "begin" else conn.execute(text("SELECT 1"))
            assert not conn.in_transaction()
            blocker.execute("ROLLBACK")
            blocker.close()
            conn.execute(text("INSERT INTO t VALUES (1)"))  # autobegin
            assert conn.in_transaction()
            conn.rollback()
            with conn.begin():
                conn.execute(text("INSERT INTO t VALUES (2)"))
            assert conn.execute(text("SELECT x FROM t")).scalars().all() == [2]
            conn.rollback()
    finally:
        engine.dispose()


def test_the_witness_file_is_created_with_its_folder(engine: Engine, tmp_path: Path) -> None:
    """A fresh data directory has no audit folder: the first checkpoint creates it (0700)."""
    witness = tmp_path / "fresh" / "audit" / "witness.log"
    log = AuditLog(engine, KEY, witness, checkpoint_every=2, checkpoint_seconds=3600)
    for i in range(2):
        log.append_committed(event(i))
        log.wait_witnessed()
    assert log.flush_witness() == 2
    assert witness.parent.stat().st_mode & 0o777 == 0o700
    assert [c.tree_size for c in WitnessFile(witness).read().checkpoints] == [1, 2]


def test_a_savepoint_rolled_back_is_not_witnessed(engine: Engine, tmp_path: Path) -> None:
    """The head of a transaction whose savepoint (with an entry in it) rolled back covers what
    committed, read back from the database: not the leaf hashes it noted."""
    log = make_log(engine, tmp_path, checkpoint_every=1000)
    with engine.begin() as conn:
        log.append(conn, event(0))
        savepoint = conn.begin_nested()
        log.append(conn, event(1))
        savepoint.rollback()
    assert log.wait_witnessed() == 1
    assert count(engine) == 1 and witnessed(tmp_path) == [1]
    with engine.begin() as conn:
        assert log.append(conn, event(2)) == 1
    log.wait_witnessed()
    assert witnessed(tmp_path) == [1, 2]
    report = log.verify(KEY.public_key())
    assert report.ok and report.witnessed_size == 2, report.findings


def test_a_failed_witness_write_fails_the_barrier_and_the_next_flush_covers_all(
    engine: Engine, tmp_path: Path
) -> None:
    """The entries committed, their head could not be written: the barrier raises WitnessError
    (the action is never reported done), for transactions and group-commit callers alike; once
    the disk is back, one flush covers them all."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = AuditLog(engine, KEY, blocker / "witness.log", checkpoint_every=1000)
    with engine.begin() as conn:
        log.append(conn, event(0))  # committed: the commit itself no longer writes the witness
    with pytest.raises(WitnessError):
        log.wait_witnessed(timeout=10)
    assert [log.group_commit.submit(event(i)).result() for i in range(1, 4)] == [1, 2, 3]
    with pytest.raises(WitnessError):
        log.wait_witnessed(timeout=10)
    with pytest.raises(WitnessError):
        asyncio.run(log.witnessed_async(timeout=10))
    assert count(engine) == 4 and log.witnessed_size == 0
    blocker.unlink()  # the disk is back: the next flush covers them all
    with engine.begin() as conn:
        log.append(conn, event(4))
    assert log.wait_witnessed(timeout=10) == 5
    report = log.verify(KEY.public_key(), witness_path=blocker / "witness.log")
    assert report.ok and report.witnessed_size == 5, report.findings
    assert [c.tree_size for c in WitnessFile(blocker / "witness.log").read().checkpoints] == [5]


def test_a_failed_witness_flush_fails_the_group_commit_callers_that_wait_for_it(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``group_waits_for_witness``, the group commit answers once the witness covers the
    batch: if the flush fails, the callers get WitnessError (their entries committed once, not
    retried), never a seq."""
    log = make_log(engine, tmp_path, checkpoint_every=1000, group_waits_for_witness=True)

    def broken(self: WitnessFile, heads: object, *, sync: bool = True) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(WitnessFile, "append_heads", broken)
    futures = [log.group_commit.submit(event(i)) for i in range(3)]
    for future in futures:
        with pytest.raises(WitnessError):
            future.result()
    assert count(engine) == 3
