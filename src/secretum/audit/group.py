"""Group commit: durable audit appends from many callers, committed together by one writer.

An audited *read* changes nothing but the audit log, yet its entry must be durable before the
data leaves the server. Committing each entry on its own costs one transaction, one write lock
and one ``fsync`` per read; under load the readers queue for the lock one by one.

:class:`GroupCommit` lets concurrent callers share that cost. Callers hand their event to one
writer thread and wait: threads with :meth:`GroupCommit.append`, coroutines with
:meth:`GroupCommit.append_async` (the event loop goes on serving meanwhile). The writer takes
every event waiting, appends them in one transaction (:meth:`AuditLog.append_many`), commits,
and answers each caller with its ``seq``; what arrived during that commit goes into the next
one. With one caller at a time this is one transaction per event, as before; under load, one
per batch. The writer thread starts with the first event and ends after a second idle.

The promise to each caller is unchanged: when ``append`` returns, its entry is committed (on
SQLite with ``synchronous=FULL``, on disk); when it raises, the entry is not. If a batch fails,
its events are retried one transaction each, so one bad event fails only its own caller.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from sqlalchemy.engine import Connection, Engine

from secretum.audit.model import AuditEvent

#: Appends ``events`` in the given transaction; returns their seqs (``AuditLog.append_many``).
AppendMany = Callable[[Connection, Sequence[AuditEvent]], range]

#: Most events one transaction takes (a bound on the writer's work and on the insert's size).
MAX_BATCH = 256
#: Seconds the writer thread waits for work before it ends (the next event starts another).
IDLE_SECONDS = 1.0

_Item = tuple[AuditEvent, "Future[int]"]


class GroupCommit:
    """Commits the audit events of concurrent callers in shared transactions (module doc)."""

    def __init__(
        self,
        engine: Engine,
        append_many: AppendMany,
        max_batch: int = MAX_BATCH,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch >= 1")
        self._engine = engine
        self._append_many = append_many
        self._max_batch = max_batch
        self._idle = idle_seconds
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._mutex = threading.Lock()
        self._writer: threading.Thread | None = None
        #: Transactions committed and events in them, since start (for tests and metrics).
        self.batches = 0
        self.events = 0

    def append(self, event: AuditEvent) -> int:
        """Append ``event`` durably; return its ``seq`` once committed (or raise why not)."""
        return self.submit(event).result()

    async def append_async(self, event: AuditEvent) -> int:
        """:meth:`append` for a coroutine: the event loop runs on while the writer commits."""
        return await asyncio.wrap_future(self.submit(event))

    def submit(self, event: AuditEvent) -> Future[int]:
        """Hand ``event`` to the writer; the future holds its ``seq`` once committed."""
        done: Future[int] = Future()
        with self._mutex:
            self._inbox.put((event, done))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write, name="audit-group-commit", daemon=True
                )
                self._writer.start()
        return done

    @property
    def waiting(self) -> int:
        """Events handed in and not yet taken by the writer."""
        return self._inbox.qsize()

    def _write(self) -> None:
        while True:
            try:
                first = self._inbox.get(timeout=self._idle)
            except queue.Empty:
                with self._mutex:  # (submit puts under this lock: nothing slips in between)
                    if self._inbox.empty():
                        self._writer = None
                        return
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            seqs = self._transaction([event for event, _ in batch])
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for _, done in batch:
                    done.set_exception(exc)
                return
            for event, done in batch:  # one at a time: a bad event fails only its own caller
                try:
                    done.set_result(self._transaction([event])[0])
                except BaseException as one:
                    done.set_exception(one)
            return
        for (_, done), seq in zip(batch, seqs, strict=True):
            done.set_result(seq)

    def _transaction(self, events: list[AuditEvent]) -> range:
        with self._engine.begin() as conn:
            seqs = self._append_many(conn, events)
        self.batches += 1
        self.events += len(events)
        return seqs
