"""Tables of the audit log and the SQL that reads and writes them.

* ``audit_entries``: one row per entry, ``seq`` 0..n-1 without gaps, the event's ids and codes
  (NULL when absent) and ``leaf_hash`` = ``SHA-256(0x00 || canonical entry)`` (RFC 9162 §2.1.1),
  which lets verify name the first entry whose content no longer matches. The size of the log is
  ``max(seq) + 1``: one lookup at the end of the primary key.
* ``audit_head``: a single row (``id = 1``), the log's *seal*: ``tree_size`` and the RFC 9162
  compact range of subtree roots at that size (``MTH`` at any size in O(log n) from there), and
  the size and time of the last checkpoint. It is rewritten only when a checkpoint is signed
  (every ``checkpoint_every`` entries or ``checkpoint_seconds``), not on every append: an append
  is one ``INSERT`` (:func:`try_append`), which reads the head only to see that no checkpoint is
  due, and takes no lock but the entry's own. Between checkpoints, ``MTH`` is the sealed
  compact range plus the leaf hashes since.
* ``audit_checkpoints``: signed tree heads (RFC 9162 §4.10), also copied to the witness file.

Appends stay gapless and serialised without a per-append head write: an entry goes in at
``seq`` only if entry ``seq - 1`` is already there (committed, or in the same transaction), and
the primary key refuses a second entry at ``seq`` (``ON CONFLICT DO NOTHING``: the loser sees
zero rows inserted and its transaction is not aborted). On PostgreSQL, whose transactions run
side by side, entry ``seq`` therefore always commits after entry ``seq - 1``: every snapshot
sees a prefix of the log, and at most one transaction at a time holds uncommitted entries (the
others wait for it). Whoever seals (signs a checkpoint) holds the head row's lock
(``SELECT ... FOR UPDATE``; on SQLite ``BEGIN IMMEDIATE`` already holds the database's write
lock), taken only once its own entries are in.

``patient_id`` is not indexed: an index costs one more page written per commit on the append
path, and the per-patient export (a rare report) scans in ``seq`` order instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, SmallInteger, String, Table, select
from sqlalchemy.engine import Connection

from secretum.audit.checkpoint import Checkpoint
from secretum.audit.model import CANONICAL_FIELDS, AuditEvent
from secretum.storage.db import metadata

_SEQ = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("recorded", String(27), nullable=False),
    Column("event_type", String(6), nullable=False),
    Column("subtype", String(16)),
    Column("action", String(1), nullable=False),
    Column("outcome", SmallInteger, nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(32), nullable=False),
    Column("resource_type", String(64)),
    Column("resource_id", String(64)),
    Column("patient_id", String(64)),  # not indexed: see the module docstring
    Column("purpose", String(16)),
    Column("source_address", String(45)),
    Column("outcome_desc", String(64)),  # the reason code of a refusal (deny.no-consent)
    Column("leaf_hash", LargeBinary(32), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("compact_range", LargeBinary, nullable=False),
    Column("checkpoint_size", BigInteger, nullable=False),
    Column("checkpoint_ms", BigInteger, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", _SEQ, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

#: Columns of an entry row, in the order of the driver-level INSERT (``entry_row``).
ENTRY_COLUMNS = (*(c for c in CANONICAL_FIELDS if c != "seq"), "seq", "leaf_hash")


class HeadState(NamedTuple):
    """The ``audit_head`` row (a tuple: its fields are the SET parameters, in order).

    ``tree_size``/``compact_range``: the sealed prefix of the log and its compact range;
    ``checkpoint_size``: the last signed size (``tree_size`` unless the log has no signing key);
    ``checkpoint_ms``: time of the last checkpoint, or of the first entry before any.
    """

    tree_size: int
    compact_range: bytes
    checkpoint_size: int
    checkpoint_ms: int


EMPTY_HEAD = HeadState(0, b"", 0, 0)

_COLUMN_LIST = ", ".join(ENTRY_COLUMNS)
_MARKS = ", ".join("?" * len(ENTRY_COLUMNS))

#: A plain insert of one entry row (``entry_row`` order).
_INSERT_ENTRY = f"INSERT INTO audit_entries ({_COLUMN_LIST}) VALUES ({_MARKS})"  # noqa: S608
#: The conditions of an append at ``seq``: no checkpoint is due (the sealed size is in
#: ``seq + 2 - checkpoint_every .. seq``: fewer than ``checkpoint_every`` entries since, none
#: of them sealed; the last checkpoint after the event time minus ``checkpoint_seconds``), and
#: entry ``seq - 1`` exists. No row: no head yet.
_APPEND_CHECK = (
    "SELECT tree_size BETWEEN ? AND ? AND checkpoint_ms > ?, "
    "EXISTS (SELECT 1 FROM audit_entries WHERE seq = ?) FROM audit_head WHERE id = 1"
)
#: PostgreSQL: the check and the insert in one statement, one round trip. Parameters: the
#: row, then those of ``_APPEND_CHECK``. (On SQLite, whose writers are serialised anyway, two
#: statements are cheaper: a SELECT reading the table it inserts into goes through a temporary
#: table there.)
_APPEND_ENTRY = (
    f"INSERT INTO audit_entries ({_COLUMN_LIST}) SELECT {_MARKS} FROM audit_head "  # noqa: S608
    "WHERE id = 1 AND tree_size BETWEEN ? AND ? AND checkpoint_ms > ? "
    "AND EXISTS (SELECT 1 FROM audit_entries WHERE seq = ?) ON CONFLICT DO NOTHING"
)
#: PostgreSQL: the same, which also says which condition failed and where the log ends (its
#: result row costs a little more, so it is only asked once the plain one inserted nothing).
#: Parameters: those of ``_APPEND_CHECK``, then the row.
_APPEND_EXPLAINED = (
    "WITH state AS (SELECT tree_size BETWEEN ? AND ? AND checkpoint_ms > ? AS quiet, "  # noqa: S608
    "EXISTS (SELECT 1 FROM audit_entries WHERE seq = ?) AS follows, "
    "(SELECT max(seq) FROM audit_entries) AS last "
    "FROM audit_head WHERE id = 1), "
    f"inserted AS (INSERT INTO audit_entries ({_COLUMN_LIST}) "
    f"SELECT {_MARKS} FROM state WHERE quiet AND follows ON CONFLICT DO NOTHING RETURNING seq) "
    "SELECT quiet, follows, EXISTS (SELECT 1 FROM inserted), last FROM state"
)


class Attempt(NamedTuple):
    """What an append at a given ``seq`` found (:func:`try_append`)."""

    inserted: bool
    #: No checkpoint due (False too without a head row, or inside the sealed part); None: not
    #: asked.
    quiet: bool | None = None
    #: Entry seq - 1 exists (visible: committed, or this transaction's); None: not asked.
    follows: bool | None = None
    #: The last entry's seq as seen (-1: none); None: not asked.
    last: int | None = None


@dataclass(frozen=True, slots=True)
class _Sql:
    """Driver-level SQL (no statement compilation): qmark parameters for SQLite, ``%s`` for
    psycopg."""

    #: One-statement appends (plain; saying why not), or None: ``append_check``, then
    #: ``claim_entry``.
    append_entry: str | None = None
    append_explained: str | None = None
    append_check: str = _APPEND_CHECK
    insert_entry: str = _INSERT_ENTRY
    claim_entry: str = _INSERT_ENTRY + " ON CONFLICT DO NOTHING"
    select_head: str = (
        "SELECT tree_size, compact_range, checkpoint_size, checkpoint_ms FROM audit_head "
        "WHERE id = 1"
    )
    lock_suffix: str = ""  # SQLite: BEGIN IMMEDIATE already holds the write lock
    create_head: str = (
        "INSERT INTO audit_head (id, tree_size, compact_range, checkpoint_size, checkpoint_ms) "
        "VALUES (1, 0, ?, 0, 0) ON CONFLICT DO NOTHING"
    )
    set_head: str = (
        "UPDATE audit_head SET tree_size = ?, compact_range = ?, checkpoint_size = ?, "
        "checkpoint_ms = ? WHERE id = 1"
    )
    last_seq: str = "SELECT max(seq) FROM audit_entries"
    leaves_from: str = "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq"
    leaf_range: str = "SELECT leaf_hash FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq"
    first_late: str = "SELECT min(seq) FROM audit_entries WHERE seq >= ? AND recorded >= ?"

    def for_psycopg(self) -> _Sql:
        pg = {name: getattr(self, name) for name in self.__slots__}
        pg.update(
            append_entry=_APPEND_ENTRY,
            append_explained=_APPEND_EXPLAINED,
            lock_suffix=" FOR UPDATE",
        )
        return _Sql(**{name: sql.replace("?", "%s") for name, sql in pg.items()})


_SQLITE_SQL = _Sql()
_PG_SQL = _SQLITE_SQL.for_psycopg()


def _sql(conn: Connection) -> _Sql:
    return _PG_SQL if conn.dialect.name == "postgresql" else _SQLITE_SQL


def _dbapi(conn: Connection) -> Any:
    """The DBAPI connection inside ``conn``'s transaction (begun here if the caller has not).

    The append path talks to the driver directly: it runs once per audited action, and going
    through SQLAlchemy's execution machinery would cost more than SQLite's own work.
    """
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy's autobegin would do on a first execute
    return conn.connection.dbapi_connection


def try_append(
    conn: Connection, row: tuple[Any, ...], every: int, min_ms: int, *, explain: bool = False
) -> Attempt:
    """Insert the entry ``row`` (``entry_row`` order) at its ``seq`` if entry ``seq - 1``
    exists, ``seq`` is free and no checkpoint is due: the head's sealed size is among the last
    ``every - 1`` positions before ``seq`` and its checkpoint time after ``min_ms``. Nothing is
    written otherwise; the answer says why if ``explain`` is set (SQLite always tells whether a
    checkpoint is due and ``seq - 1`` exists: it costs nothing more there; not where the log
    ends).

    On PostgreSQL an uncommitted entry at ``seq`` makes this wait for its transaction, then
    insert (it rolled back) or not (it committed: ``seq`` is taken).
    """
    sql = _sql(conn)
    seq = row[-2]
    check = (seq + 2 - every, seq, min_ms, seq - 1)
    cursor = _dbapi(conn).cursor()
    try:
        if sql.append_explained is not None and explain:
            cursor.execute(sql.append_explained, (*check, *row))
            found = cursor.fetchone()
            if found is None:
                return _NO_HEAD
            return Attempt(found[2], found[0], found[1], -1 if found[3] is None else found[3])
        if sql.append_entry is not None:
            cursor.execute(sql.append_entry, (*row, *check))
            return Attempt(cursor.rowcount == 1)
        cursor.execute(sql.append_check, check)
        found = cursor.fetchone()
        if found is None:
            return _NO_HEAD
        quiet, follows = bool(found[0]), bool(found[1])
        if not (quiet and follows):
            return Attempt(False, quiet, follows)
        cursor.execute(sql.claim_entry, row)
        return Attempt(cursor.rowcount == 1, quiet, follows)
    finally:
        cursor.close()


_NO_HEAD = Attempt(inserted=False, quiet=False, follows=False)


def claim_and_insert(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> bool:
    """Insert consecutive entry rows; False (nothing written) if the first one's ``seq`` is
    taken. Once the first is in, nobody else can insert the next ones: they would need it
    committed. On PostgreSQL, an uncommitted entry at that ``seq`` makes this wait for its
    transaction."""
    sql = _sql(conn)
    cursor = _dbapi(conn).cursor()
    try:
        cursor.execute(sql.claim_entry, rows[0])
        if cursor.rowcount != 1:
            return False
        if len(rows) > 1:
            cursor.executemany(sql.insert_entry, rows[1:])
        return True
    finally:
        cursor.close()


def read_head(conn: Connection, *, lock: bool = False) -> HeadState | None:
    """The head row, locked for update if asked; None before the first append."""
    sql = _sql(conn)
    row = conn.exec_driver_sql(sql.select_head + (sql.lock_suffix if lock else "")).first()
    return None if row is None else HeadState(row[0], bytes(row[1]), row[2], row[3])


def lock_head(conn: Connection) -> HeadState:
    """Lock the head row, creating it if this is the first append ever."""
    head = read_head(conn, lock=True)
    if head is None:
        conn.exec_driver_sql(_sql(conn).create_head, (b"",))
        head = read_head(conn, lock=True)
        assert head is not None
    return head


def set_head(conn: Connection, new: HeadState) -> None:
    """Write ``new`` to the (locked) head row."""
    conn.exec_driver_sql(_sql(conn).set_head, tuple(new))


def log_size(conn: Connection) -> int:
    """``max(seq) + 1``: the number of entries of a gapless log (committed, or this
    transaction's own)."""
    last = conn.exec_driver_sql(_sql(conn).last_seq).scalar()
    return 0 if last is None else int(last) + 1


def read_leaf_range(conn: Connection, start: int, end: int) -> list[bytes]:
    """Stored leaf hashes of entries ``start .. end-1``; LookupError if one is missing.

    Straight from the driver: sealing reads up to a checkpoint's worth of them.
    """
    cursor = _dbapi(conn).cursor()
    try:
        cursor.execute(_sql(conn).leaf_range, (start, end))
        leaves = [bytes(r[0]) for r in cursor.fetchall()]
    finally:
        cursor.close()
    if len(leaves) != end - start:
        raise LookupError(f"the log holds {len(leaves)} of its entries {start}..{end - 1}")
    return leaves


def read_leaves_from(conn: Connection, start: int) -> list[bytes]:
    """Stored leaf hashes of entries ``start, start+1, ...`` up to the last one (or the first
    gap)."""
    leaves: list[bytes] = []
    for seq, leaf in conn.exec_driver_sql(_sql(conn).leaves_from, (start,)):
        if seq != start + len(leaves):
            break
        leaves.append(bytes(leaf))
    return leaves


def _fetch(dbapi: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def committed_leaves(dbapi: Any, dialect: str, start: int, end: int) -> list[bytes]:
    """Leaf hashes of entries ``start .. end-1`` through a bare driver connection whose
    transaction has just committed (the witnessing in the ``commit`` event, which cannot go
    through SQLAlchemy); LookupError if one is missing."""
    sql = _PG_SQL if dialect == "postgresql" else _SQLITE_SQL
    leaves = [bytes(r[0]) for r in _fetch(dbapi, sql.leaf_range, (start, end))]
    if len(leaves) != end - start:
        raise LookupError(f"the log holds {len(leaves)} of its entries {start}..{end - 1}")
    return leaves


def committed_head(dbapi: Any, dialect: str) -> HeadState:
    """:func:`read_head` through a bare driver connection (see :func:`committed_leaves`)."""
    sql = _PG_SQL if dialect == "postgresql" else _SQLITE_SQL
    rows = _fetch(dbapi, sql.select_head)
    if not rows:
        return EMPTY_HEAD
    row = rows[0]
    return HeadState(row[0], bytes(row[1]), row[2], row[3])


def committed_size(dbapi: Any, dialect: str) -> int:
    """:func:`log_size` through a bare driver connection (see :func:`committed_leaves`)."""
    sql = _PG_SQL if dialect == "postgresql" else _SQLITE_SQL
    last = _fetch(dbapi, sql.last_seq)[0][0]
    return 0 if last is None else int(last) + 1


def first_entry_from(conn: Connection, start: int, recorded_from: str) -> int | None:
    """The first ``seq >= start`` recorded at or after ``recorded_from`` (text form)."""
    seq = conn.exec_driver_sql(_sql(conn).first_late, (start, recorded_from)).scalar()
    return None if seq is None else int(seq)


def entry_row(seq: int, event: AuditEvent, leaf_hash: bytes) -> tuple[Any, ...]:
    """The ``audit_entries`` row of ``event`` at ``seq``, in ``ENTRY_COLUMNS`` order."""
    return (
        event.action,
        event.actor_id,
        event.actor_role,
        event.event_type,
        event.outcome,
        event.outcome_desc,
        event.patient_id,
        event.purpose,
        event.recorded_text,
        event.resource_id,
        event.resource_type,
        event.source_address,
        event.subtype,
        seq,
        leaf_hash,
    )


def insert_checkpoint(conn: Connection, cp: Checkpoint) -> None:
    conn.execute(
        audit_checkpoints.insert(),
        {
            "tree_size": cp.tree_size,
            "root_hash": cp.root_hash,
            "timestamp_ms": cp.timestamp_ms,
            "key_id": cp.key_id,
            "signature": cp.signature,
        },
    )


def read_checkpoints(conn: Connection, after: int = -1) -> list[Checkpoint]:
    """Checkpoints with ``tree_size > after``, smallest first."""
    t = audit_checkpoints.c
    rows = conn.execute(
        select(t.tree_size, t.root_hash, t.timestamp_ms, t.key_id, t.signature)
        .where(t.tree_size > after)
        .order_by(t.tree_size)
    )
    return [Checkpoint(r[0], bytes(r[1]), r[2], r[3], bytes(r[4])) for r in rows]


def read_leaf_hashes(conn: Connection, tree_size: int) -> list[bytes]:
    """Stored leaf hashes of entries ``0 .. tree_size-1``."""
    t = audit_entries.c
    rows = conn.execute(select(t.leaf_hash).where(t.seq < tree_size).order_by(t.seq))
    leaves = [bytes(r[0]) for r in rows]
    if len(leaves) != tree_size:
        raise LookupError(f"the log holds {len(leaves)} of the {tree_size} entries asked for")
    return leaves


def read_entries(conn: Connection, patient_id: str | None = None) -> Iterable[dict[str, Any]]:
    """Entries as column dicts, in order; only one patient's if ``patient_id`` is given."""
    query = select(audit_entries).order_by(audit_entries.c.seq)
    if patient_id is not None:
        query = query.where(audit_entries.c.patient_id == patient_id)
    for row in conn.execution_options(yield_per=1000).execute(query):
        yield dict(row._mapping)
