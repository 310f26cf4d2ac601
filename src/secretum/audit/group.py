"""Group commit: durable audit appends from many callers, committed together, one at a time.

An audited *read* changes nothing but the audit log, yet its entry must be durable before the
data leaves the server. Committing each entry on its own costs one transaction, one write lock
and one ``fsync`` per read; under load the readers queue for the lock one by one.

:class:`GroupCommit` lets concurrent callers share that cost. Threads calling
:meth:`GroupCommit.append` commit themselves, by turns: a caller that finds no commit under
way becomes the *leader*, takes every event waiting (its own first in line), appends them in one
transaction (:meth:`AuditLog.append_many`), commits, and answers each caller with its ``seq``;
the others wait, each on a lock of its own, woken once: with their answer, or to lead the next
batch (what arrived during the commit) when the leader is done. With one caller at a time this
is one transaction per event in the caller's own thread (no hand-over to another thread); under
load, one per batch and one wake-up per caller.

Coroutines (:meth:`GroupCommit.append_async`) and :meth:`GroupCommit.submit` queue in the same
line but do not lead: when one of theirs comes first, a writer thread (started for that batch)
leads it, and the event loop goes on serving meanwhile. Coroutines are handed over a loop turn
at a time: the events of every request the event loop served in one turn reach the line
together (at the start of the next turn), and the leader answers all of one loop's callers in a
batch with one wake-up of that loop. Handed over one by one, the writer would take the first
event of a busy loop alone, commit it while the loop serves the next request, take that one
alone, and so on: a transaction (and a thread switch) per read, measured at 1.4 events a batch
with 50 concurrent readers.

The promise to each caller: when ``append`` returns, its entry is committed (on SQLite with
``synchronous=FULL``, on disk). A signed tree head covering it reaches the witness file just
after, written by the log's witness flusher (:mod:`secretum.audit.witnessing`) off this path:
whoever answers the action waits for it (the web layer's barrier before a response starts).
With ``durable`` (``AuditLog(group_waits_for_witness=True)``), the leader instead hands each
committed batch to a second thread, the *syncer*, which calls ``durable`` (the barrier) and only
then answers: the database commit of one batch overlaps the wait for the witness of the one
before, and one wait serves every batch committed meanwhile.

When ``append`` raises, the entry is not committed, except with
:class:`~secretum.audit.checkpoint.WitnessError` (committed, not witnessed: the caller must not
say "done"). If a batch fails to commit, its events are retried one transaction each, so one bad
event fails only its own caller; a batch that committed is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from sqlalchemy.engine import Connection, Engine

from secretum.audit.checkpoint import WitnessError
from secretum.audit.model import AuditEvent

#: Appends ``events`` in the given transaction; returns their seqs (``AuditLog.append_many``).
AppendMany = Callable[[Connection, Sequence[AuditEvent]], range]

#: Most events one transaction takes (a bound on the writer's work and on the insert's size).
MAX_BATCH = 256
#: Seconds the syncer thread waits for work before it ends (the next batch starts another).
IDLE_SECONDS = 1.0


class _Ticket:
    """A thread's event in the leader's queue: the thread sleeps on ``_wake`` (a lock held
    from the start) until whoever answers it, or hands it the lead, releases it once."""

    __slots__ = ("_wake", "answered", "lead", "result")

    def __init__(self) -> None:
        self._wake = threading.Lock()
        self._wake.acquire()
        self.answered = False
        self.lead = False  # woken to lead the next batch (not answered yet)
        self.result: int | BaseException = 0

    def set_result(self, seq: int) -> None:
        self.result, self.answered = seq, True
        self._wake.release()

    def set_exception(self, exc: BaseException) -> None:
        self.result, self.answered = exc, True
        self._wake.release()

    def hand_lead(self) -> None:
        self.lead = True
        self._wake.release()

    def wait(self) -> None:
        self._wake.acquire()


#: Who waits for an event's seq: a thread (a ticket, or a concurrent future) or a coroutine (an
#: asyncio future, only ever settled on its own loop).
_Waiter = _Ticket | Future[int] | asyncio.Future[int]
_Item = tuple[AuditEvent, _Waiter]
#: What the writer tells each waiter: the seq, or why there is none.
_Result = int | BaseException


class GroupCommit:
    """Commits the audit events of concurrent callers in shared transactions (module doc)."""

    def __init__(
        self,
        engine: Engine,
        append_many: AppendMany,
        max_batch: int = MAX_BATCH,
        idle_seconds: float = IDLE_SECONDS,
        durable: Callable[[], object] | None = None,
    ) -> None:
        """``durable``: makes what the committed batches wrote outside the database durable
        (the witness flush), run by the syncer thread before it answers them; None: the writer
        answers right after the commit."""
        if max_batch < 1:
            raise ValueError("max_batch >= 1")
        self._engine = engine
        self._append_many = append_many
        self._max_batch = max_batch
        self._idle = idle_seconds
        self._durable = durable
        #: Events not yet taken by a leader, in arrival order, and whether a leader is at work
        #: (both under ``_mutex``; the lead passes from caller to caller while events wait).
        self._line: list[_Item] = []
        self._leading = False
        self._mutex = threading.Lock()
        self._committed: queue.SimpleQueue[tuple[list[_Waiter], list[_Result]]] = (
            queue.SimpleQueue()
        )
        self._syncer: threading.Thread | None = None
        #: Per event loop, the events its coroutines appended during the current turn.
        self._turns: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        #: Transactions committed and events in them, since start (for tests and metrics).
        self.batches = 0
        self.events = 0

    def append(self, event: AuditEvent) -> int:
        """Append ``event`` durably; return its ``seq`` once committed (or raise why not).

        The calling thread leads the commit if none is under way, else waits for its answer
        (or for the lead) on its own lock (module doc)."""
        ticket = _Ticket()
        with self._mutex:
            self._line.append((event, ticket))
            lead = not self._leading
            self._leading = True
        while True:
            if lead:
                self._lead()
            ticket.wait()
            if ticket.answered:
                break
            lead, ticket.lead = ticket.lead, False
        if isinstance(ticket.result, BaseException):
            raise ticket.result
        return ticket.result

    def _lead(self) -> None:
        """Commit the events waiting in line (a batch), then pass the lead on: to the thread
        first in line, to a writer thread if a coroutine or a future is first, or end it."""
        try:
            with self._mutex:
                batch = self._line[: self._max_batch]
                del self._line[: self._max_batch]
            if batch:
                self._commit(batch)
        finally:
            with self._mutex:
                self._pass_lead()

    def _pass_lead(self) -> None:
        """(Under ``_mutex``, by the leader.)"""
        if not self._line:
            self._leading = False
            return
        first = self._line[0][1]
        if isinstance(first, _Ticket):
            first.hand_lead()
        else:
            threading.Thread(target=self._lead, name="audit-group-commit", daemon=True).start()

    async def append_async(self, event: AuditEvent) -> int:
        """:meth:`append` for a coroutine: the event loop runs on while the writer commits.

        The event waits for the end of the loop's turn, then goes to the writer with the
        others of that turn (module doc)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = []
            loop.call_soon(self._end_of_turn, loop)
        turn.append((event, done))
        return await done

    def submit(self, event: AuditEvent) -> Future[int]:
        """Hand ``event`` to the writer; the future holds its ``seq`` once committed."""
        done: Future[int] = Future()
        self._hand_over([(event, done)])
        return done

    def _end_of_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hand_over(self._turns.pop(loop))

    def _hand_over(self, items: list[_Item]) -> None:
        """Events of callers that do not commit themselves: a writer thread leads if no one
        does."""
        with self._mutex:
            self._line.extend(items)
            if not self._leading:
                self._leading = True
                self._pass_lead()

    @property
    def waiting(self) -> int:
        """Events handed in and not yet taken by a leader."""
        return len(self._line)

    def _commit(self, batch: Sequence[_Item]) -> None:
        results: list[_Result]
        try:
            results = list(self._transaction([event for event, _ in batch]))
        except BaseException as exc:
            # WitnessError: the batch committed, only its witness line failed: no retry.
            if len(batch) == 1 or not isinstance(exc, Exception) or isinstance(exc, WitnessError):
                results = [exc] * len(batch)
            else:  # one at a time: a bad event fails only its own caller
                results = [self._alone(event) for event, _ in batch]
        waiters = [waiter for _, waiter in batch]
        if self._durable is None:
            _answer(waiters, results)
            return
        with self._mutex:  # (the syncer ends under this lock: nothing slips in between)
            self._committed.put((waiters, results))
            if self._syncer is None:
                self._syncer = threading.Thread(
                    target=self._sync, name="audit-witness-sync", daemon=True
                )
                self._syncer.start()

    def _sync(self) -> None:
        """The syncer: one flush for every batch committed meanwhile, then their answers."""
        assert self._durable is not None
        while True:
            try:
                first = self._committed.get(timeout=self._idle)
            except queue.Empty:
                with self._mutex:
                    if self._committed.empty():
                        self._syncer = None
                        return
                continue
            done = [first]
            while True:
                try:
                    done.append(self._committed.get_nowait())
                except queue.Empty:
                    break
            failure: BaseException | None = None
            try:
                self._durable()
            except BaseException as exc:
                failure = WitnessError(
                    f"audit entries committed, but the witness file could not be flushed: "
                    f"{exc.__class__.__name__}"
                )
                failure.__cause__ = exc
            for waiters, results in done:
                if failure is not None:
                    results = [r if isinstance(r, BaseException) else failure for r in results]
                _answer(waiters, results)

    def _alone(self, event: AuditEvent) -> _Result:
        try:
            return self._transaction([event])[0]
        except BaseException as exc:
            return exc

    def _transaction(self, events: list[AuditEvent]) -> range:
        with self._engine.begin() as conn:
            seqs = self._append_many(conn, events)
        self.batches += 1
        self.events += len(events)
        return seqs


def _answer(waiters: list[_Waiter], results: list[_Result]) -> None:
    """Settle each waiter: threads' futures here, coroutines' on their loop, one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], _Result]]] = {}
    for waiter, result in zip(waiters, results, strict=True):
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, result))
        elif isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: no one waits there any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[int], _Result]]) -> None:
    for done, result in settled:
        if done.done():  # cancelled: its caller has gone
            continue
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)
