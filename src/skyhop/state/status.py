"""Listing clusters for `skyhop status`: kept light (no SQLAlchemy on SQLite)."""

from __future__ import annotations

from skyhop import paths
from skyhop.state.records import ClusterRecord


def status() -> list[ClusterRecord]:
    """Every cluster in state (fast path on SQLite: no SQLAlchemy import)."""
    url = paths.db_url()
    if url.startswith("sqlite:///"):
        from pathlib import Path

        from skyhop.state.fastread import list_clusters

        records = list_clusters(Path(url.removeprefix("sqlite:///")))
        if records is not None:
            return records
    from skyhop.state.clusters import ClusterStore

    return ClusterStore().list()
