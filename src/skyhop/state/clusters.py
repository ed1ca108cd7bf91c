"""Cluster records: intent before side effects, status transitions, nodes, billable usage."""

from __future__ import annotations

import time
from typing import Any

from skyhop.state.engine import UsesEngine
from skyhop.state.records import INIT, ClusterRecord, Node


def _sql() -> tuple[Any, Any, Any]:
    """SQLAlchemy, the engine factory and the tables: imported on first use (~0.17 s), so
    commands that only read the default SQLite state never pay for it."""
    import sqlalchemy

    from skyhop.state import db, schema

    return sqlalchemy, db, schema


def _record(row: Any, node_rows: list[Any]) -> ClusterRecord:
    return ClusterRecord.from_row(dict(row._mapping), [dict(r._mapping) for r in node_rows])


class ClusterStore(UsesEngine):
    """All cluster state, on one engine (the configured database by default).

    Reads of the default SQLite database go through `fastread` (no SQLAlchemy import:
    `exec` and `launch` on an existing cluster only read); writes through SQLAlchemy."""

    def _fast(self) -> list[ClusterRecord] | None:
        if self._engine is not None:
            return None
        from skyhop.state.status import status_fast

        return status_fast()

    def reserve(self, name: str, *, provider: str, num_nodes: int, hourly_price: float,
                region: str | None = None, zone: str | None = None,
                instance_type: str | None = None, accelerators: dict | None = None,
                use_spot: bool = False, resources: dict | None = None,
                handle: dict | None = None, owner: str | None = None) -> bool:
        """Write the INIT row before anything is provisioned. False if the name is taken."""
        sa, _, t = _sql()
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t.clusters).values(
                    name=name, status=INIT, provider=provider, region=region, zone=zone,
                    instance_type=instance_type, accelerators=accelerators,
                    num_nodes=num_nodes, use_spot=int(use_spot), hourly_price=hourly_price,
                    resources=resources, setup_hash=None, autostop_minutes=None,
                    autostop_down=0, handle=handle or {}, owner=owner, launched_at=now,
                    status_changed_at=now))
                conn.execute(sa.insert(t.events).values(cluster=name, at=now, kind="reserve",
                                                        message=f"{provider} x{num_nodes}"))
        except sa.exc.IntegrityError:
            return False
        return True

    def get(self, name: str) -> ClusterRecord | None:
        fast = self._fast()
        if fast is not None:
            return next((r for r in fast if r.name == name), None)
        sa, _, t = _sql()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.clusters).where(t.clusters.c.name == name)).first()
            if row is None:
                return None
            node_rows = conn.execute(sa.select(t.nodes).where(t.nodes.c.cluster == name)
                                     .order_by(t.nodes.c.rank)).all()
        return _record(row, list(node_rows))

    def list(self) -> list[ClusterRecord]:
        fast = self._fast()
        if fast is not None:
            return fast
        sa, _, t = _sql()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.clusters).order_by(t.clusters.c.launched_at)).all()
            node_rows = conn.execute(sa.select(t.nodes).order_by(t.nodes.c.cluster,
                                                                 t.nodes.c.rank)).all()
        by_cluster: dict[str, list[Any]] = {}
        for r in node_rows:
            by_cluster.setdefault(r.cluster, []).append(r)
        return [_record(r, by_cluster.get(r.name, [])) for r in rows]

    def update(self, name: str, **fields: Any) -> None:
        if "status" in fields:
            fields["status_changed_at"] = time.time()
        if "use_spot" in fields:
            fields["use_spot"] = int(fields["use_spot"])
        if "autostop_down" in fields:
            fields["autostop_down"] = int(fields["autostop_down"])
        sa, _, t = _sql()
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.clusters).where(t.clusters.c.name == name)
                         .values(**fields))
            if "status" in fields:
                conn.execute(sa.insert(t.events).values(cluster=name, at=time.time(),
                                                        kind="status", message=fields["status"]))

    def set_nodes(self, name: str, node_list: list[Node]) -> None:
        sa, _, t = _sql()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.nodes).where(t.nodes.c.cluster == name))
            if node_list:
                conn.execute(sa.insert(t.nodes), [
                    {"cluster": name, "rank": n.rank, "instance_id": n.instance_id,
                     "address": n.address, "info": n.info} for n in node_list])

    def remove(self, name: str) -> None:
        """Forget a cluster whose resources are gone (closes its usage)."""
        self.close_usage(name)
        sa, _, t = _sql()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.nodes).where(t.nodes.c.cluster == name))
            conn.execute(sa.delete(t.clusters).where(t.clusters.c.name == name))
            conn.execute(sa.insert(t.events).values(cluster=name, at=time.time(),
                                                    kind="removed", message=None))

    def open_usage(self, record: ClusterRecord) -> None:
        sa, _, t = _sql()
        with self.engine.begin() as conn:
            open_rows = conn.execute(sa.select(t.usage.c.id).where(
                t.usage.c.cluster == record.name, t.usage.c.ended_at.is_(None))).first()
            if open_rows is None:
                conn.execute(sa.insert(t.usage).values(
                    cluster=record.name, provider=record.provider,
                    instance_type=record.instance_type, accelerators=record.accelerators,
                    num_nodes=record.num_nodes, hourly_price=record.hourly_price,
                    started_at=time.time(), ended_at=None))

    def close_usage(self, name: str) -> None:
        sa, _, t = _sql()
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.usage).where(t.usage.c.cluster == name,
                                                  t.usage.c.ended_at.is_(None))
                         .values(ended_at=time.time()))

    def usage_rows(self) -> list[dict[str, Any]]:
        sa, _, t = _sql()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.usage).order_by(t.usage.c.started_at)).all()
        return [dict(r._mapping) for r in rows]
