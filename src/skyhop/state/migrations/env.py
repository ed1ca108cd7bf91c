"""Alembic environment: runs on the connection skyhop hands over (see state/db.py)."""

from alembic import context

from skyhop.state.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
