"""Tables of the audit log and the SQL that reads and writes them.

* ``audit_entries``: one row per entry, ``seq`` 0..n-1 without gaps, the event's ids and codes
  (NULL when absent) and ``leaf_hash`` = ``SHA-256(0x00 || canonical entry)`` (RFC 9162 §2.1.1),
  which lets verify name the first entry whose content no longer matches.
* ``audit_head``: a single row (``id = 1``): tree size, the RFC 9162 compact range of subtree
  roots (``MTH`` at any size in O(log n)), and the size and time of the last checkpoint. Every
  append updates it, so appends are serialised on this row: a compare-and-swap ``UPDATE``
  (:func:`swap_and_insert`), or ``SELECT ... FOR UPDATE`` when that lost a race (PostgreSQL;
  on SQLite ``BEGIN IMMEDIATE`` already holds the write lock).
* ``audit_checkpoints``: signed tree heads (RFC 9162 §4.10), also copied to the witness file.

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
    """The ``audit_head`` row (a tuple: its fields are the SET parameters, in order)."""

    tree_size: int
    compact_range: bytes
    checkpoint_size: int
    checkpoint_ms: int


EMPTY_HEAD = HeadState(0, b"", 0, 0)


_SWAP_HEAD = (
    "UPDATE audit_head SET tree_size = ?, compact_range = ?, checkpoint_size = ?, "
    "checkpoint_ms = ? WHERE id = 1 AND tree_size = ? AND compact_range = ? "
    "AND checkpoint_size = ?"
)
_INSERT_ENTRY = (
    "INSERT INTO audit_entries (action, actor_id, actor_role, event_type, outcome, patient_id, "
    "purpose, recorded, resource_id, resource_type, source_address, subtype, seq, leaf_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SWAP_AND_INSERT = (
    "WITH head AS (UPDATE audit_head SET tree_size = ?, compact_range = ?, checkpoint_size = ?, "
    "checkpoint_ms = ? WHERE id = 1 AND tree_size = ? AND compact_range = ? "
    "AND checkpoint_size = ? RETURNING id) "
    "INSERT INTO audit_entries (action, actor_id, actor_role, event_type, outcome, patient_id, "
    "purpose, recorded, resource_id, resource_type, source_address, subtype, seq, leaf_hash) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM head"
)


@dataclass(frozen=True, slots=True)
class _Sql:
    """Driver-level SQL of the append path (it runs per action: no statement compilation).

    Written with qmark parameters (SQLite); ``%s`` for psycopg.
    """

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
    swap_head: str = _SWAP_HEAD
    insert_entry: str = _INSERT_ENTRY
    #: PostgreSQL: swap and insert in one statement, one round trip.
    swap_and_insert: str | None = None


def _pg(query: str) -> str:
    return query.replace("?", "%s")


_SQLITE_SQL = _Sql()
_PG_SQL = _Sql(
    lock_suffix=" FOR UPDATE",
    create_head=_pg(_SQLITE_SQL.create_head),
    set_head=_pg(_SQLITE_SQL.set_head),
    swap_head=_pg(_SWAP_HEAD),
    insert_entry=_pg(_SQLITE_SQL.insert_entry),
    swap_and_insert=_pg(_SWAP_AND_INSERT),
)


def _sql(dialect: str) -> _Sql:
    return _PG_SQL if dialect == "postgresql" else _SQLITE_SQL


def _cursor(conn: Connection) -> Any:
    """A DBAPI cursor inside ``conn``'s transaction (begun here if the caller has not yet).

    The append path talks to the driver directly: it runs once per audited action, and going
    through SQLAlchemy's execution machinery would cost more than SQLite's own work.
    """
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy's autobegin would do on a first execute
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    return dbapi.cursor()


def read_head(conn: Connection, *, lock: bool = False) -> HeadState | None:
    """The head row, locked for update if asked; None before the first append."""
    sql = _sql(conn.dialect.name)
    row = conn.exec_driver_sql(sql.select_head + (sql.lock_suffix if lock else "")).first()
    return None if row is None else HeadState(row[0], bytes(row[1]), row[2], row[3])


def lock_head(conn: Connection) -> HeadState:
    """Lock the head row, creating it if this is the first append ever."""
    head = read_head(conn, lock=True)
    if head is None:
        conn.exec_driver_sql(_sql(conn.dialect.name).create_head, (b"",))
        head = read_head(conn, lock=True)
        assert head is not None
    return head


def set_head(conn: Connection, new: HeadState) -> None:
    """Write ``new`` to the (locked) head row."""
    conn.exec_driver_sql(_sql(conn.dialect.name).set_head, tuple(new))


def swap_and_insert(
    conn: Connection, old: HeadState, new: HeadState, rows: Sequence[tuple[Any, ...]]
) -> bool:
    """Compare-and-swap the head from ``old`` to ``new`` and insert ``rows``; False (nothing
    written) if the head no longer holds ``old``: another writer got there first.

    On PostgreSQL a concurrent writer's uncommitted update makes this wait, then re-check: READ
    COMMITTED re-evaluates the WHERE clause on the newly committed row.
    """
    sql = _sql(conn.dialect.name)
    swap = (*new, *old[:3])  # SET all four fields WHERE the first three still hold
    cursor = _cursor(conn)
    try:
        if sql.swap_and_insert is not None and len(rows) == 1:
            cursor.execute(sql.swap_and_insert, (*swap, *rows[0]))
            return bool(cursor.rowcount == 1)
        cursor.execute(sql.swap_head, swap)
        if cursor.rowcount != 1:
            return False
        if len(rows) == 1:
            cursor.execute(sql.insert_entry, rows[0])
        else:
            cursor.executemany(sql.insert_entry, rows)
        return True
    finally:
        cursor.close()


def entry_row(seq: int, event: AuditEvent, leaf_hash: bytes) -> tuple[Any, ...]:
    """The ``audit_entries`` row of ``event`` at ``seq``, in ``ENTRY_COLUMNS`` order."""
    return (
        event.action,
        event.actor_id,
        event.actor_role,
        event.event_type,
        event.outcome,
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
