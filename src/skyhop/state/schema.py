"""The state tables (SQLAlchemy Core). Changes go through an Alembic migration in
`migrations/versions/`; `SCHEMA_REVISION` names the newest one."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_REVISION = "0003"

metadata = MetaData()

# One row per cluster, written (status INIT) before any provider call that spends money.
clusters = Table(
    "clusters", metadata,
    Column("name", String(128), primary_key=True),
    Column("status", String(16), nullable=False),  # INIT, UP, STOPPED, TERMINATING
    Column("provider", String(32), nullable=False),
    Column("region", String(128)),
    Column("zone", String(128)),
    Column("instance_type", String(128)),
    Column("accelerators", JSON),
    Column("num_nodes", Integer, nullable=False),
    Column("use_spot", Integer, nullable=False, default=0),
    Column("hourly_price", Float, nullable=False),  # per node, recorded at launch
    Column("resources", JSON),  # the requirement the cluster was launched for
    Column("setup_hash", String(64)),  # of setup + envs + workdir contents, to skip re-setup
    Column("autostop_minutes", Integer),
    Column("autostop_down", Integer, nullable=False, default=0),
    Column("handle", JSON),  # provider-specific: directories, agent socket, ...
    Column("owner", String(128)),
    Column("launched_at", Float, nullable=False),
    Column("status_changed_at", Float, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    Column("cluster", String(128), ForeignKey("clusters.name", ondelete="CASCADE"),
           primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("instance_id", String(256), nullable=False),
    Column("address", String(256)),
    Column("info", JSON),
)

# Billable intervals: a row opens when nodes start and closes when they stop or go.
# The price is copied in, so a later catalog change cannot rewrite history.
usage = Table(
    "usage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster", String(128), nullable=False, index=True),
    Column("provider", String(32), nullable=False),
    Column("instance_type", String(128)),
    Column("accelerators", JSON),
    Column("num_nodes", Integer, nullable=False),
    Column("hourly_price", Float, nullable=False),  # per node
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster", String(128), index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text),
)

# Every provisioning attempt and its outcome (the tracker's observations).
attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("cluster", String(128)),
    Column("provider", String(32), nullable=False),
    Column("region", String(128)),
    Column("zone", String(128)),
    Column("instance_type", String(128), nullable=False),
    Column("spot", Integer, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("message", Text),
)

# Hosts of SSH pools held by a cluster: the primary key makes a claim exclusive across
# processes (and machines, with a shared PostgreSQL).
host_claims = Table(
    "host_claims", metadata,
    Column("host_id", String(256), primary_key=True),
    Column("cluster", String(128), nullable=False, index=True),
    Column("claimed_at", Float, nullable=False),
)

# Managed jobs: the controller's whole memory (it can be killed and restarted at any time).
managed_jobs = Table(
    "managed_jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128)),
    Column("status", String(24), nullable=False, index=True),
    Column("spec", JSON, nullable=False),  # the DAG as YAML text + options (no secrets)
    Column("secrets", Text),  # encrypted (jobs/secrets.py): needed again at each recovery
    Column("task_index", Integer, nullable=False),  # position in the DAG's order
    Column("cluster", String(128)),
    Column("agent_job_id", Integer),
    Column("restarts", Integer, nullable=False),  # after user-code failures
    Column("recoveries", Integer, nullable=False),  # after preemptions
    Column("run_seconds", Float, nullable=False),  # progress: time the job ran, all tries
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("deadline_at", Float),
    Column("failure", Text),
    Column("controller", String(128)),  # host:pid of the controller driving it
    Column("cancel_requested", Integer, nullable=False),
)

managed_job_events = Table(
    "managed_job_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("status", String(24), nullable=False),
    Column("message", Text),
)
