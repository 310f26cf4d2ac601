"""The audit log: append in the caller's transaction, checkpoint, prove, verify, export.

An append is one ``INSERT`` of the entry (see :mod:`secretum.audit.store`; on SQLite a check
then the insert): at the position this process expects next, provided the previous entry is
there, the position is free and no checkpoint is due. Nothing else is written and no lock is
taken but the entry's own: on SQLite a durable append costs one page of WAL. When that inserts
nothing (another writer went first, the expected position was rolled back, a concurrent
transaction holds the previous entry), the append asks why and moves after the last entry it
saw, which on PostgreSQL waits for a transaction that still holds it. When a checkpoint is due
(and for the log's first entry, a batch, or after a few tries), the append numbers its entries
from ``max(seq) + 1``, then locks the head row and, if a checkpoint is due, seals: it computes
the tree from the head's compact range plus the leaf hashes appended since (fewer than
``checkpoint_every``), signs, and rewrites the head. Either way the entry, the head and the
checkpoint commit or roll back with the caller's transaction.

Checkpoints (RFC 9162 §4.10 signed tree heads) are signed inside the appending transaction when
``checkpoint_every`` entries or ``checkpoint_seconds`` (of event time) have passed since the last
one, so a checkpoint exists in the database exactly when its entries do. They seal the head row
(the compact range that spares later appends rereading the tree).

**Witnessed tree heads.** A checkpoint every thousand entries leaves the newest entries covered
by nothing outside the database: an intruder could delete or rewrite them (a shred, a
break-the-glass) and recompute their hashes. So every committed entry is covered by a signed
tree head (a :class:`~secretum.audit.checkpoint.Checkpoint`: size, root, time, Ed25519
signature) on disk in the witness file *before the answer to its action leaves the server*
(not before ``append`` or the commit returns: that would put a signature and a second
``fdatasync`` in every transaction). A transaction that appended entries, once committed, only
notes them for the witness flusher (:mod:`secretum.audit.witnessing`): one background thread
per log that signs one head covering everything committed so far, appends it (with the
checkpoints the transactions signed: every checkpoint of the database reaches the witness,
CLI ones included) and flushes it, once per flush, however many transactions it covers. Whoever
answers waits for it: :meth:`AuditLog.wait_witnessed` / :meth:`AuditLog.witnessed_async`, the
barrier (the web layer before a response starts, CLI commands before they print success,
``Platform.close`` and server shutdown). A failed witness write fails the barrier with
:class:`~secretum.audit.checkpoint.WitnessError`: the entries committed, the action is not
reported done.

How it is wired: an append notes its leaf hashes on the transaction (``Pending``); the engine's
``commit`` event (SQLAlchemy Core has no after-commit event) commits the driver connection
itself, then hands the note to the flusher (after a savepoint rolled back, or appends that were
not contiguous, with the committed size read back: the flusher then reads those leaves from the
database), then lets SQLAlchemy's own commit run (a no-op on a driver connection with nothing
left to commit). A failed driver commit is raised as SQLAlchemy's error (nothing noted).
Rolled-back transactions note nothing. The flusher keeps the committed tree as a compact range,
extended with the noted leaves and the leaves other processes appended (read back, committed).

Crash semantics: entries committed but not yet witnessed when the process dies were never
answered (the barrier had not passed); verify reports them as an unwitnessed tail, a note, not
a finding. Every entry covered by a witnessed head is protected as below.

``verify`` then checks the database against every witnessed head (see
:mod:`secretum.audit.verify`): deleting, rewriting (hashes recomputed or not) or reordering any
committed entry, the newest included, is found and the first affected entry named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.base import Transaction
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from secretum.audit import store
from secretum.audit.checkpoint import Checkpoint, WitnessError, WitnessFile
from secretum.audit.fhir import to_audit_event
from secretum.audit.group import GroupCommit
from secretum.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from secretum.audit.model import AuditEvent
from secretum.audit.store import HeadState
from secretum.audit.verify import CheckpointPolicy, VerifyReport, verify_log
from secretum.audit.witnessing import WAIT_SECONDS, Pending, WitnessFlusher, owe

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
#: A checkpoint time no log has: the time rule of the append statement never fires.
_NO_TIME_RULE = -(2**62)
#: Attempts of an append at the positions it expects before it numbers from ``max(seq) + 1``
#: under the head's lock: each costs a statement (a round trip on PostgreSQL).
_HOPS = 8


def _ms(when: datetime) -> int:
    """Milliseconds since the epoch, rounded down (exactly: no float on the way)."""
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return (when - _EPOCH) // _ONE_MS


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 §2.1.3: entry ``leaf_index`` is in the tree of ``tree_size`` with ``root_hash``."""

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    path: list[bytes]

    def verify(self) -> bool:
        return verify_inclusion(
            self.leaf_index, self.tree_size, self.leaf_hash, self.path, self.root_hash
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 §2.1.4: the tree of size ``first`` is a prefix of the tree of size ``second``."""

    first: int
    second: int
    first_hash: bytes
    second_hash: bytes
    path: list[bytes]

    def verify(self) -> bool:
        return verify_consistency(
            self.first, self.second, self.first_hash, self.second_hash, self.path
        )


class AuditLog:
    """The tamper-evident audit log of one database.

    :param engine: the main database (its schema created with the shared ``metadata``).
    :param signing_key: Ed25519 key from the keystore, to sign checkpoints; ``None`` for a
        read-only instance (verify, proofs, export) that never checkpoints.
    :param witness_path: file outside the database that receives one line per committed
        checkpoint; ``None`` keeps checkpoints in the database only.
    :param checkpoint_every: sign a checkpoint at least every this many entries.
    :param checkpoint_seconds: ... and when an entry comes this long (event time) after the last.
    """

    def __init__(
        self,
        engine: Engine,
        signing_key: Ed25519PrivateKey | None = None,
        witness_path: str | Path | None = None,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        group_waits_for_witness: bool = False,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_every >= 1 and checkpoint_seconds > 0")
        self.engine = engine
        self.witness = None if witness_path is None else WitnessFile(witness_path)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._key = signing_key
        # Time rule of checkpoints, in whole ms: due when now_ms - last_ms >= _window_ms.
        self._window_ms = math.ceil(checkpoint_seconds * 1000)
        # Where this process expects the next entry: only a hint, which the append statement
        # checks (a stale one costs the slow path), so threads share it without a lock. Not
        # reserved ahead: on SQLite the caller's BEGIN IMMEDIATE already holds the write lock
        # when append reads it, so the last append of this process tells the truth.
        self._next_seq: int | None = None
        # Witnessing (module doc): per open transaction, what it appended; the flusher that
        # signs heads for what committed, and the barrier before answers.
        self._pending: dict[Transaction, Pending] = {}
        self._flusher: WitnessFlusher | None = None
        if self.witness is not None and signing_key is not None:
            self._flusher = WitnessFlusher(engine, signing_key, self.witness, checkpoint_every)
        # The group commit answers right after its commit (or, with group_waits_for_witness,
        # once the witness covers the batch: its syncer thread waits for the flusher).
        durable: Callable[[], object] | None = None
        if self._flusher is not None and group_waits_for_witness:
            durable = self._flusher.wait
        self._group = GroupCommit(engine, self._append_awaited, durable=durable)
        if self._flusher is not None:
            sa_event.listen(engine, "commit", self._on_commit)
            sa_event.listen(engine, "rollback", self._on_rollback)
            sa_event.listen(engine, "rollback_savepoint", self._on_savepoint_rollback)

    @property
    def public_key(self) -> Ed25519PublicKey | None:
        return None if self._key is None else self._key.public_key()

    @property
    def policy(self) -> CheckpointPolicy:
        """When appends sign checkpoints (what verify expects of the entries after the last)."""
        seconds = None if self._key is None else self.checkpoint_seconds
        return CheckpointPolicy(self.checkpoint_every, seconds)

    # -- append -----------------------------------------------------------------------------

    def append(self, conn: Connection | Session, event: AuditEvent) -> int:
        """Append ``event`` in the caller's open transaction; return its ``seq``.

        Nothing is committed here: the entry (and a checkpoint, if one is due) commits or rolls
        back with the action it records.
        """
        connection = conn.connection() if isinstance(conn, Session) else conn
        seq = self._next_seq
        # No checkpoint due: fewer than checkpoint_every entries after the sealed size, and the
        # last checkpoint after this time (event time - checkpoint_seconds).
        min_ms = _NO_TIME_RULE if self._key is None else _ms(event.recorded) - self._window_ms
        hops, explain = _HOPS, False
        while seq and hops:  # seq 0: the log's first entry, which creates the head
            hops -= 1
            leaf = sha256(event.leaf_input(seq)).digest()
            row = store.entry_row(seq, event, leaf)
            tried = store.try_append(
                connection, row, self.checkpoint_every, min_ms, explain=explain
            )
            if tried.inserted:
                self._next_seq = seq + 1
                self._note(connection, seq, [leaf], _ms(event.recorded))
                return seq
            if tried.quiet is None:  # PostgreSQL's plain statement does not say why: ask
                explain = True
                continue
            if not tried.quiet:  # a checkpoint is due (or there is no head): seal
                break
            last = store.log_size(connection) - 1 if tried.last is None else tried.last
            # `seq` taken: go after it and after the last entry seen. Entry seq - 1 missing:
            # take the place after the last entry seen, which waits for the transaction that
            # holds it, if any (PostgreSQL), or fills a rolled-back gap.
            seq = max(seq + 1, last + 1) if tried.follows else last + 1
        return self._append_locked(conn, connection, (event,)).start

    def append_committed(self, event: AuditEvent) -> int:
        """Append ``event`` in a transaction of its own, committed (durable) when this returns;
        return its ``seq``. Concurrent callers share transactions (group commit, see
        :mod:`secretum.audit.group`): for actions that wrote nothing else, such as reads."""
        seq = self._group.append(event)
        owe(seq + 1)  # (committed by whichever thread led the batch: the answer owes it)
        return seq

    async def append_committed_async(self, event: AuditEvent) -> int:
        """:meth:`append_committed` for a coroutine: the event loop runs on meanwhile."""
        seq = await self._group.append_async(event)
        owe(seq + 1)
        return seq

    def _append_awaited(self, conn: Connection, events: Sequence[AuditEvent]) -> range:
        """The group commit's batch: :meth:`append_many`, its callers about to wait for the
        witness (the flusher starts at once, without lingering for more commits)."""
        seqs = self.append_many(conn, events)
        pending = self._pending.get(conn.get_transaction())  # type: ignore[arg-type]
        if pending is not None:
            pending.awaited = True
        return seqs

    @property
    def group_commit(self) -> GroupCommit:
        return self._group

    def append_many(self, conn: Connection | Session, events: Iterable[AuditEvent]) -> range:
        """Append several events in the caller's transaction (one batch insert); their seqs.

        A due checkpoint is signed once, at the end of the batch.
        """
        batch = list(events)
        if not batch:
            raise ValueError("nothing to append")
        if len(batch) == 1:
            seq = self.append(conn, batch[0])
            return range(seq, seq + 1)
        connection = conn.connection() if isinstance(conn, Session) else conn
        return self._append_locked(conn, connection, batch)

    def _append_locked(
        self, conn: Connection | Session, connection: Connection, events: Sequence[AuditEvent]
    ) -> range:
        """The append that could not take the fast path: number the entries from the log's
        size, then lock the head row and seal if a checkpoint is due.

        The entries are claimed before the head is locked: waiting for a concurrent append (to
        commit or roll back) while holding the head's lock could deadlock with a transaction
        that appends again after us. Once claimed, no other transaction can append (each entry
        needs the previous one committed), so the entries before ours are all committed.
        """
        while True:
            start = store.log_size(connection)
            leaves = [sha256(e.leaf_input(start + i)).digest() for i, e in enumerate(events)]
            rows = [
                store.entry_row(start + i, e, h)
                for i, (e, h) in enumerate(zip(events, leaves, strict=True))
            ]
            if store.claim_and_insert(connection, rows):
                break
            # PostgreSQL: a concurrent append took `start` first (and committed): go after it.
        end = start + len(events)
        self._next_seq = end
        head = store.lock_head(connection)
        if start < head.tree_size:
            raise RuntimeError(
                f"the audit log holds {start} entries but was sealed at {head.tree_size}: "
                "entries were deleted; run verify"
            )
        now_ms = max(_ms(e.recorded) for e in events)
        # checkpoint_ms: time of the last checkpoint, or of the first entry before any.
        since_ms = head.checkpoint_ms if start else _ms(events[0].recorded)
        if end - head.tree_size >= self.checkpoint_every or (
            self._key is not None and now_ms - since_ms >= self._window_ms
        ):
            crange = self._sealed_range(connection, head, start)
            crange.extend(leaves)
            checkpoint = None
            if self._key is not None:
                checkpoint = Checkpoint.sign(self._key, end, crange.root(), now_ms)
                store.insert_checkpoint(connection, checkpoint)
            signed = checkpoint is not None
            cp_size, cp_ms = (end, now_ms) if signed else (head.checkpoint_size, since_ms)
            store.set_head(connection, HeadState(end, crange.to_bytes(), cp_size, cp_ms))
            self._note(connection, start, leaves, now_ms, checkpoint, crange)
        else:
            if start == 0:  # the log's first entry: its time starts the checkpoint clock
                store.set_head(connection, head._replace(checkpoint_ms=since_ms))
            self._note(connection, start, leaves, now_ms)
        return range(start, end)

    @staticmethod
    def _sealed_range(conn: Connection, head: HeadState, size: int) -> CompactRange:
        """The compact range at ``size``: the head's, plus the leaves appended since."""
        crange = CompactRange.from_bytes(head.tree_size, head.compact_range)
        crange.extend(store.read_leaf_range(conn, head.tree_size, size))
        return crange

    # -- witnessing (module doc) --------------------------------------------------------------

    def _note(
        self,
        connection: Connection,
        start: int,
        leaves: list[bytes],
        ms: int,
        checkpoint: Checkpoint | None = None,
        tree: CompactRange | None = None,
    ) -> None:
        """Remember what the open transaction of ``connection`` appended, for its commit."""
        if self._flusher is None:
            return
        txn = connection.get_transaction()
        if txn is None:  # (append began one: there is one)
            return
        pending = self._pending.get(txn)
        if pending is None:
            self._pending[txn] = Pending(start, list(leaves), ms, checkpoint, tree)
            return
        if start != pending.end:
            pending.exact = False
        pending.leaves.extend(leaves)
        pending.ms = max(pending.ms, ms)
        if checkpoint is not None:
            if pending.checkpoint is not None:
                pending.extra.append(pending.checkpoint)
            pending.checkpoint, pending.tree = checkpoint, tree

    def _on_rollback(self, conn: Connection) -> None:
        self._pending.pop(conn.get_transaction(), None)  # type: ignore[arg-type]

    def _on_savepoint_rollback(self, conn: Connection, _name: str, _context: object) -> None:
        pending = self._pending.get(conn.get_transaction())  # type: ignore[arg-type]
        if pending is not None:
            pending.exact = False

    def _on_commit(self, conn: Connection) -> None:
        """The engine's ``commit`` event, before SQLAlchemy commits: commit the driver
        connection here, then note what committed for the flusher (no I/O but, after a
        savepoint rolled back, reading the committed size)."""
        pending = self._pending.pop(conn.get_transaction(), None)  # type: ignore[arg-type]
        if pending is None:
            return
        assert self._flusher is not None
        dbapi: Any = conn.connection.dbapi_connection
        try:
            dbapi.commit()
        except conn.dialect.loaded_dbapi.Error as exc:
            base = conn.dialect.loaded_dbapi.Error
            raise DBAPIError.instance("COMMIT", (), exc, base, dialect=conn.dialect) from exc
        if not pending.exact:  # what committed: the log's size now covers it
            try:
                pending.committed_end = store.committed_size(dbapi, conn.dialect.name)
            except Exception as exc:
                raise WitnessError(
                    f"audit entries from {pending.start} committed, but the size of the log "
                    f"could not be read back for the witness: {exc.__class__.__name__}"
                ) from exc
        self._flusher.committed(pending)
        owe(pending.end)  # the answer of this thread's request waits for the witness of it

    # -- the barrier (module doc, and secretum.audit.witnessing) ----------------------------

    @property
    def witnessed_size(self) -> int:
        """The largest tree size this process has on disk in the witness file."""
        return 0 if self._flusher is None else self._flusher.witnessed_size

    @property
    def committed_size(self) -> int:
        """The largest tree size this process knows committed (by its own transactions)."""
        return 0 if self._flusher is None else self._flusher.committed_size

    @property
    def flusher(self) -> WitnessFlusher | None:
        """The witness flusher (None without a witness file or a key): tests, metrics."""
        return self._flusher

    def wait_witnessed(self, size: int | None = None, timeout: float | None = WAIT_SECONDS) -> int:
        """Block until a signed tree head covering ``size`` entries (default: every entry this
        process committed so far) is on disk in the witness file; return the witnessed size.
        Call it before answering after audited work. Raises
        :class:`~secretum.audit.checkpoint.WitnessError` when the witness cannot be written
        (the entries committed: do not say the action was done, do not redo it). Free when
        nothing was committed since the last flush, and without a witness."""
        if self._flusher is None:
            return 0
        return self._flusher.wait(size, timeout)

    async def witnessed_async(
        self, size: int | None = None, timeout: float | None = WAIT_SECONDS
    ) -> int:
        """:meth:`wait_witnessed` for a coroutine (the event loop runs on meanwhile)."""
        if self._flusher is None:
            return 0
        return await self._flusher.wait_async(size, timeout)

    def close(self) -> None:
        """Before the process lets go: everything it committed, witnessed (WitnessError else)."""
        self.wait_witnessed()

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, now: datetime) -> Checkpoint | None:
        """Sign a checkpoint of the current tree in a short transaction of its own (so never
        call it inside one of yours), then copy it to the witness file. None when no entry came
        since the last checkpoint."""
        if self._key is None:
            raise RuntimeError("this audit log has no signing key")
        checkpoint = None
        with self.engine.begin() as conn:
            head = store.lock_head(conn)
            size = store.log_size(conn)
            if size > head.checkpoint_size:
                root = self._sealed_range(conn, head, size)
                checkpoint = Checkpoint.sign(self._key, size, root.root(), _ms(now))
                store.insert_checkpoint(conn, checkpoint)
                sealed = HeadState(size, root.to_bytes(), size, checkpoint.timestamp_ms)
                store.set_head(conn, sealed)
                # to the witness, before this returns (an empty transaction of entries)
                self._note(conn, size, [], checkpoint.timestamp_ms, checkpoint, root)
        if checkpoint is not None:
            self.wait_witnessed()
        else:
            self.flush_witness()
        return checkpoint

    def tick(self, now: datetime) -> Checkpoint | None:
        """Periodic duty (call every few seconds): wait for the flusher, copy committed
        checkpoints to the witness, and sign one if entries are waiting for longer than
        ``checkpoint_seconds``."""
        self.wait_witnessed()
        self.flush_witness()
        if self._key is None:
            return None
        with self._read() as conn:
            head = store.read_head(conn)
            size = store.log_size(conn)
        if head is None or size <= head.checkpoint_size:
            return None
        if _ms(now) - head.checkpoint_ms < self._window_ms:
            return None
        return self.checkpoint(now)

    def flush_witness(self) -> int:
        """Append committed checkpoints missing from the witness file; return its last size.

        Only checkpoints this log's key signed are copied: a row forged in the database stays
        out of the witness (and verify reports it).
        """
        if self.witness is None:
            return 0
        last = self.witness.last_size()
        with self._read() as conn:
            missing = store.read_checkpoints(conn, after=last)
        keys = [] if self._key is None else [self._key.public_key()]
        missing = [cp for cp in missing if not keys or cp.verify(keys)]
        return self.witness.append(missing) if missing else last

    def _read(self) -> Connection:
        """A connection for reading beside writers (SQLite: deferred transaction)."""
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    # -- reading ----------------------------------------------------------------------------

    def tree_head(self) -> tuple[int, bytes]:
        """Current ``(tree_size, MTH(D[tree_size]))``: the head's compact range plus the leaves
        appended since it was sealed."""
        with self._read() as conn:
            head = store.read_head(conn) or store.EMPTY_HEAD
            crange = CompactRange.from_bytes(head.tree_size, head.compact_range)
            crange.extend(store.read_leaves_from(conn, head.tree_size))
        return crange.size, crange.root()

    def checkpoints(self) -> list[Checkpoint]:
        with self._read() as conn:
            return store.read_checkpoints(conn)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """RFC 9162 §2.1.3.1 proof for entry ``seq`` in the tree of ``tree_size`` entries
        (default: the latest checkpoint that covers ``seq``, else the current tree)."""
        with self._read() as conn:
            if tree_size is None:
                covering = [c.tree_size for c in store.read_checkpoints(conn, after=seq)]
                tree_size = covering[-1] if covering else store.log_size(conn)
            if not 0 <= seq < tree_size:
                raise ValueError(f"entry {seq} is not in a tree of {tree_size} entries")
            leaves = store.read_leaf_hashes(conn, tree_size)
        path = inclusion_proof(leaves, seq)
        return InclusionProof(seq, tree_size, leaves[seq], root_from_leaf_hashes(leaves), path)

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """RFC 9162 §2.1.4.1 proof that tree ``first`` is a prefix of tree ``second``."""
        if not 0 < first <= second:
            raise ValueError("consistency needs 0 < first <= second")
        with self._read() as conn:
            leaves = store.read_leaf_hashes(conn, second)
        path = consistency_proof(leaves, first)
        first_hash = root_from_leaf_hashes(leaves[:first])
        second_hash = root_from_leaf_hashes(leaves)
        return ConsistencyProof(first, second, first_hash, second_hash, path)

    def verify(
        self,
        public_keys: Ed25519PublicKey | Sequence[Ed25519PublicKey],
        *,
        witness_path: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Check the whole log, the entries after the last checkpoint against this log's
        checkpoint policy; see :func:`secretum.audit.verify.verify_log`."""
        path = witness_path or (None if self.witness is None else self.witness.path)
        return verify_log(
            self.engine, public_keys, witness_path=path, progress=progress, policy=self.policy
        )

    def export_fhir(
        self, *, patient_id: str | None = None, observer: str = "secretum"
    ) -> Iterator[dict[str, Any]]:
        """Entries as FHIR R4 AuditEvent resources (see :mod:`secretum.audit.fhir`)."""
        with self._read() as conn:
            for row in store.read_entries(conn, patient_id):
                yield to_audit_event(row, observer=observer)
