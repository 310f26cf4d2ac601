"""Database engines and the shared SQLAlchemy metadata.

Every context declares its tables on :data:`metadata`; the schema is created and evolved by the
Alembic migrations in :mod:`secretum.storage.migrations` (see :func:`secretum.storage.schema`).

SQLite (embedded default) runs in WAL mode with ``synchronous=FULL``: a committed transaction
survives a power loss, which the audit log's durability promise relies on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from secretum.storage.locks import QueuedConnection, queued_begin

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Tables of the main database (records, audit, ...).
metadata = MetaData(naming_convention=NAMING_CONVENTION)
#: Tables of the key vault (wrapped data keys, named secrets): a separate database.
vault_metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Overwrite deleted content with zeros: a shredded key does not linger in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    """Start SQLite transactions as ``BEGIN IMMEDIATE`` unless told otherwise.

    A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when
    another writer committed in between; an immediate one waits for the write lock
    (``busy_timeout``) instead. Read-only paths that want to run beside a writer pass
    ``execution_options(sqlite_begin="DEFERRED")``.

    ``BEGIN`` goes straight to the driver: a SQLAlchemy execution (``exec_driver_sql``) costs
    more than SQLite's own work for it, on every transaction. SQLAlchemy's state is the same
    either way: this runs inside ``Connection.begin`` (its transaction object exists; its own
    "begin" is a no-op for pysqlite), and its ``commit``/``rollback`` call the driver's, which
    sees the open transaction. Only the ``BEGIN ...`` line is missing from ``echo`` output and
    cursor events. A failure is raised as SQLAlchemy would (``sqlalchemy.exc.OperationalError``
    for "database is locked"), with the driver's error as ``orig``.
    """
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    if mode not in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
        raise ValueError(f"unknown sqlite_begin mode {mode!r}")
    statement = f"BEGIN {mode}"
    try:
        conn.connection.driver_connection.execute(statement)
    except conn.dialect.loaded_dbapi.Error as exc:  # (evaluated only when something was raised)
        from sqlalchemy.exc import DBAPIError

        # SQLAlchemy leaves its "inside begin" flag set when a begin listener raises: the
        # connection's next implicit begin would be skipped, its statements run in the driver's
        # autocommit mode (so a "rolled back" write would stay). Clear it before raising.
        if hasattr(conn, "_Connection__in_begin"):
            conn._Connection__in_begin = False
        base = conn.dialect.loaded_dbapi.Error
        raise DBAPIError.instance(statement, (), exc, base, dialect=conn.dialect) from exc


#: Connections each engine keeps open. A request holds at most one at a time, and requests run
#: in at most 40 threads (the thread pool of the web server) plus the event loop: with fewer,
#: connections beyond the pool are opened and closed again for every request under load
#: (SQLAlchemy's defaults are 5 + 10 overflow), which costs more than the request itself.
POOL_SIZE = 40
POOL_OVERFLOW = 10


def reader(engine: Engine) -> Engine:
    """``engine`` for reads that write nothing: PostgreSQL in autocommit (each statement sees
    what is committed; no BEGIN/COMMIT round trips), SQLite in a deferred transaction (a
    snapshot, taken beside writers without their lock)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(sqlite_begin="DEFERRED")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the settings Secretum relies on."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from creation; SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        if path in ("", ":memory:"):
            kwargs.setdefault("poolclass", StaticPool)
        else:
            kwargs.setdefault("pool_size", POOL_SIZE)
            kwargs.setdefault("max_overflow", POOL_OVERFLOW)
        # The threads of this process take turns for the write lock in arrival order (see
        # storage.locks): SQLite's busy handler sleeps in steps of up to 100 ms otherwise.
        kwargs.setdefault(
            "connect_args", {"check_same_thread": False, "timeout": 30, "factory": QueuedConnection}
        )
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", queued_begin(_sqlite_begin))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    # No pre-ping: it costs a round trip at every checkout (several per request). A connection
    # that died (server restarted) fails its first statement instead; SQLAlchemy then discards
    # it and every connection opened before it, and the next request gets fresh ones.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_size", POOL_SIZE)
    kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    return create_engine(url, **kwargs)
