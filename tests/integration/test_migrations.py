"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from secretum.storage.db import metadata, vault_metadata


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
