"""exercises: the exercise, its injects' state, participants and observations

Revision ID: 0012_exercises
Revises: 0011_lesson_index
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import crisis.store.sqltypes

revision: str = "0012_exercises"
down_revision: str | None = "0011_lesson_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = crisis.store.sqltypes.UTCDateTime


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "exercises",
        sa.Column("id", _string(120), nullable=False),
        sa.Column("scenario_id", _string(120), nullable=False),
        sa.Column("title", _string(300), nullable=False),
        sa.Column("scenario_yaml", sa.Text(), nullable=False),
        sa.Column("speed", sa.Float(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("state", _string(20), nullable=False),
        sa.Column("created_by", _string(200), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("started_at", UTC(timezone=True), nullable=True),
        sa.Column("paused_at", UTC(timezone=True), nullable=True),
        sa.Column("paused_seconds", sa.Float(), nullable=False),
        sa.Column("pauses", sa.JSON(), nullable=False),
        sa.Column("ended_at", UTC(timezone=True), nullable=True),
        sa.Column("ended_by", _string(200), nullable=True),
        sa.Column("end_reason", _string(500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("exercises", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exercises_scenario_id"), ["scenario_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_exercises_state"), ["state"], unique=False)

    op.create_table(
        "exercise_injects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exercise_id", _string(120), nullable=False),
        sa.Column("inject_id", _string(120), nullable=False),
        sa.Column("due_offset_seconds", sa.Float(), nullable=False),
        sa.Column("type", _string(20), nullable=False),
        sa.Column("state", _string(20), nullable=False),
        sa.Column("sent_at", UTC(timezone=True), nullable=True),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["exercise_id"], ["exercises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exercise_id", "inject_id"),
    )
    with op.batch_alter_table("exercise_injects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exercise_injects_exercise_id"), ["exercise_id"], unique=False
        )

    op.create_table(
        "exercise_observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exercise_id", _string(120), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("actor", _string(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["exercise_id"], ["exercises.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("exercise_observations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exercise_observations_exercise_id"), ["exercise_id"], unique=False
        )

    op.create_table(
        "exercise_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exercise_id", _string(120), nullable=False),
        sa.Column("person_id", _string(200), nullable=False),
        sa.Column("kind", _string(20), nullable=False),
        sa.Column("added_by", _string(200), nullable=False),
        sa.Column("added_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["exercise_id"], ["exercises.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exercise_id", "person_id"),
    )
    with op.batch_alter_table("exercise_participants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exercise_participants_exercise_id"), ["exercise_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("exercise_participants")
    op.drop_table("exercise_observations")
    op.drop_table("exercise_injects")
    op.drop_table("exercises")
