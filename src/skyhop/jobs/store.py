"""Managed jobs in the state database: rows, transitions (each time-stamped), claims.

Every change of status goes through `transition`, which also appends an event, so the
history of a job (`skyhop jobs queue --json` shows it) is complete even across controller
restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from skyhop.state.engine import UsesEngine

PENDING, STARTING, RUNNING, RECOVERING = "PENDING", "STARTING", "RUNNING", "RECOVERING"
SUCCEEDED, FAILED, FAILED_SETUP = "SUCCEEDED", "FAILED", "FAILED_SETUP"
FAILED_NO_RESOURCE, CANCELLING, CANCELLED = "FAILED_NO_RESOURCE", "CANCELLING", "CANCELLED"
TERMINAL = (SUCCEEDED, FAILED, FAILED_SETUP, FAILED_NO_RESOURCE, CANCELLED)
ACTIVE = (PENDING, STARTING, RUNNING, RECOVERING, CANCELLING)


@dataclass
class ManagedJob:
    id: int
    name: str | None
    status: str
    spec: dict[str, Any]
    secrets: str | None
    task_index: int
    cluster: str | None
    agent_job_id: int | None
    restarts: int
    recoveries: int
    run_seconds: float
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    deadline_at: float | None
    failure: str | None
    controller: str | None
    cancel_requested: bool

    @property
    def task_id(self) -> str:
        """Stable across recoveries: what a job keys its checkpoints by. The submitting
        home's id makes it unique across homes and users (each home numbers jobs from 1)."""
        home = self.spec.get("home_id")
        return f"skyhop-managed-{home}-{self.id}" if home else f"skyhop-managed-{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status,
                "task_index": self.task_index, "num_tasks": len(self.spec.get("order", [0])),
                "cluster": self.cluster, "restarts": self.restarts,
                "recoveries": self.recoveries, "run_seconds": round(self.run_seconds, 3),
                "submitted_at": self.submitted_at, "started_at": self.started_at,
                "ended_at": self.ended_at, "deadline_at": self.deadline_at,
                "failure": self.failure, "task_id": self.task_id,
                "recovery": self.spec.get("recovery"), "spot_policy": self.spec.get("spot_policy")}


class JobStore(UsesEngine):
    @staticmethod
    def _tables() -> tuple[Any, Any, Any]:
        import sqlalchemy as sa

        from skyhop.state.schema import managed_job_events, managed_jobs

        return sa, managed_jobs, managed_job_events

    def add(self, name: str | None, spec: dict[str, Any], secrets: str | None,
            deadline_at: float | None) -> int:
        from skyhop import paths

        sa, jobs, events = self._tables()
        now = time.time()
        spec = {**spec, "home_id": paths.home_id()}
        with self.engine.begin() as conn:
            job_id = conn.execute(sa.insert(jobs).values(
                name=name, status=PENDING, spec=spec, secrets=secrets, task_index=0,
                restarts=0, recoveries=0, run_seconds=0.0, submitted_at=now,
                deadline_at=deadline_at, cancel_requested=0)).inserted_primary_key[0]
            conn.execute(sa.insert(events).values(job_id=job_id, at=now, status=PENDING,
                                                  message="submitted"))
        return int(job_id)

    def get(self, job_id: int) -> ManagedJob | None:
        sa, jobs, _ = self._tables()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def list(self, active_only: bool = False) -> list[ManagedJob]:
        sa, jobs, _ = self._tables()
        query = sa.select(jobs).order_by(jobs.c.id)
        if active_only:
            query = query.where(jobs.c.status.in_(ACTIVE))
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(query)]

    def update(self, job_id: int, **fields: Any) -> None:
        sa, jobs, _ = self._tables()
        with self.engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**fields))

    def transition(self, job_id: int, status: str, message: str = "", **fields: Any) -> None:
        """Set the status (and other fields) and record the transition, atomically. A job
        that reached a terminal status never leaves it."""
        sa, jobs, events = self._tables()
        now = time.time()
        values = {"status": status, **fields}
        if status in TERMINAL:
            values.setdefault("ended_at", now)
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(jobs).where(jobs.c.id == job_id)
                                .where(jobs.c.status.notin_(TERMINAL)).values(**values))
            if done.rowcount:
                conn.execute(sa.insert(events).values(job_id=job_id, at=now, status=status,
                                                      message=message))

    def note(self, job_id: int, message: str) -> None:
        """An event that is not a status change (what the controller decided, and why)."""
        sa, _, events = self._tables()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(events).values(job_id=job_id, at=time.time(),
                                                  status="NOTE", message=message))

    def events(self, job_id: int) -> list[dict[str, Any]]:
        sa, _, events = self._tables()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(events).where(events.c.job_id == job_id)
                                .order_by(events.c.id)).all()
        return [{"at": r.at, "status": r.status, "message": r.message} for r in rows]

    def request_cancel(self, job_ids: list[int] | None) -> list[int]:
        """Mark active jobs for cancellation (the controller stops them); returns the ids."""
        sa, jobs, _ = self._tables()
        with self.engine.begin() as conn:
            query = sa.select(jobs.c.id).where(jobs.c.status.in_(ACTIVE))
            if job_ids is not None:
                query = query.where(jobs.c.id.in_(job_ids))
            ids = [r.id for r in conn.execute(query)]
            if ids:
                conn.execute(sa.update(jobs).where(jobs.c.id.in_(ids))
                             .values(cancel_requested=1))
        return ids

    def claim_many(self, controller: str, previous: dict[int, str | None]) -> list[int]:
        """Take over many jobs at once ({job id: the controller seen}); returns those won."""
        sa, jobs, _ = self._tables()
        by_previous: dict[str | None, list[int]] = {}
        for job_id, owner in previous.items():
            by_previous.setdefault(owner, []).append(job_id)
        won: list[int] = []
        with self.engine.begin() as conn:
            for owner, ids in by_previous.items():
                for first in range(0, len(ids), 500):  # bounded IN lists
                    chunk = ids[first:first + 500]
                    condition = (jobs.c.controller.is_(None) if owner is None
                                 else jobs.c.controller == owner)
                    conn.execute(sa.update(jobs).where(jobs.c.id.in_(chunk)).where(condition)
                                 .values(controller=controller))
                    won += [r.id for r in conn.execute(
                        sa.select(jobs.c.id).where(jobs.c.id.in_(chunk))
                        .where(jobs.c.controller == controller))]
        return won


def _job(row: Any) -> ManagedJob:
    data = dict(row._mapping)
    data["cancel_requested"] = bool(data["cancel_requested"])
    return ManagedJob(**data)
