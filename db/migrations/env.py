"""Alembic environment: always handed a connection by db.engine.migrate (no alembic.ini, no logging set-up)."""
from alembic import context

from db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through db.engine.migrate(engine), which passes a connection")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
