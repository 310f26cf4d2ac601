"""The witness flusher: signed tree heads off the append path, and the barrier before answers.

The promise (issue 8): every committed audit entry is covered by something outside the database
*before the answer to its action leaves the server*. Not before ``append`` or the commit
returns: between the commit and the answer there is room to batch. So:

* A transaction that appended audit entries, once committed, only *notes* what it appended
  (:meth:`WitnessFlusher.committed`: its first ``seq``, its leaf hashes, the checkpoints it
  signed; in memory, no I/O) and raises the process's *committed size*.
* One thread per :class:`~secretum.audit.log.AuditLog`, the *flusher*, takes everything noted
  since its last flush, extends its in-memory tree (a compact range of the committed log) with
  those leaves (reading back from the database only the leaves other processes appended, or
  those of a transaction whose savepoint rolled back), signs **one** tree head for the new size,
  appends it to the witness file with the checkpoints the transactions signed (one ``write``)
  and ``fdatasync``-s, then raises the *witnessed size* and wakes the waiters. While it
  flushes, more transactions commit: the next flush covers them all with one signature and one
  line. The witness grows by one head per flush, not per transaction. While no one waits for
  the witness (no answer is held: a batch job appending, say), a flush lets commits gather for
  up to :data:`LINGER_SECONDS` first; a waiter arriving ends that at once.
* The **barrier**: :meth:`WitnessFlusher.wait` (threads) and :meth:`WitnessFlusher.wait_async`
  (coroutines) return once the witnessed size reaches a size (by default the committed size of
  this process when called), at once and without a lock when it already has. If the flush
  fails (or does not come in time) they raise
  :class:`~secretum.audit.checkpoint.WitnessError`: the entries committed, but the answer must
  not say the action was done. Whoever answers after audited work calls it: the web layer
  before the response starts (``secretum.web.witness``), CLI commands before they print
  success, ``Platform.close`` and server shutdown.

Crash semantics: entries committed but not yet witnessed when the process dies were never
answered (their barrier never passed). ``verify`` reports them as an *unwitnessed tail*, a note
(the database alone vouches for them), not a finding; every entry covered by a witnessed head is
protected against deletion, rewriting and reordering exactly as before.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection, Engine

from secretum.audit import store
from secretum.audit.checkpoint import Checkpoint, WitnessError, WitnessFile
from secretum.audit.merkle import CompactRange

_log = logging.getLogger(__name__)

#: Seconds the flusher thread waits for work before it ends (the next commit starts another).
IDLE_SECONDS = 1.0
#: Seconds a flush may wait for more commits while no one waits for it (no answer is held):
#: commits not yet answered need no head yet, and one head then covers several. A waiter
#: (the barrier) cuts it short at once.
LINGER_SECONDS = 0.05
#: Sizes whose written root the flusher remembers (to skip a second line for a checkpoint).
_REMEMBERED = 256
#: Patience of the last flush at a normal exit of the process.
EXIT_SECONDS = 5.0
#: Default patience of a barrier: a witness that cannot be flushed in this time fails it.
WAIT_SECONDS = 30.0


@dataclass(slots=True)
class Pending:
    """What one transaction appended, noted when it commits (module doc)."""

    start: int  # seq of its first entry
    leaves: list[bytes]  # leaf hashes of its entries start, start + 1, ...
    ms: int  # the latest event time among them: the head's timestamp
    #: The last checkpoint it signed, and the tree at that size.
    checkpoint: Checkpoint | None = None
    tree: CompactRange | None = None
    #: False when the leaves above may not be what committed (a savepoint rolled back, appends
    #: that did not follow each other): the flusher reads the committed log instead, up to
    #: ``committed_end`` (read on commit).
    exact: bool = True
    extra: list[Checkpoint] = field(default_factory=list)  # earlier checkpoints it signed
    committed_end: int | None = None
    #: Its committer is about to wait for the witness (a read's group commit): no lingering.
    awaited: bool = False

    @property
    def end(self) -> int:
        if self.committed_end is not None:
            return self.committed_end
        return self.start + len(self.leaves)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints it signed, if they are what committed."""
        if not self.exact:
            return []
        last = [] if self.checkpoint is None else [self.checkpoint]
        return [*self.extra, *last]


class Owed:
    """What one answer owes the witness: the log size covering every audit entry committed for
    it (0: none known). The barrier before the answer waits for that size (see :data:`OWED`)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0


#: The :class:`Owed` of the answer being prepared in this context (the web layer's barrier sets
#: a fresh one per request; worker threads run in a copy of the request's context, and so see
#: it). Every commit of audit entries raises it (:func:`owe`): the committing transaction's end
#: (``AuditLog``'s commit hook) and, for a group commit led by another thread, the caller's own
#: ``seq + 1``.
OWED: ContextVar[Owed | None] = ContextVar("secretum_audit_owed", default=None)


def owe(size: int) -> None:
    """Audit entries below ``size`` were committed for the answer of this context (if any)."""
    owed = OWED.get()
    if owed is not None and size > owed.size:
        owed.size = size


_AsyncWaiter = tuple[int, int, asyncio.Future[None]]

#: The flushers of this process, for a last flush when it exits normally (``atexit``): a
#: script or command that forgot to wait still leaves no unwitnessed tail.
_LIVE: weakref.WeakSet[WitnessFlusher] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for flusher in list(_LIVE):
        if flusher.committed_size > flusher.witnessed_size:
            with contextlib.suppress(Exception):
                flusher.wait(timeout=EXIT_SECONDS)


class WitnessFlusher:
    """Signs and flushes tree heads for what this process committed; the barrier (module doc).

    :param engine: the main database, read back for leaves this process did not append.
    :param key: signs the heads.
    :param witness: the witness file.
    :param checkpoint_every: beyond this many leaves to read back, the tree is rebuilt from the
        database's head row (sealed fewer than this many entries before the end).
    """

    def __init__(
        self,
        engine: Engine,
        key: Ed25519PrivateKey,
        witness: WitnessFile,
        checkpoint_every: int,
        idle_seconds: float = IDLE_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self._engine = engine
        self._key = key
        self._witness = witness
        self._every = checkpoint_every
        self._idle = idle_seconds
        self._linger = linger_seconds
        self._waiters = 0  # threads in wait(): with them (or coroutines), no lingering
        self._hurry = False  # a commit signed a checkpoint: no lingering either
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._queue: list[Pending] = []  # committed, not yet taken by the flusher
        self._kick = False  # a commit or a waiter asked for a flush
        #: Largest size this process committed / has on disk in the witness. Read without the
        #: lock on the fast path (an int: the read is atomic).
        self.committed_size = 0
        self.witnessed_size = 0
        self._failures = 0  # flushes that failed, since start
        self._error: BaseException | None = None  # why the last one failed
        self._async: list[_AsyncWaiter] = []
        # The flusher thread's own state.
        self._tree: CompactRange | None = None
        self._ms = 0
        self._unwritten: list[Checkpoint] = []  # signed, not yet on disk (a failed write)
        #: Roots this flusher wrote, by size (the latest few): a checkpoint whose root is
        #: already there at its size needs no second line.
        self._written: OrderedDict[int, bytes] = OrderedDict()
        #: Flushes that wrote the witness (lines appended: one head, plus checkpoints).
        self.flushes = 0
        #: Test hook: called by the flusher thread before it writes (to slow it, or fail it).
        self.before_flush: Callable[[], None] | None = None
        _LIVE.add(self)

    # -- commits ---------------------------------------------------------------------------

    def committed(self, pending: Pending) -> None:
        """A transaction's entries committed (called on its thread, right after the commit)."""
        with self._cond:
            self._queue.append(pending)
            self.committed_size = max(self.committed_size, pending.end)
            # A checkpoint reaches the witness at once (verify expects every database
            # checkpoint below the last witnessed head in the file).
            # So does an entry whose committer is about to wait for it (a read's).
            self._hurry = self._hurry or pending.checkpoint is not None or pending.awaited
            self._wake()

    def _wake(self) -> None:
        """(Under the lock.) Ask for a flush; start the thread if it is not running."""
        self._kick = True
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="audit-witness-flusher", daemon=True
            )
            self._thread.start()
        else:
            self._cond.notify_all()

    # -- the barrier -------------------------------------------------------------------------

    def wait(self, size: int | None = None, timeout: float | None = WAIT_SECONDS) -> int:
        """Block until the witness covers ``size`` (default: everything this process committed
        so far); return the witnessed size. WitnessError if a flush fails meanwhile, or after
        ``timeout`` seconds."""
        target = self.committed_size if size is None else size
        if target <= self.witnessed_size:
            return self.witnessed_size
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            failures = self._failures
            self._waiters += 1
            try:
                self._wake()
                while self.witnessed_size < target:
                    if self._failures != failures:
                        raise self._failed(target)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise WitnessError(
                            f"audit entries up to size {target} committed, but the witness "
                            f"file did not cover them within {timeout} s"
                        )
                    self._cond.wait(remaining)
                return self.witnessed_size
            finally:
                self._waiters -= 1

    async def wait_async(
        self, size: int | None = None, timeout: float | None = WAIT_SECONDS
    ) -> int:
        """:meth:`wait` for a coroutine: the event loop runs on; free when already covered."""
        target = self.committed_size if size is None else size
        if target <= self.witnessed_size:
            return self.witnessed_size
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self.witnessed_size >= target:
                return self.witnessed_size
            self._async.append((target, self._failures, done))
            self._wake()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            raise WitnessError(
                f"audit entries up to size {target} committed, but the witness file did not "
                f"cover them within {timeout} s"
            ) from None
        return self.witnessed_size

    def _failed(self, target: int) -> WitnessError:
        error = WitnessError(
            f"audit entries up to size {target} committed, but their tree head could not be "
            f"written to the witness file: {self._error.__class__.__name__}"
        )
        error.__cause__ = self._error
        return error

    # -- the flusher thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._kick:
                    self._cond.wait(self._idle)
                if not self._kick:
                    self._thread = None  # (a later _wake, under this lock, starts another)
                    return
                self._linger_while_no_one_waits()
                self._kick = self._hurry = False
                batch, self._queue = self._queue, []
                target = self.committed_size
                if not batch and not self._unwritten and target <= self.witnessed_size:
                    self._settle_async()
                    continue
            try:  # the tree and the heads: on failure, the batch waits for the next try
                tree, checkpoints, head = self._heads(batch, target)
            except Exception as exc:
                with self._cond:
                    self._queue[:0] = batch
                self._fail(exc)
                continue
            self._tree = tree
            # Checkpoints wait for the next try if the write fails; the head is signed anew.
            self._unwritten.extend(checkpoints)
            lines = self._unwritten if head is None else [*self._unwritten, head]
            try:
                if self.before_flush is not None:
                    self.before_flush()
                if lines:
                    self._witness.append_heads(lines)
                    for line in lines:
                        self._written[line.tree_size] = line.root_hash
                        self._written.move_to_end(line.tree_size)
                    while len(self._written) > _REMEMBERED:
                        self._written.popitem(last=False)
                    self._unwritten = []
                    self.flushes += 1
            except Exception as exc:
                self._fail(exc)
                continue
            with self._cond:
                self.witnessed_size = max(self.witnessed_size, tree.size)
                self._cond.notify_all()
                self._settle_async()

    def _linger_while_no_one_waits(self) -> None:
        """(Under the lock.) While no answer waits for the witness, let commits gather for a
        few milliseconds (one head then covers them all); a waiter ends it at once."""
        deadline = time.monotonic() + self._linger
        while not self._waiters and not self._async and not self._hurry:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _fail(self, exc: Exception) -> None:
        """Every waiter of the moment is told (WitnessError); the next commit or waiter retries."""
        _log.error("audit witness flush failed: %s", exc.__class__.__name__)
        with self._cond:
            self._failures += 1
            self._error = exc
            self._cond.notify_all()
            self._settle_async()

    def _heads(
        self, batch: list[Pending], target: int
    ) -> tuple[CompactRange, list[Checkpoint], Checkpoint | None]:
        """The committed tree covering ``batch`` (and at least ``target``); the checkpoints the
        batch signed (not yet written); one signed head for the tree's size, unless a
        checkpoint or an earlier line is already at that size."""
        checkpoints = [
            cp
            for pending in batch
            for cp in pending.checkpoints()
            if self._written.get(cp.tree_size) != cp.root_hash
        ]
        tree = self._advance(batch, target)
        if batch:
            self._ms = max(self._ms, *(pending.ms for pending in batch))
        sizes = {cp.tree_size for cp in (*self._unwritten, *checkpoints)}
        head = None
        if tree.size > self.witnessed_size and tree.size not in sizes | self._written.keys():
            head = Checkpoint.sign(self._key, tree.size, tree.root(), self._ms)
        return tree, checkpoints, head

    def _advance(self, batch: list[Pending], target: int) -> CompactRange:
        """The committed tree at ``target`` (or more): the remembered one extended with the
        batch's leaves, and the leaves of others read back (committed: an entry is only
        appended after the one before it committed)."""
        tree = None if self._tree is None else self._tree.copy()
        if tree is None or target - tree.size > self._every:
            with self._read() as conn:
                head = store.read_head(conn) or store.EMPTY_HEAD
            if tree is None or head.tree_size > tree.size:
                tree = CompactRange.from_bytes(head.tree_size, head.compact_range)
        exact = sorted((p for p in batch if p.exact and p.leaves), key=lambda p: p.start)
        for pending in exact:
            if pending.end <= tree.size:
                continue  # covered already (read back before its note came)
            if pending.start > tree.size:
                self._read_into(tree, tree.size, pending.start)
            tree.extend(pending.leaves[tree.size - pending.start :])
        if tree.size < target:
            self._read_into(tree, tree.size, target)
        return tree

    def _read_into(self, tree: CompactRange, start: int, end: int) -> None:
        with self._read() as conn:
            tree.extend(store.read_leaf_range(conn, start, end))

    def _read(self) -> Connection:
        """A connection for reading beside writers (SQLite: a deferred transaction, which takes
        no write lock)."""
        return self._engine.connect().execution_options(sqlite_begin="DEFERRED")

    def _settle_async(self) -> None:
        """(Under the lock.) Settle the coroutines whose size is witnessed, or whose wait saw a
        flush fail; one call per event loop."""
        if not self._async:
            return
        keep: list[_AsyncWaiter] = []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], int | None]]] = {}
        for target, failures, done in self._async:
            if target <= self.witnessed_size:
                by_loop.setdefault(done.get_loop(), []).append((done, None))
            elif failures != self._failures:
                by_loop.setdefault(done.get_loop(), []).append((done, target))
            else:
                keep.append((target, failures, done))
        self._async = keep
        error = self._error
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: no one waits there
                loop.call_soon_threadsafe(self._settle, settled, error)

    def _settle(
        self, settled: list[tuple[asyncio.Future[None], int | None]], error: BaseException | None
    ) -> None:
        for done, failed_target in settled:
            if done.done():  # cancelled: its caller has gone
                continue
            if failed_target is not None:
                failure = WitnessError(
                    f"audit entries up to size {failed_target} committed, but their tree head "
                    f"could not be written to the witness file: {error.__class__.__name__}"
                )
                failure.__cause__ = error
                done.set_exception(failure)
            else:
                done.set_result(None)
