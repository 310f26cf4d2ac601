"""Shared fixtures.

``db_url`` runs a test once on SQLite and once on PostgreSQL (127.0.0.1:5432, user postgres,
database test). Each PostgreSQL test gets its own fresh schema, dropped afterwards. Set
``SECRETUM_TEST_PG=0`` to skip the PostgreSQL half on a machine without a server; CI never does.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from secretum.bootstrap import register_tables
from secretum.crypto.row_mac import ROW_MAC_KEY_SIZE, RowMac
from secretum.storage import integrity
from secretum.storage.db import make_engine
from secretum.storage.schema import create_main_schema, create_vault_schema

# Every table module, as the composition root imports them: a test that walks the metadata
# (e.g. "no column of any table holds it") sees every table, whichever test modules ran.
register_tables()

PG_ADMIN_URL = os.environ.get(
    "SECRETUM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_enabled() -> bool:
    return os.environ.get("SECRETUM_TEST_PG", "1") != "0"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    if not _pg_enabled():
        pytest.skip("PostgreSQL tests disabled by SECRETUM_TEST_PG=0")
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _pg_schema_url(pg_admin: Engine, prefix: str) -> tuple[str, str]:
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_ADMIN_URL else "?"
    return f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'main.db'}"
        return
    pg_admin = request.getfixturevalue("pg_admin")
    url, schema = _pg_schema_url(pg_admin, "t")
    yield url
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The main database with its schema, on SQLite and on PostgreSQL."""
    eng = make_engine(db_url)
    create_main_schema(eng)
    # The platform binds the key ring's row-MAC key (bootstrap); a bare engine gets a fresh one.
    integrity.bind(eng, RowMac(os.urandom(ROW_MAC_KEY_SIZE)))
    yield eng
    eng.dispose()


@pytest.fixture
def vault_engine(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The key vault, on the same kind of database as ``engine`` but a separate one."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'vault.db'}"
        schema = None
    else:
        url, schema = _pg_schema_url(request.getfixturevalue("pg_admin"), "v")
    eng = make_engine(url)
    create_vault_schema(eng)
    yield eng
    eng.dispose()
    if schema:
        with request.getfixturevalue("pg_admin").connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
