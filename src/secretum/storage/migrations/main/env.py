"""Alembic environment of the main database (run through secretum.storage.schema)."""

from alembic import context

from secretum.storage.db import metadata
from secretum.storage.schema import register_tables

register_tables()
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
