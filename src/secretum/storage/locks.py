"""An in-process FIFO queue in front of SQLite's write lock.

SQLite lets one writer at a time hold a database; a ``BEGIN IMMEDIATE`` that finds the lock
taken is retried by the busy handler, which *sleeps* between attempts (1, 2, 5, 10 ... 100 ms).
When the threads of one process compete for the lock, whoever tries at the right moment wins:
the others sleep in ever longer steps while the lock is free most of the time. The result is
a long latency tail, and a lock left idle while writers sleep.

:class:`WriteQueue` makes the writers of one process take turns instead: a thread about to
``BEGIN IMMEDIATE`` (or ``EXCLUSIVE``) waits for its turn on a Python lock, first come first
served, and the lock goes straight to the next waiter when the transaction ends (commit,
rollback, or the connection closed). Only then does SQLite see the ``BEGIN``, so within one
process the busy handler is not needed any more.

It changes nothing to correctness: SQLite's own locking still decides. Writers in other
processes, deferred transactions that upgrade to writing, and a thread whose turn does not come
within ``timeout`` (it then goes ahead unqueued) all fall back on the busy handler
(``busy_timeout``) as before.

Wiring, in :func:`secretum.storage.db.make_engine` for a SQLite file::

    connect_args = {..., "factory": QueuedConnection}    # commit/rollback/close end the turn
    event.listen(engine, "begin", queued_begin(_sqlite_begin))   # the turn, then BEGIN
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: How long a writer waits for its turn before going ahead unqueued (SQLite then decides).
DEFAULT_TIMEOUT = 30.0
_WRITE_MODES = frozenset({"IMMEDIATE", "EXCLUSIVE"})


class WriteQueue:
    """A FIFO lock: :meth:`acquire` returns in arrival order; :meth:`release` hands over.

    Not reentrant, and not bound to a thread for release (the turn belongs to a connection,
    which a pool may hand from thread to thread between transactions).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[tuple[threading.Lock, int]] = deque()
        self._held = False
        self._holder = 0  # thread that took the current turn

    def acquire(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait for this thread's turn (at most ``timeout`` seconds); False if it did not come,
        and at once if this thread holds the current turn (through another connection: it would
        wait for itself)."""
        me = threading.get_ident()
        with self._mutex:
            if not self._held:
                self._held, self._holder = True, me
                return True
            if self._holder == me:
                return False
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append((turn, me))
        if turn.acquire(timeout=timeout):
            return True
        with self._mutex:
            try:
                self._waiters.remove((turn, me))
            except ValueError:  # handed over just after the timeout: it is ours after all
                return True
        return False

    def release(self) -> None:
        """End the current turn: the longest waiter gets it (no barging), or it becomes free."""
        with self._mutex:
            if self._waiters:
                turn, self._holder = self._waiters.popleft()
                turn.release()  # the queue stays held: the turn moves to that waiter
            else:
                self._held, self._holder = False, 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)


_queues: dict[str, WriteQueue] = {}
_queues_mutex = threading.Lock()


def queue_for(path: str) -> WriteQueue:
    """The queue of the database file at ``path`` (one per file and process)."""
    key = os.path.realpath(path)
    with _queues_mutex:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = WriteQueue()
        return queue


class QueuedConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions take their turn in the file's queue.

    Pass it as ``factory`` to ``sqlite3.connect`` (``connect_args`` of the engine). The turn is
    taken before ``BEGIN`` (:func:`queued_begin`, in the engine's ``begin`` event) and given
    back when the transaction ends: after ``commit``/``rollback`` returns (the write lock is
    then free), or when the connection is closed.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fsdecode(database) if isinstance(database, str | bytes | os.PathLike) else ""
        in_memory = name in ("", ":memory:") or name.startswith("file::memory:")
        self.write_queue: WriteQueue | None = None if in_memory else queue_for(name)
        # as long as the busy handler would wait (sqlite3.connect's timeout, default 5 s)
        self.queue_timeout = float(kwargs.get("timeout", args[0] if args else 5.0))
        self._has_turn = False

    def take_turn(self) -> None:
        """Wait for this connection's turn to write (no-op if it has it, or has no queue)."""
        if self._has_turn or self.write_queue is None:
            return
        self._has_turn = self.write_queue.acquire(self.queue_timeout)

    def end_turn(self) -> None:
        if self._has_turn:
            self._has_turn = False
            assert self.write_queue is not None
            self.write_queue.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()


def _queued_driver(conn: Any) -> QueuedConnection | None:
    """The driver connection of a SQLAlchemy connection about to begin a write transaction
    (the ``sqlite_begin`` execution option, default ``IMMEDIATE``), if it queues."""
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    driver = conn.connection.driver_connection
    return driver if mode in _WRITE_MODES and isinstance(driver, QueuedConnection) else None


def queued_begin(begin: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap the engine's ``begin`` listener that emits ``BEGIN``: a write transaction first
    waits for its turn, and gives it back if its ``BEGIN`` fails (SQLite's busy timeout, when
    another process holds the lock). Deferred transactions do not queue."""

    def begin_in_turn(conn: Any) -> None:
        driver = _queued_driver(conn)
        if driver is None:
            begin(conn)
            return
        driver.take_turn()
        try:
            begin(conn)
        except BaseException:
            driver.end_turn()
            raise

    return begin_in_turn
