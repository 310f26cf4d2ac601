"""Group commit of audit entries (secretum.audit.group) and the read door built on it.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from tests.integration.test_audit_log import KEY, count, event, make_log

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.errors import AccessDenied
from secretum.access.guard import TableGuard, allow, deny
from secretum.access.model import Action, Actor, Purpose, Resource, Role
from secretum.audit import AuditEvent, AuditLog
from secretum.audit.group import GroupCommit
from secretum.audit.witnessing import OWED, Owed

T = 10.0  # seconds any wait in these tests may take before it is a failure


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + T
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Gate:
    """An ``append_many`` that holds its first transaction open until :meth:`open` is called,
    and fails any batch holding a poisoned event."""

    def __init__(self, log: AuditLog, poisoned: str | None = None) -> None:
        self.log = log
        self.entered = threading.Event()
        self._gate = threading.Event()
        self.poisoned = poisoned
        self.sizes: list[int] = []

    def open(self) -> None:
        self._gate.set()

    def __call__(self, conn: Connection, events: Sequence[AuditEvent]) -> range:
        self.sizes.append(len(events))
        self.entered.set()
        assert self._gate.wait(T)
        seqs = self.log.append_many(conn, events)
        if any(e.resource_id == self.poisoned for e in events):
            raise RuntimeError("poisoned batch")
        return seqs


def verified(log: AuditLog) -> bool:
    """The log verifies, its committed checkpoints copied to the witness first (as ``tick``
    does in a serving process)."""
    log.flush_witness()
    report = log.verify(KEY.public_key())
    assert report.ok, report.findings
    return True


def _threads(target: Callable[[int], None], n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    return threads


def _gated(engine: Engine, tmp_path: Path) -> tuple[AuditLog, Gate, GroupCommit]:
    """A log, and a group commit whose first transaction waits at a gate."""
    log = make_log(engine, tmp_path)
    gate = Gate(log)
    return log, gate, GroupCommit(engine, gate)


def test_callers_arriving_during_a_commit_share_the_next_transaction(
    engine: Engine, tmp_path: Path
) -> None:
    log, gate, group = _gated(engine, tmp_path)
    seqs: dict[int, int] = {}
    first = _threads(lambda i: seqs.__setitem__(i, group.append(event(i))), 1)
    assert gate.entered.wait(T)  # the leader is inside its transaction
    others = _threads(lambda i: seqs.__setitem__(i + 1, group.append(event(i + 1))), 5)
    _wait_until(lambda: group.waiting == 5)
    gate.open()
    for thread in first + others:
        thread.join(T)
    assert gate.sizes == [1, 5]  # two transactions for six events
    assert (group.batches, group.events) == (2, 6)
    assert sorted(seqs.values()) == list(range(6))
    assert count(engine) == 6
    assert verified(log)


def test_many_threads_every_entry_committed_once(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, checkpoint_every=7)
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(20):
            seq = log.append_committed(event(i * 100 + j))
            with lock:
                seqs.append(seq)

    for thread in _threads(worker, 12):
        thread.join(60)
    assert sorted(seqs) == list(range(240))
    assert count(engine) == 240
    assert log.group_commit.events == 240
    assert verified(log)


def test_a_returned_seq_is_already_committed(engine: Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    for i in range(3):
        seq = log.append_committed(event(i))
        with engine.connect() as other:  # another connection sees it at once
            found = other.execute(
                text("SELECT resource_id FROM audit_entries WHERE seq = :s"), {"s": seq}
            ).scalar_one()
        assert found == f"obs-{i}"


def test_a_failed_batch_fails_only_the_caller_whose_event_broke_it(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path)
    gate = Gate(log, poisoned="obs-3")
    group = GroupCommit(engine, gate)
    results: dict[int, int | BaseException] = {}

    def call(i: int) -> None:
        try:
            results[i] = group.append(event(i))
        except Exception as exc:
            results[i] = exc

    leader = _threads(call, 1)
    assert gate.entered.wait(T)
    others = _threads(lambda i: call(i + 1), 4)  # events 1..4, 3 poisoned
    _wait_until(lambda: group.waiting == 4)
    gate.open()
    for thread in leader + others:
        thread.join(T)
    assert isinstance(results[3], RuntimeError)
    assert all(isinstance(results[i], int) for i in (0, 1, 2, 4))
    assert gate.sizes == [1, 4, 1, 1, 1, 1]  # the batch of four, then one by one
    assert count(engine) == 4  # the poisoned one rolled back
    assert log.append_committed(event(9)) == 4  # and the log goes on
    assert verified(log)


def test_a_caller_is_never_left_waiting_when_the_leader_is_interrupted(
    engine: Engine, tmp_path: Path
) -> None:
    calls = 0

    def interrupted(conn: Connection, events: Sequence[AuditEvent]) -> range:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    group = GroupCommit(engine, interrupted)
    with pytest.raises(KeyboardInterrupt):
        group.append(event(0))
    assert group.waiting == 0
    with pytest.raises(KeyboardInterrupt):  # the next caller leads again: nothing stuck
        group.append(event(1))
    assert calls == 2


# -- the read door ----------------------------------------------------------------------------

DOCTOR = Actor("doc-1", Role.PRACTITIONER)
NOW = event(0).recorded


def _attempt() -> Attempt:
    return Attempt(RequestContext(DOCTOR, Purpose.TELECONSULTATION, NOW), "110110", "read", "R")


def _reads(door: Door, seen: list[str]) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        door.authorize(conn, attempt, Action.READ, Resource("Observation", "pat-1", "obs-1"))
        seen.append(conn.execute(text("SELECT 'data'")).scalar_one())
        return "data"

    attempt = _attempt()
    work.attempt = attempt  # type: ignore[attr-defined]
    return work


def test_read_door_audits_before_returning(engine: Engine, tmp_path: Path) -> None:
    door = Door(engine, make_log(engine, tmp_path), TableGuard([allow()]))
    seen: list[str] = []
    work = _reads(door, seen)
    assert door.read(work.attempt, work) == "data"  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(text("SELECT action, outcome, resource_id FROM audit_entries")).one()
    assert tuple(row) == ("R", 0, "obs-1")


def test_read_door_audits_a_refusal_and_returns_nothing(engine: Engine, tmp_path: Path) -> None:
    door = Door(engine, make_log(engine, tmp_path), TableGuard([deny()]))
    seen: list[str] = []
    work = _reads(door, seen)
    with pytest.raises(AccessDenied):
        door.read(work.attempt, work)  # type: ignore[attr-defined]
    assert seen == []
    with engine.connect() as conn:
        outcome = conn.execute(text("SELECT outcome FROM audit_entries")).scalar_one()
    assert outcome == 4  # minor failure


def test_read_door_returns_nothing_when_the_audit_cannot_commit(
    engine: Engine, tmp_path: Path
) -> None:
    class BrokenLog(AuditLog):
        def append_committed(self, event: AuditEvent) -> int:
            raise RuntimeError("audit database unavailable")

    door = Door(engine, BrokenLog(engine), TableGuard([allow()]))
    seen: list[str] = []
    work = _reads(door, seen)
    with pytest.raises(RuntimeError, match="audit database unavailable"):
        door.read(work.attempt, work)  # type: ignore[attr-defined]
    assert seen == ["data"]  # read, but never handed out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_reads_run_beside_a_writer(engine: Engine, tmp_path: Path) -> None:
    """The read's work takes no write lock: it runs while another connection holds it; only
    its audit entry waits for the lock."""
    door = Door(engine, make_log(engine, tmp_path), TableGuard([allow()]))
    log = make_log(engine, tmp_path)
    log.append_committed(event(0))  # the log exists: later appends take the fast path
    seen: list[str] = []
    work = _reads(door, seen)
    done = threading.Event()
    with engine.connect() as writer:
        writer.begin()  # BEGIN IMMEDIATE: the write lock
        writer.execute(text("SELECT 1"))
        reader = threading.Thread(
            target=lambda: (door.read(work.attempt, work), done.set())  # type: ignore[attr-defined]
        )
        reader.start()
        _wait_until(lambda: seen == ["data"])  # the work ran beside the writer
        time.sleep(0.05)
        assert not done.is_set()  # its audit entry waits for the lock
        writer.rollback()
    reader.join(T)
    assert done.is_set()
    assert count(engine) == 2


def test_a_coroutine_waits_for_its_commit_without_blocking_the_loop(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path)
    gate = Gate(log)
    group = GroupCommit(engine, gate)
    ticks: list[int] = []

    async def main() -> int:
        pending = asyncio.ensure_future(group.append_async(event(0)))
        while not gate.entered.is_set():  # the writer holds the transaction open...
            await asyncio.sleep(0.001)
        for i in range(5):  # ... and the loop runs on meanwhile
            ticks.append(i)
            await asyncio.sleep(0)
        assert not pending.done()
        gate.open()
        return await pending

    assert asyncio.run(main()) == 0
    assert ticks == [0, 1, 2, 3, 4]
    assert count(engine) == 1


def test_coroutines_of_one_loop_turn_share_one_transaction(engine: Engine, tmp_path: Path) -> None:
    """The reads an event loop served in one turn reach the writer together: one commit, not
    one per read (the writer would otherwise take the first alone while the loop serves on)."""
    log = make_log(engine, tmp_path)
    group = GroupCommit(engine, log.append_many)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(group.append_async(event(i)) for i in range(20))))

    assert sorted(asyncio.run(main())) == list(range(20))
    assert (group.batches, group.events) == (1, 20)
    assert count(engine) == 20
    assert verified(log)


def test_a_failed_batch_of_coroutines_fails_only_the_one_that_broke_it(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path)
    gate = Gate(log, poisoned="obs-2")
    gate.open()
    group = GroupCommit(engine, gate)

    async def main() -> list[int | BaseException]:
        calls = (group.append_async(event(i)) for i in range(4))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(main())
    assert isinstance(results[2], RuntimeError)
    assert sorted(r for r in results if isinstance(r, int)) == [0, 1, 2]
    assert gate.sizes == [4, 1, 1, 1, 1]  # the shared batch, then one by one
    assert count(engine) == 3
    assert verified(log)


def test_threads_and_coroutines_share_the_writer_and_a_cancelled_coroutine_harms_none(
    engine: Engine, tmp_path: Path
) -> None:
    log = make_log(engine, tmp_path)
    gate = Gate(log)
    group = GroupCommit(engine, gate)
    threaded: dict[int, int] = {}
    leader = _threads(lambda i: threaded.__setitem__(i, group.append(event(i))), 1)
    assert gate.entered.wait(T)  # the writer holds its first transaction open

    async def main() -> list[int]:
        doomed = asyncio.ensure_future(group.append_async(event(1)))
        kept = [asyncio.ensure_future(group.append_async(event(i))) for i in (2, 3)]
        await asyncio.sleep(0)  # the turn ends: the three are handed over
        while group.waiting < 3:
            await asyncio.sleep(0.001)
        doomed.cancel()  # its caller goes away before the commit
        gate.open()
        return list(await asyncio.gather(*kept))

    assert sorted(asyncio.run(main())) == [2, 3]
    for thread in leader:
        thread.join(T)
    assert threaded == {0: 0}
    assert gate.sizes == [1, 3]  # the cancelled event was still committed, with the others
    assert count(engine) == 4
    assert verified(log)


def test_read_door_from_a_coroutine_audits_before_returning(engine: Engine, tmp_path: Path) -> None:
    allowed = Door(engine, make_log(engine, tmp_path), TableGuard([allow()]))
    refused = Door(engine, allowed.audit, TableGuard([deny()]))
    seen: list[str] = []
    work = _reads(allowed, seen)
    # one read path: a coroutine runs the door's read in a worker thread
    assert asyncio.run(asyncio.to_thread(allowed.read, work.attempt, work)) == "data"
    denied = _reads(refused, seen)
    with pytest.raises(AccessDenied):
        asyncio.run(asyncio.to_thread(refused.read, denied.attempt, denied))
    assert seen == ["data"]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome FROM audit_entries ORDER BY seq")).all()
    assert [r.outcome for r in rows] == [0, 4]


# -- what each answer owes the witness (secretum.audit.witnessing.OWED) ------------------------


def _owing(call: Callable[[], object]) -> tuple[object, int]:
    """``call()`` in a context of its own that owes the witness; its result and the size owed."""
    owed = Owed()

    def run() -> object:
        OWED.set(owed)
        return call()

    return contextvars.copy_context().run(run), owed.size


def test_each_caller_owes_the_witness_its_own_entry_whoever_led_its_commit(
    engine: Engine, tmp_path: Path
) -> None:
    log, gate, group = _gated(engine, tmp_path)
    log._group = group  # (the log's own group commit, its transactions held by the gate)
    owed: dict[int, tuple[int, int]] = {}

    def reader(i: int) -> None:
        seq, size = _owing(lambda: log.append_committed(event(i)))
        owed[i] = (seq, size)  # type: ignore[assignment]

    leader = _threads(reader, 1)
    assert gate.entered.wait(T)
    followers = _threads(lambda i: reader(i + 1), 4)
    _wait_until(lambda: group.waiting == 4)
    gate.open()
    for thread in leader + followers:
        thread.join(T)
    assert gate.sizes == [1, 4]  # the four followers' entries: committed by one of them
    assert sorted(seq for seq, _ in owed.values()) == list(range(5))
    # each owes its own entry (the one that led the second batch: that whole batch)
    assert all(size in (seq + 1, 5) for seq, size in owed.values())
    assert sum(size == seq + 1 for seq, size in owed.values()) >= 4
    # a transaction of the caller's own (the door's writes): its end, raised by the commit
    _, size = _owing(lambda: _commit_one(log, engine))
    assert size == 6
    # outside any answer (a CLI, a duty): nothing to owe, nothing breaks
    assert OWED.get() is None
    assert log.append_committed(event(100)) == 6


def _commit_one(log: AuditLog, engine: Engine) -> int:
    with engine.begin() as conn:
        return log.append(conn, event(13))


def test_a_read_commits_in_the_callers_thread_when_no_one_else_commits(
    engine: Engine, tmp_path: Path
) -> None:
    """One caller at a time: no hand-over to another thread (the leader is the caller)."""
    committers: list[str] = []
    log = make_log(engine, tmp_path)

    def append_many(conn: Connection, events: Sequence[AuditEvent]) -> range:
        committers.append(threading.current_thread().name)
        return log.append_many(conn, events)

    group = GroupCommit(engine, append_many)
    assert [group.append(event(i)) for i in range(3)] == [0, 1, 2]
    assert committers == [threading.current_thread().name] * 3
    assert group.waiting == 0
