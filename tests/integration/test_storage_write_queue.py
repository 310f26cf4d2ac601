"""The in-process FIFO queue in front of SQLite's write lock (secretum.storage.locks).

The engine here is the one :func:`secretum.storage.db.make_engine` makes for a SQLite file: the
``QueuedConnection`` factory, and the listener that BEGINs wrapped by ``queued_begin``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from secretum.storage import db
from secretum.storage.locks import QueuedConnection, WriteQueue, queue_for


def _wait_until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# -- the queue ---------------------------------------------------------------------------------


def test_turns_are_taken_in_arrival_order() -> None:
    queue = WriteQueue()
    assert queue.acquire()
    order: list[int] = []

    def writer(i: int) -> None:
        assert queue.acquire()
        order.append(i)
        queue.release()

    threads = []
    for i in range(8):
        thread = threading.Thread(target=writer, args=(i,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda i=i: queue.waiting == i + 1)  # each one queued before the next
    queue.release()
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))
    assert queue.acquire(timeout=0)  # free again


def test_a_turn_that_does_not_come_in_time_gives_up() -> None:
    queue = WriteQueue()
    holder = threading.Thread(target=queue.acquire)
    holder.start()
    holder.join()
    assert not queue.acquire(timeout=0.05)
    assert queue.waiting == 0  # no stale waiter left behind
    queue.release()
    assert queue.acquire(timeout=0)


def test_a_thread_never_waits_for_its_own_turn() -> None:
    queue = WriteQueue()
    assert queue.acquire()
    started = time.monotonic()
    assert not queue.acquire(timeout=5)  # through another connection: go ahead unqueued
    assert time.monotonic() - started < 1


# -- wired into an engine -----------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "queued.db"
    eng = db.make_engine(f"sqlite:///{path}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield eng
    eng.dispose()


def _queue(engine: Engine) -> WriteQueue:
    return queue_for(str(engine.url.database))


def _driver(conn: object) -> QueuedConnection:
    driver = conn.connection.driver_connection  # type: ignore[attr-defined]
    assert isinstance(driver, QueuedConnection)
    return driver


def test_a_write_transaction_holds_its_turn_until_commit(engine: Engine) -> None:
    queue = _queue(engine)
    second_began = threading.Event()

    def second_writer() -> None:
        with engine.begin() as conn:
            second_began.set()
            conn.execute(text("INSERT INTO t VALUES (2)"))

    with engine.begin() as conn:
        assert _driver(conn)._has_turn
        conn.execute(text("INSERT INTO t VALUES (1)"))
        thread = threading.Thread(target=second_writer)
        thread.start()
        _wait_until(lambda: queue.waiting == 1)  # waits in our queue, not in SQLite
        assert not second_began.is_set()
    thread.join(5)
    assert second_began.is_set()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]
    assert queue.acquire(timeout=0)  # every turn was given back
    queue.release()


def test_rollback_and_failure_give_the_turn_back(engine: Engine) -> None:
    queue = _queue(engine)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("boom")
    assert queue.acquire(timeout=0)
    queue.release()
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert _driver(conn)._has_turn
        conn.rollback()
        assert not _driver(conn)._has_turn
    assert queue.acquire(timeout=0)
    queue.release()


def test_deferred_transactions_do_not_queue(engine: Engine) -> None:
    queue = _queue(engine)
    assert queue.acquire()  # a writer of this process holds the turn
    try:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
            assert not _driver(conn)._has_turn
    finally:
        queue.release()


def test_another_process_still_meets_the_busy_handler(engine: Engine) -> None:
    """The queue is per process: a writer outside it holds SQLite's lock, ours times out in
    SQLite as before, and the turn is given back."""
    other = sqlite3.connect(str(engine.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with engine.connect() as conn:
            _driver(conn).execute("PRAGMA busy_timeout=50")
            with pytest.raises(OperationalError, match="locked"), conn.begin():
                pass
            assert not _driver(conn)._has_turn
    finally:
        other.rollback()
        other.close()
    queue = _queue(engine)
    assert queue.acquire(timeout=0)
    queue.release()
    with engine.begin() as conn:  # and the engine works on
        conn.execute(text("INSERT INTO t VALUES (1)"))


def test_in_memory_databases_have_no_queue() -> None:
    conn = sqlite3.connect(":memory:", factory=QueuedConnection)
    assert conn.write_queue is None
    conn.take_turn()  # a no-op
    conn.close()
