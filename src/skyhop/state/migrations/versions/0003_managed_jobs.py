"""Managed jobs and their status transitions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "managed_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128)),
        sa.Column("status", sa.String(24), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("secrets", sa.Text),
        sa.Column("task_index", sa.Integer, nullable=False),
        sa.Column("cluster", sa.String(128)),
        sa.Column("agent_job_id", sa.Integer),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("recoveries", sa.Integer, nullable=False),
        sa.Column("run_seconds", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("deadline_at", sa.Float),
        sa.Column("failure", sa.Text),
        sa.Column("controller", sa.String(128)),
        sa.Column("cancel_requested", sa.Integer, nullable=False),
    )
    op.create_table(
        "managed_job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False, index=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("managed_job_events")
    op.drop_table("managed_jobs")
