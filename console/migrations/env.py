"""Alembic's environment: run in-process on the engine the console hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from console.models import Base

target_metadata = Base.metadata
engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # render_as_batch: SQLite alters a table by copying it; Alembic does that when asked.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
