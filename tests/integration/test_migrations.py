"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from secretum.bootstrap import register_tables
from secretum.storage.db import metadata, vault_metadata

register_tables()  # the composition root's list of table modules: the metadata is complete


def _diff(engine: Engine, target: object) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), target))  # type: ignore[arg-type]


def test_main_migrations_match_the_models(engine: Engine) -> None:
    assert "sealed_records" in inspect(engine).get_table_names()
    assert _diff(engine, metadata) == []


def test_vault_migrations_match_the_models(vault_engine: Engine) -> None:
    assert "data_keys" in inspect(vault_engine).get_table_names()
    assert _diff(vault_engine, vault_metadata) == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    from secretum.storage.schema import create_main_schema

    create_main_schema(engine)  # already at head: nothing to do, nothing breaks
    assert _diff(engine, metadata) == []


def _fresh_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_the_composition_list_names_every_table_the_migrations_make(engine: Engine) -> None:
    """In a fresh interpreter (nothing imported by other tests), the composition root's list
    alone declares every table the migrations create, and no other."""
    declared = _fresh_python(
        "from secretum.bootstrap import register_tables; register_tables()\n"
        "from secretum.storage.db import metadata; print(' '.join(sorted(metadata.tables)))"
    ).split()
    made = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert set(declared) == made


def test_storage_imports_no_context() -> None:
    """The storage layer (engines, schema, blobs, row integrity) imports no context, only the
    crypto kernel below it: the list of table modules lives in the composition root. (It
    failed while ``storage/tables.py`` imported every context.)"""
    loaded = _fresh_python(
        "import importlib, pkgutil, sys, secretum.storage as s\n"
        "for m in pkgutil.iter_modules(s.__path__, 'secretum.storage.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(' '.join(m for m in sys.modules if m.startswith('secretum.')))"
    ).split()
    below = ("secretum.storage", "secretum.crypto")
    assert all(m.startswith(below) for m in loaded), loaded
