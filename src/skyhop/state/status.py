"""Listing clusters for `skyhop status`: kept light (no SQLAlchemy on SQLite)."""

from __future__ import annotations

from skyhop import paths
from skyhop.state.records import ClusterRecord


def status_fast() -> list[ClusterRecord] | None:
    """Every cluster, read without SQLAlchemy; None when that is not possible (PostgreSQL,
    or a database not created or migrated yet)."""
    url = paths.db_url()
    if not url.startswith("sqlite:///"):
        return None
    from pathlib import Path

    from skyhop.state.fastread import list_clusters

    return list_clusters(Path(url.removeprefix("sqlite:///")))


def status() -> list[ClusterRecord]:
    """Every cluster in state."""
    records = status_fast()
    if records is not None:
        return records
    from skyhop.state.clusters import ClusterStore

    return ClusterStore().list()
