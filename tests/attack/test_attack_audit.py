"""The intruder with write access to the database goes for the newest audit entries.

A shred or a break-the-glass is exactly what someone wants to erase from the audit log, and it is
among the newest entries: after the last signed checkpoint (or before the first one, on a young
platform). Each attack here is done in SQL, as an intruder would, and the strong one recomputes
every leaf hash and the head row's compact range and drops the database checkpoints that no
longer match (those it cannot re-sign), so that the database alone is consistent again. What
defeats it: the signed tree head covering every committed entry that the witness flusher
writes to the witness file (outside the database) before the action is answered (the barrier
``wait_witnessed``, which ``build`` calls after each transaction as an answer would).
``verify`` must fail and name the first affected entry.

All run on SQLite and PostgreSQL. On the code before the witnessed heads, every attack here
verified "OK" (the witness then only held the periodic checkpoints).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from secretum.audit import AuditEvent, AuditLog, EventAction, EventType, Kind, VerifyReport
from secretum.audit.checkpoint import Checkpoint, WitnessFile
from secretum.audit.merkle import CompactRange
from secretum.audit.model import CANONICAL_FIELDS, LEAF_TEMPLATE
from secretum.audit.store import audit_checkpoints, audit_entries, audit_head
from secretum.audit.verify import _SCAN_SQL

KEY = Ed25519PrivateKey.generate()
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
_SEQ = CANONICAL_FIELDS.index("seq")


def event(i: int, actor: str | None = None) -> AuditEvent:
    return AuditEvent(
        recorded=T0 + timedelta(seconds=i),
        event_type=EventType.PATIENT_RECORD,
        action=EventAction.DELETE,
        actor_id=actor or f"u-{i}",
        actor_role="admin",
        resource_type="Patient",
        resource_id=f"p-{i}",
        patient_id=f"p-{i}",
    )


def build(engine: Engine, witness: Path, n: int, every: int) -> AuditLog:
    """``n`` entries, one per transaction, through every way the platform appends: in the
    caller's transaction (Connection, Session), a batch of one, and the group commit. Then the
    periodic duty runs (``tick``), as on a serving platform."""
    log = AuditLog(engine, KEY, witness, checkpoint_every=every, checkpoint_seconds=3600)
    for i in range(n):
        way = i % 4
        if way == 0:
            with engine.begin() as conn:
                log.append(conn, event(i))
        elif way == 1:
            with Session(engine) as session:
                log.append(session, event(i))
                session.commit()
        elif way == 2:
            with engine.begin() as conn:
                log.append_many(conn, [event(i)])
        else:
            log.append_committed(event(i))
        log.wait_witnessed()  # the barrier before the action's answer
    log.tick(T0)
    report = verify(log)
    assert report.ok and report.entries_verified == n, report.findings
    return log


def verify(log: AuditLog) -> VerifyReport:
    return log.verify(KEY.public_key())


def sql(engine: Engine, *statements: object) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement) if isinstance(statement, str) else statement)  # type: ignore[arg-type]


def cover_tracks(engine: Engine) -> None:
    """The strong attacker: every leaf hash recomputed from the rows as they now are, the head
    row's compact range recomputed at its sealed size (or at the end, if the log got shorter),
    and the database checkpoints that no longer match the tree dropped."""
    with engine.begin() as conn:
        rows = conn.exec_driver_sql(_SCAN_SQL).all()
        leaves = []
        for row in rows:
            leaf = hashlib.sha256((LEAF_TEMPLATE % tuple(row[:-1])).encode()).digest()
            leaves.append(leaf)
            stmt = update(audit_entries).where(audit_entries.c.seq == row[_SEQ])
            conn.execute(stmt.values(leaf_hash=leaf))
        head = conn.execute(audit_head.select()).first()
        if head is not None:
            size = min(head.tree_size, len(leaves))
            crange = CompactRange()
            crange.extend(leaves[:size])
            conn.execute(
                update(audit_head).values(
                    tree_size=size,
                    compact_range=crange.to_bytes(),
                    checkpoint_size=min(head.checkpoint_size, size),
                )
            )
        for cp in conn.execute(audit_checkpoints.select()).all():
            crange = CompactRange()
            crange.extend(leaves[: cp.tree_size])
            if cp.tree_size > len(leaves) or crange.root() != cp.root_hash:
                cps = audit_checkpoints.c.tree_size
                conn.execute(delete(audit_checkpoints).where(cps == cp.tree_size))


def delete_from(engine: Engine, first: int) -> None:
    sql(engine, delete(audit_entries).where(audit_entries.c.seq >= first))


def rewrite(engine: Engine, seq: int, actor: str = "nobody") -> None:
    sql(engine, update(audit_entries).where(audit_entries.c.seq == seq).values(actor_id=actor))


def swap(engine: Engine, a: int, b: int) -> None:
    """Exchange the positions of entries ``a`` and ``b`` (rows, stored hashes and all)."""
    sql(
        engine,
        f"UPDATE audit_entries SET seq = -1 WHERE seq = {a}",
        f"UPDATE audit_entries SET seq = {a} WHERE seq = {b}",
        f"UPDATE audit_entries SET seq = {b} WHERE seq = -1",
    )


def assert_first(report: VerifyReport, kind: Kind, seq: int) -> None:
    assert not report.ok, "the attack went unnoticed"
    first = report.first
    assert first is not None and (first.kind, first.seq) == (kind, seq), report.findings


# -- deleting the newest entries ------------------------------------------------------------


@pytest.mark.parametrize("deleted", [1, 3])
def test_deleting_the_newest_entries_after_the_last_checkpoint(
    engine: Engine, tmp_path: Path, deleted: int
) -> None:
    """13 entries, checkpoints at 5 and 10: the newest (say, a shred) are erased."""
    log = build(engine, tmp_path / "witness.log", 13, every=5)
    delete_from(engine, 13 - deleted)
    assert_first(verify(log), Kind.TRUNCATED, 13 - deleted)
    cover_tracks(engine)
    assert_first(verify(log), Kind.TRUNCATED, 13 - deleted)


@pytest.mark.parametrize("first", [0, 1, 3])
def test_deleting_entries_before_any_checkpoint(engine: Engine, tmp_path: Path, first: int) -> None:
    """A young log (4 entries, the first checkpoint due at 1000): its tail, or all of it."""
    log = build(engine, tmp_path / "witness.log", 4, every=1000)
    assert log.checkpoints() == []
    delete_from(engine, first)
    cover_tracks(engine)
    assert_first(verify(log), Kind.TRUNCATED, first)


def test_deleting_an_early_entry_and_renumbering_the_rest(engine: Engine, tmp_path: Path) -> None:
    """Entry 1 of a young log removed, the later ones moved down and rehashed: the database is
    consistent, the heads witnessed at sizes 2 and more are not."""
    log = build(engine, tmp_path / "witness.log", 4, every=1000)
    sql(
        engine,
        delete(audit_entries).where(audit_entries.c.seq == 1),
        "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 1",
        "UPDATE audit_entries SET seq = seq - 1001 WHERE seq >= 1000",
    )
    cover_tracks(engine)
    report = verify(log)
    assert_first(report, Kind.CHECKPOINT_MISMATCH, 1)
    assert any(f.kind is Kind.TRUNCATED and f.seq == 3 for f in report.findings)


# -- rewriting the newest entry -------------------------------------------------------------


@pytest.mark.parametrize(("n", "every"), [(13, 5), (3, 1000), (10, 5)])
def test_rewriting_the_newest_entry_with_recomputed_hashes(
    engine: Engine, tmp_path: Path, n: int, every: int
) -> None:
    """The newest entry's actor changed, its leaf hash and the head recomputed: after the last
    checkpoint, before any, or right at one (10 with checkpoints every 5: the attacker drops
    that checkpoint)."""
    log = build(engine, tmp_path / "witness.log", n, every=every)
    rewrite(engine, n - 1)
    assert_first(verify(log), Kind.MODIFIED, n - 1)  # the weak attacker: stored hash kept
    cover_tracks(engine)
    report = verify(log)
    assert_first(report, Kind.CHECKPOINT_MISMATCH, n - 1)
    assert report.first is not None and report.first.tree_size == n


def test_reordering_the_newest_entries(engine: Engine, tmp_path: Path) -> None:
    log = build(engine, tmp_path / "witness.log", 13, every=5)
    swap(engine, 11, 12)
    assert_first(verify(log), Kind.REORDERED, 11)
    cover_tracks(engine)
    assert_first(verify(log), Kind.CHECKPOINT_MISMATCH, 11)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(1, 14),
    every=st.integers(1, 6),
    data=st.data(),
    strong=st.booleans(),
)
def test_any_truncation_or_rewrite_is_named(
    engine: Engine, tmp_path: Path, n: int, every: int, data: st.DataObject, strong: bool
) -> None:
    """Property: whatever the log's length and checkpoint period, deleting the entries from a
    random one on, or rewriting a random one, is found and that entry named."""
    sql(engine, delete(audit_entries), delete(audit_checkpoints), delete(audit_head))
    witness = Path(tempfile.mkdtemp(dir=tmp_path)) / "witness.log"
    log = build(engine, witness, n, every)
    target = data.draw(st.integers(0, n - 1), label="target")
    if data.draw(st.booleans(), label="truncate"):
        delete_from(engine, target)
        if strong:
            cover_tracks(engine)
        assert_first(verify(log), Kind.TRUNCATED, target)
    else:
        rewrite(engine, target)
        if strong:
            cover_tracks(engine)
        kind = Kind.CHECKPOINT_MISMATCH if strong else Kind.MODIFIED
        assert_first(verify(log), kind, target)


# -- the head is on disk before the caller is answered ----------------------------------------


class SyncSpy:
    """Records the witness file's size at each ``fdatasync`` (what was made durable)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[int] = []
        real = os.fdatasync

        def spy(fd: int) -> None:
            size = os.fstat(fd).st_size
            real(fd)
            self.synced.append(size)

        monkeypatch.setattr(os, "fdatasync", spy)


def durable_head(witness: Path, spy: SyncSpy, seq: int) -> Checkpoint:
    """The witnessed head that covers entry ``seq``, checked to be flushed to disk."""
    data = witness.read_bytes()
    for line in data.splitlines(keepends=True):
        try:
            head = Checkpoint.from_line(line.decode())
        except ValueError:
            continue
        if head.tree_size > seq and head.verify([KEY.public_key()]):
            end = data.index(line) + len(line)
            assert spy.synced and max(spy.synced) >= end, "written but not flushed"
            return head
    raise AssertionError(f"no witnessed head covers entry {seq}")


def test_the_head_is_durable_when_the_barrier_returns(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit only notes the entries; the barrier (what every answer waits for) returns
    once a head covering them is on disk."""
    witness = tmp_path / "witness.log"
    spy = SyncSpy(monkeypatch)
    log = AuditLog(engine, KEY, witness, checkpoint_every=1000)
    for i in range(3):
        with engine.begin() as conn:
            seq = log.append(conn, event(i))
        assert log.wait_witnessed() > seq
        head = durable_head(witness, spy, seq)  # right after the barrier returned
        assert (head.tree_size, head.root_hash) == log.tree_head()
    for i in range(3, 23):  # the group commit: answered on commit, then the barrier
        seq = log.append_committed(event(i))
        log.wait_witnessed()
        assert durable_head(witness, spy, seq).tree_size > seq

    async def main() -> list[Checkpoint]:
        heads = []
        for i in range(23, 28):
            seq = await log.append_committed_async(event(i))
            await log.witnessed_async()
            heads.append(durable_head(witness, spy, seq))  # the coroutine's continuation
        return heads

    assert [h.tree_size for h in asyncio.run(main())] == list(range(24, 29))


def test_one_head_covers_every_transaction_committed_during_a_flush(
    engine: Engine, tmp_path: Path
) -> None:
    """While the flusher writes, transactions commit: the next flush covers them all with one
    signed head (one line), not a line per transaction."""
    witness = tmp_path / "witness.log"
    log = AuditLog(engine, KEY, witness, checkpoint_every=1000)
    assert log.flusher is not None
    gate = threading.Event()
    log.flusher.before_flush = lambda: gate.wait(10)
    with engine.begin() as conn:
        log.append(conn, event(0))
    for i in range(1, 10):  # committed while the first flush is held
        with engine.begin() as conn:
            log.append(conn, event(i))
    gate.set()
    assert log.wait_witnessed() == 10
    sizes = [c.tree_size for c in WitnessFile(witness).read().checkpoints]
    assert sizes[-1] == 10 and len(sizes) <= 2, sizes  # the held flush, then one for the rest
    assert verify(log).ok


def test_the_head_is_durable_when_the_group_commit_answers_if_it_waits(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``group_waits_for_witness``: the group commit settles a future only once the
    batch's head is on disk (read from within the waiter's continuation)."""
    witness = tmp_path / "witness.log"
    spy = SyncSpy(monkeypatch)
    log = AuditLog(engine, KEY, witness, checkpoint_every=1000, group_waits_for_witness=True)
    seen: list[Any] = []
    lock = threading.Lock()
    all_seen = threading.Event()

    def check(future: Any) -> None:  # runs in the syncer thread, as the future is settled
        try:
            seq = future.result()
            result: Any = durable_head(witness, spy, seq).tree_size > seq
        except BaseException as exc:
            result = exc
        with lock:
            seen.append(result)
            if len(seen) == 20:
                all_seen.set()

    futures = []
    for i in range(20):
        future = log.group_commit.submit(event(i))
        future.add_done_callback(check)
        futures.append(future)
    seqs = sorted(f.result() for f in futures)
    assert seqs == list(range(20))
    assert all_seen.wait(10) and all(x is True for x in seen), seen


def test_heads_arrive_out_of_order_between_processes(engine: Engine, tmp_path: Path) -> None:
    """Two processes' heads may reach the shared file in either order: each is a true
    statement, verify accepts them; two different roots at one size are a fork."""
    witness = tmp_path / "witness.log"
    log = build(engine, witness, 6, every=1000)
    lines = witness.read_text().splitlines()
    witness.write_text("\n".join(reversed(lines)) + "\n")
    assert verify(log).ok
    forged = Checkpoint.sign(KEY, 3, bytes(32), 0)  # (only the key holder can fork)
    WitnessFile(witness).append_head(forged)
    report = verify(log)
    assert any(f.kind is Kind.WITNESS_MISMATCH and f.tree_size == 3 for f in report.findings)


# -- end to end: a fresh platform, a shred, and the intruder ----------------------------------


def test_a_shred_erased_right_after_init_is_found(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``secretum init``, a record, ``keys shred``: the audit entry of the shred is the newest,
    long before the first checkpoint (every 1000 entries). The intruder deletes it (and fixes
    the head row): ``secretum audit verify --json`` fails and names it."""
    from secretum.cli import app

    for key, value in {
        "SECRETUM_DATA_DIR": str(tmp_path / "data"),
        "SECRETUM_KEYSTORE_PASSPHRASE": "correct horse battery staple, but longer",
        "SECRETUM_CONFIG": str(tmp_path / "none.toml"),
        "SECRETUM_DATABASE_URL": db_url,
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args))

    assert run("init").exit_code == 0
    from secretum.bootstrap import open_platform

    platform = open_platform()
    with platform.engine.begin() as conn:
        platform.records.put(
            conn, patient_id="pat-1", record_type="Observation", record_id="obs-1", payload=b"x"
        )
    platform.close()
    assert run("keys", "shred", "pat-1", "--yes").exit_code == 0
    assert run("audit", "verify").exit_code == 0
    from secretum.storage.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            last = conn.execute(text("SELECT max(seq) FROM audit_entries")).scalar_one()
            assert conn.execute(audit_checkpoints.select()).first() is None
        delete_from(engine, last)
        cover_tracks(engine)
    finally:
        engine.dispose()
    result = run("audit", "verify", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert not report["ok"] and report["witnessed_size"] == last + 1
    first = min(report["findings"], key=lambda f: (f["seq"] is None, f["seq"] or 0))
    assert (first["kind"], first["seq"]) == ("truncated", last), report
