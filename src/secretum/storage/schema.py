"""Create, upgrade and check the database schemas with Alembic.

Two databases, two migration histories: ``migrations/main`` (records, audit, ...) and
``migrations/vault`` (wrapped keys). :func:`migrate` brings one to the newest revisions under a
lock, so that several instances started at once never run the same migration twice; it runs at
``secretum init`` and ``secretum migrate`` only. Every other start calls :func:`status` and
refuses an old schema (:mod:`secretum.bootstrap`): a server never changes the schema under the
feet of the instances already serving.

A test checks that the migrations produce exactly the tables the code declares.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

Database = Literal["main", "vault"]
_HERE = Path(__file__).parent / "migrations"

#: Keys of the PostgreSQL advisory locks held while a database is migrated (fixed, arbitrary
#: numbers: every instance of every version takes the same one).
_PG_LOCK_KEYS: dict[Database, int] = {"main": 0x5EC2E7_0001, "vault": 0x5EC2E7_0002}


def alembic_config(engine: Engine, database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE / database))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, database: Database, revision: str = "heads") -> None:
    """Bring ``database`` to ``revision`` (default: the newest of every branch), without the
    lock of :func:`migrate` (tests use it to build a database at an older revision).

    Each context may keep its own branch of migrations (``branch_labels``), all rooted at
    the first revision, so that independent contexts never fight over one linear history.
    """
    config = alembic_config(engine, database)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


# -- revisions --------------------------------------------------------------------------------


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _lineage(script: ScriptDirectory, heads: Iterable[str]) -> frozenset[str]:
    """Every revision applied when ``heads`` are: their ancestors and dependencies."""
    seen: set[str] = set()
    todo = list(heads)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        rev = script.get_revision(name)
        if rev is not None:
            todo.extend(_names(rev.down_revision))
            todo.extend(_names(rev.dependencies))
    return frozenset(seen)


def _tips(script: ScriptDirectory, revisions: frozenset[str]) -> tuple[str, ...]:
    """The revisions of ``revisions`` no other one of them builds on (what Alembic stores)."""
    below: set[str] = set()
    for name in revisions:
        rev = script.get_revision(name)
        if rev is not None:
            below.update(_names(rev.down_revision), _names(rev.dependencies))
    return tuple(sorted(revisions - below))


@dataclass(frozen=True)
class Status:
    """Where one database stands against the migrations of this version."""

    database: Database
    #: The revisions stored in the database (``()``: an empty database).
    current: tuple[str, ...]
    #: The revisions this version needs (stored as they would be after :func:`migrate`).
    needed: tuple[str, ...]
    #: Revisions this version has and the database lacks.
    pending: frozenset[str]
    #: Revisions the database has and this version does not know (a newer version migrated it).
    unknown: frozenset[str]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.unknown


def _status(conn: Connection, script: ScriptDirectory, database: Database) -> Status:
    current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = frozenset(current) - known
    everything = frozenset(known)
    return Status(
        database=database,
        current=current,
        needed=_tips(script, everything),
        pending=everything - _lineage(script, frozenset(current) - unknown),
        unknown=unknown,
    )


def status(engine: Engine, database: Database) -> Status:
    """Read ``database``'s revisions and compare them with this version's (changes nothing)."""
    script = ScriptDirectory.from_config(alembic_config(engine, database))
    with engine.connect() as conn:
        return _status(conn, script, database)


# -- migrate under a lock ---------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate` did to one database."""

    database: Database
    before: tuple[str, ...]
    after: tuple[str, ...]
    #: The revisions this run applied (empty: the database was up to date).
    applied: frozenset[str]


def _sqlite_path(engine: Engine) -> Path | None:
    path = engine.url.database
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _locked(engine: Engine, database: Database) -> Iterator[Connection]:
    """One transaction that holds the migration lock of ``database`` until it ends.

    PostgreSQL: a transaction-level advisory lock on a fixed key, released by the commit (or
    the rollback), so a second migrator waits, then sees the first one's revisions. SQLite: an
    ``flock`` on a file beside the database (waits without a timeout, however long the first
    migration takes), then the transaction itself starts with ``BEGIN IMMEDIATE`` (the write
    lock, see :mod:`secretum.storage.db`), so that no writer slips in between.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEYS[database]}
            )
            yield conn
        return
    path = _sqlite_path(engine) if engine.dialect.name == "sqlite" else None
    with contextlib.ExitStack() as stack:
        if path is not None:
            fd = os.open(f"{path}.migrate-lock", os.O_CREAT | os.O_RDWR, 0o600)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes, even if the process dies
        conn = stack.enter_context(engine.begin())
        yield conn


def migrate(
    engine: Engine,
    database: Database,
    *,
    then: Callable[[Connection, Migration], object] | None = None,
) -> Migration:
    """Bring ``database`` to this version's newest revisions, under the migration lock.

    Idempotent: a database already up to date is left as it is (``applied`` is empty).
    ``then`` runs in the same transaction, under the same lock, after the upgrade (the one-off
    tagging of rows the row-integrity migration found, see :mod:`secretum.bootstrap`): either
    both are committed or neither.
    """
    config = alembic_config(engine, database)
    script = ScriptDirectory.from_config(config)
    with _locked(engine, database) as conn:
        before = _status(conn, script, database)
        if before.unknown:
            raise SchemaTooNew(before)
        if before.pending:
            config.attributes["connection"] = conn
            command.upgrade(config, "heads")
        after = _status(conn, script, database)
        done = Migration(database, before.current, after.current, before.pending - after.pending)
        if then is not None:
            then(conn, done)
    return done


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer version of Secretum than this one."""

    def __init__(self, state: Status) -> None:
        label, at = database_label(state.database), show_revisions(state.current)
        super().__init__(
            f"the {label} schema is at {at}, newer than this version"
            f" ({show_revisions(state.needed)}): run the newer version of Secretum"
        )
        self.status = state


def database_label(database: Database) -> str:
    return "database" if database == "main" else "key vault"


def show_revisions(revisions: Iterable[str]) -> str:
    """Revisions for a person: sorted, comma separated, ``(empty)`` for none."""
    names = sorted(revisions)
    return ", ".join(names) if names else "(empty)"


def outdated_message(state: Status) -> str:
    """The one line a start on an old (or too new) schema ends with."""
    if state.unknown:
        return str(SchemaTooNew(state))
    label, at = database_label(state.database), show_revisions(state.current)
    return (
        f"the {label} schema is at {at}, this version needs {show_revisions(state.needed)}:"
        " run `secretum migrate`"
    )


def create_main_schema(engine: Engine) -> None:
    migrate(engine, "main")


def create_vault_schema(engine: Engine) -> None:
    migrate(engine, "vault")
