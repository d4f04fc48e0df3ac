"""Alembic environment: migrations run on the connection `working.db.migrate` hands over."""

from alembic import context

from working.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # A failed revision rolls back alone; earlier complete revisions stay applied.
    transaction_per_migration=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
