"""A read-only path to the SQLite state for `skyhop status`, without SQLAlchemy.

Importing SQLAlchemy costs ~0.17 s, most of `skyhop status`'s budget of 0.2 s. Listing
clusters is one SELECT per table, so on SQLite it is done with the standard library. The
column names come from the SQLAlchemy schema's own list (kept in `COLUMNS` below and
checked against it by tests/test_state.py), and the result is the same ClusterRecord.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from skyhop.state.records import ClusterRecord

CLUSTER_COLUMNS = ("name", "status", "provider", "region", "zone", "instance_type",
                   "accelerators", "num_nodes", "use_spot", "hourly_price", "resources",
                   "setup_hash", "autostop_minutes", "autostop_down", "handle", "owner",
                   "launched_at", "status_changed_at")
NODE_COLUMNS = ("cluster", "rank", "instance_id", "address", "info")
_JSON = {"accelerators", "resources", "handle", "info"}


def _decode(columns: tuple[str, ...], row: tuple) -> dict:
    return {c: (json.loads(v) if c in _JSON and v is not None else v)
            for c, v in zip(columns, row, strict=True)}


def _select(path: Path, *queries: tuple[str, tuple]) -> list[list[tuple]] | None:
    """The rows of each query on the SQLite file, read-only; None when the file is missing or
    the schema is not what these queries expect (the caller then uses SQLAlchemy)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        return [conn.execute(sql, args).fetchall() for sql, args in queries]
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def list_clusters(path: Path) -> list[ClusterRecord] | None:
    """Clusters in the SQLite file at `path`; None when it cannot be read this way (no file
    yet, or a schema this reader does not know), so the caller uses the full store."""
    found = _select(path, (f"SELECT {', '.join(CLUSTER_COLUMNS)} FROM clusters "
                           "ORDER BY launched_at", ()),
                    (f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes ORDER BY cluster, rank", ()))
    if found is None:
        return None
    rows, node_rows = found
    by_cluster: dict[str, list[dict]] = {}
    for r in node_rows:
        node = _decode(NODE_COLUMNS, r)
        by_cluster.setdefault(node.pop("cluster"), []).append(node)
    return [ClusterRecord.from_row(_decode(CLUSTER_COLUMNS, r), by_cluster.get(r[0], []))
            for r in rows]


ATTEMPT_COLUMNS = ("at", "provider", "region", "zone", "instance_type", "spot", "outcome",
                   "message")


def list_attempts(path: Path, since: float) -> list[tuple] | None:
    """Provisioning attempts since `since` (oldest first), or None when this reader cannot
    answer (no file, an older schema): the planner reads them on every launch."""
    found = _select(path, (f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE at >= ?"
                           " ORDER BY at", (since,)))
    return found[0] if found is not None else None
