"""The audit log: append in the caller's transaction, checkpoint, prove, verify, export.

Appends are serialised on the ``audit_head`` row. The common case costs one conditional
``UPDATE`` (compare-and-swap against the head state this process last wrote) and one
``INSERT`` (a single statement, one round trip, on PostgreSQL); when another writer (thread,
process, server) got there first, the append falls back to ``SELECT ... FOR UPDATE`` of the head.
Either way the entry and the head change commit or roll back with the caller's transaction.

Checkpoints (RFC 9162 §4.10 signed tree heads) are signed inside the appending transaction when
``checkpoint_every`` entries or ``checkpoint_seconds`` (of event time) have passed since the last
one, so a checkpoint exists in the database exactly when its entries do. The witness file only
ever receives checkpoints read back as committed: right after commit when ``append`` was given
a :class:`~sqlalchemy.orm.Session` (``after_commit``), otherwise at the next :meth:`AuditLog.tick`
(which the application calls periodically) or :meth:`AuditLog.checkpoint`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from secretum.audit import store
from secretum.audit.checkpoint import Checkpoint, WitnessFile
from secretum.audit.fhir import to_audit_event
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
from secretum.audit.verify import VerifyReport, verify_log

_SESSION_HOOKED = "secretum.audit.witness_hook"


def _ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return int(when.timestamp() * 1000)


class _Plan(NamedTuple):
    head: HeadState
    crange: CompactRange
    rows: list[tuple[Any, ...]]
    checkpoint: Checkpoint | None


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
    ) -> None:
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_every >= 1 and checkpoint_seconds > 0")
        self.engine = engine
        self.witness = None if witness_path is None else WitnessFile(witness_path)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._key = signing_key
        self._lock = threading.Lock()
        # The head as this process last wrote it, and its compact range.
        self._head: tuple[HeadState, CompactRange] | None = None

    @property
    def public_key(self) -> Ed25519PublicKey | None:
        return None if self._key is None else self._key.public_key()

    # -- append -----------------------------------------------------------------------------

    def append(self, conn: Connection | Session, event: AuditEvent) -> int:
        """Append ``event`` in the caller's open transaction; return its ``seq``.

        Nothing is committed here: the entry (and a checkpoint, if one is due) commits or rolls
        back with the action it records.
        """
        return self.append_many(conn, (event,)).start

    def append_many(self, conn: Connection | Session, events: Iterable[AuditEvent]) -> range:
        """Append several events in the caller's transaction (one batch insert); their seqs.

        A due checkpoint is signed once, at the end of the batch.
        """
        session = conn if isinstance(conn, Session) else None
        connection = conn.connection() if isinstance(conn, Session) else conn
        batch = list(events)
        if not batch:
            raise ValueError("nothing to append")
        with self._lock:  # reserve: a concurrent append of this process builds on this one
            cached = self._head
            plan = None if cached is None else self._advance(*cached, batch)
            if plan is not None:
                self._head = (plan.head, plan.crange)
        if (
            cached is None
            or plan is None
            or not store.swap_and_insert(connection, cached[0], plan.head, plan.rows)
        ):
            head = store.lock_head(connection)  # another writer went first: wait for it
            crange = CompactRange.from_bytes(head.tree_size, head.compact_range)
            plan = self._advance(head, crange, batch)
            if not store.swap_and_insert(connection, head, plan.head, plan.rows):
                raise RuntimeError("audit head changed under its lock: not in BEGIN IMMEDIATE?")
            with self._lock:
                self._head = (plan.head, plan.crange)
        if plan.checkpoint is not None:
            store.insert_checkpoint(connection, plan.checkpoint)
            if session is not None:
                self._flush_after_commit(session)
        return range(plan.head.tree_size - len(batch), plan.head.tree_size)

    def _advance(
        self, head: HeadState, crange: CompactRange, events: Sequence[AuditEvent]
    ) -> _Plan:
        """Head, rows and checkpoint (if due) after appending ``events`` to ``head``/``crange``
        (left unchanged)."""
        crange = crange.copy()
        rows = []
        for event in events:
            seq = crange.size
            leaf = sha256(event.leaf_input(seq)).digest()
            crange.append(leaf)
            rows.append(store.entry_row(seq, event, leaf))
        now_ms = _ms(events[-1].recorded)
        # checkpoint_ms: time of the last checkpoint, or of the first entry before any.
        since_ms = head.checkpoint_ms if head.tree_size else _ms(events[0].recorded)
        checkpoint = None
        if self._key is not None and (
            crange.size - head.checkpoint_size >= self.checkpoint_every
            or now_ms - since_ms >= self.checkpoint_seconds * 1000
        ):
            checkpoint = Checkpoint.sign(self._key, crange.size, crange.root(), now_ms)
        new = HeadState(
            crange.size,
            crange.to_bytes(),
            head.checkpoint_size if checkpoint is None else crange.size,
            since_ms if checkpoint is None else now_ms,
        )
        return _Plan(new, crange, rows, checkpoint)

    def _flush_after_commit(self, session: Session) -> None:
        if session.info.get(_SESSION_HOOKED):
            return
        session.info[_SESSION_HOOKED] = True

        def after_commit(sess: Session) -> None:
            sess.info.pop(_SESSION_HOOKED, None)
            self.flush_witness()

        sa_event.listen(session, "after_commit", after_commit, once=True)

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
            if head.tree_size > head.checkpoint_size:
                crange = CompactRange.from_bytes(head.tree_size, head.compact_range)
                checkpoint = Checkpoint.sign(self._key, head.tree_size, crange.root(), _ms(now))
                store.insert_checkpoint(conn, checkpoint)
                head = HeadState(
                    head.tree_size, head.compact_range, head.tree_size, checkpoint.timestamp_ms
                )
                store.set_head(conn, head)
        with self._lock:
            self._head = (head, CompactRange.from_bytes(head.tree_size, head.compact_range))
        self.flush_witness()
        return checkpoint

    def tick(self, now: datetime) -> Checkpoint | None:
        """Periodic duty (call every few seconds): copy committed checkpoints to the witness, and
        sign one if entries are waiting for longer than ``checkpoint_seconds``."""
        self.flush_witness()
        if self._key is None:
            return None
        with self._read() as conn:
            head = store.read_head(conn)
        if head is None or head.tree_size == head.checkpoint_size:
            return None
        if _ms(now) - head.checkpoint_ms < self.checkpoint_seconds * 1000:
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
        """Current ``(tree_size, MTH(D[tree_size]))`` from the head row."""
        with self._read() as conn:
            head = store.read_head(conn) or store.EMPTY_HEAD
        return head.tree_size, CompactRange.from_bytes(head.tree_size, head.compact_range).root()

    def checkpoints(self) -> list[Checkpoint]:
        with self._read() as conn:
            return store.read_checkpoints(conn)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """RFC 9162 §2.1.3.1 proof for entry ``seq`` in the tree of ``tree_size`` entries
        (default: the latest checkpoint that covers ``seq``, else the current tree)."""
        with self._read() as conn:
            if tree_size is None:
                covering = [c.tree_size for c in store.read_checkpoints(conn, after=seq)]
                head = store.read_head(conn) or store.EMPTY_HEAD
                tree_size = covering[-1] if covering else head.tree_size
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
        """Check the whole log; see :func:`secretum.audit.verify.verify_log`."""
        path = witness_path or (None if self.witness is None else self.witness.path)
        return verify_log(self.engine, public_keys, witness_path=path, progress=progress)

    def export_fhir(
        self, *, patient_id: str | None = None, observer: str = "secretum"
    ) -> Iterator[dict[str, Any]]:
        """Entries as FHIR R4 AuditEvent resources (see :mod:`secretum.audit.fhir`)."""
        with self._read() as conn:
            for row in store.read_entries(conn, patient_id):
                yield to_audit_event(row, observer=observer)
