"""Alembic environment of the main database (run through secretum.storage.schema)."""

from alembic import context

from secretum.storage.db import metadata

# The migrations are explicit operations: they do not read the metadata, which holds the tables
# of the modules the caller imported (the composition root imports them all:
# secretum.bootstrap.register_tables; the schema test compares the two).
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
