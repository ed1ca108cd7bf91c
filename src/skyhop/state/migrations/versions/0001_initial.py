"""Initial state: clusters, nodes, usage, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(128)),
        sa.Column("zone", sa.String(128)),
        sa.Column("instance_type", sa.String(128)),
        sa.Column("accelerators", sa.JSON),
        sa.Column("num_nodes", sa.Integer, nullable=False),
        sa.Column("use_spot", sa.Integer, nullable=False),
        sa.Column("hourly_price", sa.Float, nullable=False),
        sa.Column("resources", sa.JSON),
        sa.Column("setup_hash", sa.String(64)),
        sa.Column("autostop_minutes", sa.Integer),
        sa.Column("autostop_down", sa.Integer, nullable=False),
        sa.Column("handle", sa.JSON),
        sa.Column("owner", sa.String(128)),
        sa.Column("launched_at", sa.Float, nullable=False),
        sa.Column("status_changed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("cluster", sa.String(128), sa.ForeignKey("clusters.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("rank", sa.Integer, primary_key=True),
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("address", sa.String(256)),
        sa.Column("info", sa.JSON),
    )
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("cluster", sa.String(128), nullable=False, index=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(128)),
        sa.Column("accelerators", sa.JSON),
        sa.Column("num_nodes", sa.Integer, nullable=False),
        sa.Column("hourly_price", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("cluster", sa.String(128), index=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    for table in ("events", "usage", "nodes", "clusters"):
        op.drop_table(table)
