"""Create or upgrade the database schemas.

Importing :mod:`secretum.storage.tables` registers every table on the shared metadata.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from secretum.storage.db import metadata, vault_metadata


def _register_tables() -> None:
    import secretum.storage.tables  # noqa: F401  (registers every table)


def create_main_schema(engine: Engine) -> None:
    """Bring the main database to the current schema."""
    _register_tables()
    metadata.create_all(engine)


def create_vault_schema(engine: Engine) -> None:
    """Bring the key vault database to the current schema."""
    _register_tables()
    vault_metadata.create_all(engine)
