"""Verify the audit log: recompute the RFC 9162 tree and name the first entry that was tampered.

What is checked, in order:

1. The witness file (read first: every line in it was committed before the database snapshot
   that follows): each line parses and carries a valid Ed25519 signature (RFC 9162 §4.10). It
   holds a signed tree head per witness flush, covering the transactions committed before it
   (and every checkpoint),
   in no particular order (processes sharing it append concurrently): each is a statement "the
   log had this root at this size", and all of them are checked. Two heads at one size must
   have the same root (else a fork: ``witness_mismatch``).
2. The database checkpoints: valid signatures, and the same root as the witness at every size.
3. Every entry, streamed in ``seq`` order: ``seq`` follows 0..n-1, and the stored leaf hash equals
   ``SHA-256(0x00 || canonical entry)`` recomputed from the row (RFC 9162 §2.1.1). The tree is
   rebuilt as a compact range on the way, and ``MTH(D[size])`` is compared with the signed root
   at every witnessed or checkpointed size (an attacker who rewrites entries *and* their hashes
   cannot sign), and with the head row's compact range at its sealed size. Sizes are visited in
   increasing order, so the first size whose root differs, after the last one that matched,
   brackets the first rewritten entry: the first entry after the last head that matched (the
   exact entry when each head covers one entry, as when every action is answered before the
   next commits). A binary search over the witnessed sizes would find the same bracket (the
   tree at a smaller size is a prefix of the tree at every larger one, so once a root differs,
   every larger one does); the streaming pass gets it without a second read of the rows.
4. The end of the log against the head row and every signed size (truncation: the largest
   witnessed size above the number of rows names the first missing entry), and the entries
   after the last seal against the checkpoint policy, when given (:class:`CheckpointPolicy`):
   an entry that the log would have checkpointed on append, but that no checkpoint follows, was
   not appended through the log (insertion). Entries after the largest witnessed head, the
   *unwitnessed tail*, were committed but never answered: the witness flusher had not covered
   them yet (it runs behind the commits, see :mod:`secretum.audit.witnessing`), or the process
   stopped first; since no answer leaves before the witness covers its entries, nobody was told
   these actions were done. They are only as trustworthy as the database: a note (not a
   finding) says how many there are.

The first bad entry is classified from its neighbours (the canonical entry includes ``seq``, so
the stored hash of a moved entry still matches its old position): ``modified``, ``deleted``,
``inserted`` or ``reordered``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from secretum.audit import store
from secretum.audit.checkpoint import Checkpoint, WitnessFile
from secretum.audit.merkle import NODE_PREFIX, CompactRange
from secretum.audit.model import CANONICAL_FIELDS, LEAF_TEMPLATE, format_time

_SEQ = CANONICAL_FIELDS.index("seq")
#: ``outcome_desc`` in SQL as :func:`~secretum.audit.model.outcome_desc_member` has it: the
#: whole member with its leading comma, or ``''`` (no member) when NULL, as before it existed.
_DESC_MEMBER_SQL = """COALESCE(',"outcome_desc":"' || outcome_desc || '"', '')"""


def _column(name: str) -> str:
    if name == "outcome_desc":
        return _DESC_MEMBER_SQL
    return name if not store.audit_entries.c[name].nullable else f"COALESCE({name}, '')"


_COLUMNS = ", ".join(_column(name) for name in CANONICAL_FIELDS)
_SCAN_SQL = f"SELECT {_COLUMNS}, leaf_hash FROM audit_entries ORDER BY seq"  # noqa: S608
_WINDOW_SQL = text(
    f"SELECT {_COLUMNS}, leaf_hash FROM audit_entries "  # noqa: S608
    "WHERE seq BETWEEN :lo AND :hi ORDER BY seq"
)
_BATCH = 10_000
_WINDOW = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Kind(StrEnum):
    """What verify found wrong."""

    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head_mismatch"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    BAD_SIGNATURE = "bad_signature"
    WITNESS_MISMATCH = "witness_mismatch"
    WITNESS_MALFORMED = "witness_malformed"


class CheckpointPolicy(NamedTuple):
    """When appends sign a checkpoint: after ``every`` entries, or an entry ``seconds`` (of
    event time) after the last checkpoint; ``seconds`` None when no time rule applies."""

    every: int
    seconds: float | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind, the first entry concerned (if one can be named), a message."""

    kind: Kind
    seq: int | None
    message: str
    tree_size: int | None = None  # the checkpoint concerned, for checkpoint findings


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_log`: ``ok`` when there is no finding."""

    entries_verified: int  # entries 0..n-1 whose hashes and order are right
    root_hash: bytes  # MTH(D[entries_verified])
    checkpoints_verified: int  # signed roots (checkpoints, witnessed heads) matched by the tree
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    witnessed_size: int = 0  # the largest tree size the witness file vouches for

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The finding with the smallest seq (findings without a seq come last)."""
        ranked = sorted(self.findings, key=lambda f: (f.seq is None, f.seq or 0))
        return ranked[0] if ranked else None


def verify_log(
    engine: Engine,
    public_keys: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    *,
    witness_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    policy: CheckpointPolicy | None = None,
) -> VerifyReport:
    """Verify the log in ``engine`` against the checkpoints signed by ``public_keys``; the
    entries after the last seal against ``policy`` if given (the writers' policy)."""
    keys = [public_keys] if isinstance(public_keys, Ed25519PublicKey) else list(public_keys)
    findings: list[Finding] = []
    notes: list[str] = []
    witnessed = _read_witness(witness_path, keys, findings, notes)
    late: Finding | None = None
    with _snapshot(engine) as conn:
        head = store.read_head(conn) or store.EMPTY_HEAD
        db_cps = store.read_checkpoints(conn)
        anchors = _anchors(witness_path is not None, witnessed, db_cps, keys, findings, notes)
        total = max(store.log_size(conn), head.tree_size, max(anchors, default=0))
        scan = _Scan(anchors, head)
        scan.run(_batches(conn), total, progress)
        if scan.bad_seq is not None:
            findings.append(_classify(conn, scan.bad_seq))
        elif policy is not None and scan.size > head.tree_size:
            late = _unsealed_tail(conn, head, scan.size, policy)
    n = scan.size
    if scan.mismatch is not None:
        findings.append(scan.mismatch)
    if scan.head_mismatch:
        findings.append(Finding(Kind.HEAD_MISMATCH, None, "head row does not match the entries"))
    unchecked = sorted(s for s in anchors if s > n)
    if scan.bad_seq is not None:
        if unchecked:
            notes.append(f"{len(unchecked)} checkpoint(s) beyond entry {n} not checked")
    elif n < head.tree_size:
        msg = f"the log ends at entry {n} but its head was sealed at {head.tree_size} entries"
        findings.append(Finding(Kind.TRUNCATED, n, msg))
    elif unchecked:
        msg = (
            f"a tree head was signed at size {unchecked[-1]} but the log holds {n} entries: "
            f"entries from {n} on were deleted"
        )
        findings.append(Finding(Kind.TRUNCATED, n, msg, unchecked[-1]))
    else:
        covered = max(witnessed, default=0)
        if witness_path is not None and n > covered:
            notes.append(
                f"unwitnessed tail: {n - covered} entries after the largest witnessed head "
                f"(size {covered}) are not covered by the witness file: committed but not yet "
                "answered (their witness flush is under way, or the process stopped before it: "
                "no answer leaves before the witness covers its entries), only as trustworthy "
                "as the database"
            )
        if n > head.tree_size:
            notes.append(
                f"{n - head.tree_size} entries after the last seal (size {head.tree_size}) are "
                "not covered by a signed checkpoint yet"
            )
            if late is not None:
                findings.append(late)
    witnessed_size = max(witnessed, default=0)
    return VerifyReport(n, scan.crange.root(), scan.anchors_ok, findings, notes, witnessed_size)


def _unsealed_tail(
    conn: Connection, head: store.HeadState, size: int, policy: CheckpointPolicy
) -> Finding | None:
    """The first entry after the seal that an append would have checkpointed (and so sealed):
    the ``every``-th one, or one recorded ``seconds`` after the last checkpoint."""
    due: list[int] = []
    if size - head.tree_size >= policy.every:
        due.append(head.tree_size + policy.every - 1)
    if policy.seconds is not None:
        late_ms = head.checkpoint_ms + math.ceil(policy.seconds * 1000)
        late_text = format_time(_EPOCH + timedelta(milliseconds=late_ms))
        first = store.first_entry_from(conn, head.tree_size, late_text)
        if first is not None:
            due.append(first)
    if not due:
        return None
    seq = min(due)
    msg = (
        f"entry {seq} follows the last seal (size {head.tree_size}) without the checkpoint the "
        f"policy ({policy.every} entries, {policy.seconds} s) makes its append sign: "
        "not appended through the log"
    )
    return Finding(Kind.INSERTED, seq, msg)


def _read_witness(
    path: str | Path | None,
    keys: list[Ed25519PublicKey],
    findings: list[Finding],
    notes: list[str],
) -> dict[int, Checkpoint]:
    if path is None:
        notes.append("no witness file: only database checkpoints were checked")
        return {}
    read = WitnessFile(path).read()
    for line in read.malformed_lines:
        findings.append(Finding(Kind.WITNESS_MALFORMED, None, f"witness line {line} unreadable"))
    good: dict[int, Checkpoint] = {}
    for cp in read.checkpoints:
        if not cp.verify(keys):
            msg = f"witness checkpoint at size {cp.tree_size}: signature does not verify"
            findings.append(Finding(Kind.BAD_SIGNATURE, None, msg, cp.tree_size))
        elif good.setdefault(cp.tree_size, cp).root_hash != cp.root_hash:
            msg = f"witness holds two different roots at size {cp.tree_size}: a fork"
            findings.append(Finding(Kind.WITNESS_MISMATCH, None, msg, cp.tree_size))
    return good


def _anchors(
    has_witness: bool,
    witnessed: dict[int, Checkpoint],
    db_cps: list[Checkpoint],
    keys: list[Ed25519PublicKey],
    findings: list[Finding],
    notes: list[str],
) -> dict[int, bytes]:
    """Signed roots to check the tree against; witness and database compared on the way."""
    last_witnessed = max(witnessed, default=0)
    anchors = {size: cp.root_hash for size, cp in witnessed.items()}
    late = 0
    for cp in db_cps:
        if not cp.verify(keys):
            msg = f"database checkpoint at size {cp.tree_size}: signature does not verify"
            findings.append(Finding(Kind.BAD_SIGNATURE, None, msg, cp.tree_size))
            continue
        if cp.tree_size in witnessed:
            if witnessed[cp.tree_size].root_hash != cp.root_hash:
                msg = f"checkpoint at size {cp.tree_size} differs between database and witness"
                findings.append(Finding(Kind.WITNESS_MISMATCH, None, msg, cp.tree_size))
            continue
        if cp.tree_size < last_witnessed and witnessed:
            msg = f"checkpoint at size {cp.tree_size} is in the database, not in the witness"
            findings.append(Finding(Kind.WITNESS_MISMATCH, None, msg, cp.tree_size))
        else:
            late += 1
        anchors[cp.tree_size] = cp.root_hash
    if late and witnessed:
        notes.append(f"{late} recent checkpoint(s) not yet copied to the witness file")
    elif late and has_witness:
        msg = f"the witness file holds no checkpoint, the database holds {late}: file lost?"
        findings.append(Finding(Kind.WITNESS_MISMATCH, None, msg))
    # Witnessed heads without a database checkpoint are the rule (one per witness flush): the
    # tree is checked against them all; a missing database checkpoint above the last entry
    # shows as truncation.
    return anchors


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction with one consistent view of the database."""
    options: dict[str, Any] = {"sqlite_begin": "DEFERRED"}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def _batches(conn: Connection) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Rows of ``_SCAN_SQL`` straight from the DBAPI cursor (server-side on PostgreSQL)."""
    dbapi: Any = conn.connection.dbapi_connection
    named = conn.dialect.name == "postgresql"
    cursor = dbapi.cursor(name="secretum_audit_verify") if named else dbapi.cursor()
    try:
        cursor.execute(_SCAN_SQL)
        while batch := cursor.fetchmany(_BATCH):
            yield batch
    finally:
        cursor.close()


class _Scan:
    """The streaming pass: leaf hashes, seq order, compact range, signed roots."""

    def __init__(self, anchors: dict[int, bytes], head: store.HeadState) -> None:
        self.anchors = anchors
        self.head = head
        self.crange = CompactRange()
        self.bad_seq: int | None = None
        self.mismatch: Finding | None = None
        self.head_mismatch = head.tree_size == 0 and head.compact_range != b""
        self.anchors_ok = 0
        self.last_good = 0  # the largest checkpointed size whose root matched
        self.size = 0

    def run(
        self,
        batches: Iterator[Sequence[tuple[Any, ...]]],
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        sha256, template, seq_at, prefix = hashlib.sha256, LEAF_TEMPLATE, _SEQ, NODE_PREFIX
        nodes = self.crange.nodes
        pending = sorted({*self.anchors, self.head.tree_size} - {0})
        next_anchor = pending.pop(0) if pending else -1
        n = 0
        try:
            for batch in batches:
                for row in batch:
                    if row[seq_at] != n:
                        self.bad_seq = n
                        return
                    leaf = sha256((template % row[:-1]).encode()).digest()
                    if leaf != row[-1]:
                        self.bad_seq = n
                        return
                    node, m = leaf, n
                    while m & 1:
                        node = sha256(prefix + nodes.pop() + node).digest()
                        m >>= 1
                    nodes.append(node)
                    n += 1
                    if n == next_anchor:
                        self.crange.size = n
                        self._check_at(n)
                        next_anchor = pending.pop(0) if pending else -1
                if progress is not None:
                    progress(n, total)
        except (TypeError, ValueError):  # a column of the wrong type: not what was hashed
            self.bad_seq = n
        finally:
            self.size = self.crange.size = n

    def _check_at(self, n: int) -> None:
        """Compare the tree at size ``n`` with the head row's and the signed roots there."""
        if n == self.head.tree_size and self.crange.to_bytes() != self.head.compact_range:
            self.head_mismatch = True
        if n not in self.anchors or self.mismatch is not None:
            return
        if self.crange.root() == self.anchors[n]:
            self.anchors_ok += 1
            self.last_good = n
            return
        which = (
            f"entry {n - 1} does"
            if n - 1 == self.last_good
            else f"entries {self.last_good}..{n - 1} do"
        )
        msg = (
            f"{which} not hash to the root signed at size {n} (the one at size "
            f"{self.last_good} matches): rewritten, replaced or reordered with recomputed hashes"
        )
        self.mismatch = Finding(Kind.CHECKPOINT_MISMATCH, self.last_good, msg, n)


def _origin(row: tuple[Any, ...], lo: int, hi: int) -> int | None:
    """The position whose canonical encoding matches the row's stored hash (nearest first)."""
    seq, values = row[_SEQ], list(row[:-1])
    if not isinstance(seq, int):
        return None
    for j in sorted(range(max(lo, 0), hi + 1), key=lambda j: abs(j - seq)):
        values[_SEQ] = j
        try:
            if hashlib.sha256((LEAF_TEMPLATE % tuple(values)).encode()).digest() == row[-1]:
                return j
        except (TypeError, ValueError):
            return None
    return None


def _classify(conn: Connection, e: int) -> Finding:
    """Name what happened at ``e``, the first entry that does not verify."""
    lo, hi = e - _WINDOW, e + _WINDOW
    rows = {r[_SEQ]: tuple(r) for r in conn.execute(_WINDOW_SQL, {"lo": lo, "hi": hi})}
    if e not in rows:
        return Finding(Kind.DELETED, e, f"entry {e} is missing")
    origin = {s: _origin(r, s - _WINDOW, s + _WINDOW) for s, r in rows.items() if s >= e}
    o = origin[e]
    if o is None:
        if origin.get(e + 1) == e:
            return Finding(Kind.INSERTED, e, f"entry {e} was inserted; later entries shifted")
        return Finding(Kind.MODIFIED, e, f"entry {e} does not match its stored hash")
    if o > e:
        moved = [s for s, j in origin.items() if j == e and s != e]
        if moved:
            msg = f"entries {e} and {moved[0]} are out of order (reordered)"
            return Finding(Kind.REORDERED, e, msg)
        return Finding(Kind.DELETED, e, f"entry {e} is missing; later entries renumbered")
    if o < e and o in rows and rows[o][-1] == rows[e][-1]:
        return Finding(Kind.INSERTED, e, f"entry {e} is a copy of entry {o}")
    if o < e:
        return Finding(Kind.INSERTED, o, f"entries {o}..{e - 1} were inserted; later ones shifted")
    return Finding(Kind.MODIFIED, e, f"entry {e} does not match its stored hash")
