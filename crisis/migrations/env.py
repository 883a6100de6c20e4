"""Alembic environment: always handed a live connection by crisis.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import crisis.models
import crisis.stream_models  # noqa: F401  (the stream worker's tables)
import notifiers.models  # noqa: F401  (the notifiers' tables)
from crisis import board_models  # noqa: F401  (board: situation reports, data access log)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through crisis.db.migrate (it supplies the connection)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
