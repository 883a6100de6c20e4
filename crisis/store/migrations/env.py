"""Alembic environment: always handed a live connection by crisis.store.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from crisis.store.registry import model_modules

model_modules()
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through crisis.store.db.migrate (it supplies the connection)"
    )

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
