"""Group commit: durable audit appends from many threads, committed together.

An audited *read* changes nothing but the audit log, yet its entry must be durable before the
data leaves the server. Committing each entry on its own costs one transaction, one write lock
and one ``fsync`` per read; under load the readers queue for the lock one by one.

:class:`GroupCommit` lets concurrent callers share that cost. A caller hands in its event and
waits. The first caller to find no commit in progress becomes the *leader*: it takes every event
waiting at that moment, appends them in one transaction (:meth:`AuditLog.append_many`) and
commits; then it wakes everyone. Callers whose event was in that batch return with its ``seq``;
of the others (they arrived while the leader was committing) one becomes the next leader and
takes them all. Nobody waits for more than the commit in progress plus its own; with one caller
at a time this is exactly one transaction per event, as before.

The promise to each caller is unchanged: when :meth:`GroupCommit.append` returns, its entry is
committed (on SQLite with ``synchronous=FULL``, on disk); when it raises, the entry is not. If a
batch fails, its events are retried one transaction each, so one bad event fails only its own
caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from secretum.audit.model import AuditEvent

#: Appends ``events`` in the given transaction; returns their seqs (``AuditLog.append_many``).
AppendMany = Callable[[Connection, Sequence[AuditEvent]], range]

#: Most events one transaction takes (a bound on the leader's work and on the insert's size).
MAX_BATCH = 256


@dataclass(eq=False, slots=True)
class _Waiter:
    event: AuditEvent
    seq: int | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class GroupCommit:
    """Commits audit events of concurrent callers in shared transactions (see module doc)."""

    def __init__(self, engine: Engine, append_many: AppendMany, max_batch: int = MAX_BATCH):
        if max_batch < 1:
            raise ValueError("max_batch >= 1")
        self._engine = engine
        self._append_many = append_many
        self._max_batch = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[_Waiter] = []
        self._committing = False
        #: Transactions committed and events in them, since start (for tests and metrics).
        self.batches = 0
        self.events = 0

    def append(self, event: AuditEvent) -> int:
        """Append ``event`` durably; return its ``seq`` once committed (or raise why not)."""
        me = _Waiter(event)
        with self._cond:
            self._waiting.append(me)
            while not me.done:
                if self._committing:
                    self._cond.wait()
                    continue
                # Nobody is committing and ours is still waiting: lead (the first max_batch
                # waiting, which holds ours unless it came later: then lead again after).
                self._committing = True
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    for waiter in batch:
                        if waiter.seq is None and waiter.error is None:  # interrupted
                            waiter.error = RuntimeError("the audit commit was interrupted")
                        waiter.done = True
                    self._committing = False
                    self._cond.notify_all()
        if me.error is not None:
            raise me.error
        assert me.seq is not None
        return me.seq

    @property
    def waiting(self) -> int:
        """Callers whose event waits for a transaction (not counting one being committed)."""
        with self._cond:
            return len(self._waiting)

    def _commit(self, batch: list[_Waiter]) -> None:
        try:
            seqs = self._transaction([w.event for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for waiter in batch:  # one at a time: a bad event fails only its own caller
                try:
                    waiter.seq = self._transaction([waiter.event])[0]
                except Exception as one:
                    waiter.error = one
            return
        for waiter, seq in zip(batch, seqs, strict=True):
            waiter.seq = seq

    def _transaction(self, events: list[AuditEvent]) -> range:
        with self._engine.begin() as conn:
            seqs = self._append_many(conn, events)
        self.batches += 1
        self.events += len(events)
        return seqs
