"""Create or upgrade the database schemas with Alembic.

Two databases, two migration histories: ``migrations/main`` (records, audit, ...) and
``migrations/vault`` (wrapped keys). ``upgrade`` runs at ``secretum init`` and at every start.
A test checks that the migrations produce exactly the tables the code declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

Database = Literal["main", "vault"]
_HERE = Path(__file__).parent / "migrations"


def register_tables() -> None:
    """Import every module that declares tables, so the metadata is complete."""
    import secretum.storage.tables  # noqa: F401


def alembic_config(engine: Engine, database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE / database))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, database: Database, revision: str = "heads") -> None:
    """Bring ``database`` to ``revision`` (default: the newest of every branch).

    Each context may keep its own branch of migrations (``branch_labels``), all rooted at
    the first revision, so that independent contexts never fight over one linear history.
    """
    config = alembic_config(engine, database)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def create_main_schema(engine: Engine) -> None:
    upgrade(engine, "main")


def create_vault_schema(engine: Engine) -> None:
    upgrade(engine, "vault")
