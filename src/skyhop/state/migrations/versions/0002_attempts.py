"""Provisioning attempts (for the tracker) and claims on pool hosts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("cluster", sa.String(128)),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(128)),
        sa.Column("zone", sa.String(128)),
        sa.Column("instance_type", sa.String(128), nullable=False),
        sa.Column("spot", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("message", sa.Text),
    )
    op.create_table(
        "host_claims",
        sa.Column("host_id", sa.String(256), primary_key=True),
        sa.Column("cluster", sa.String(128), nullable=False, index=True),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("host_claims")
    op.drop_table("attempts")
