"""The tracker's attempts in the state database."""

from __future__ import annotations

from pathlib import Path

from skyhop.state.engine import UsesEngine
from skyhop.tracker.tracker import Attempt, Key, Tracker

# Older observations carry no weight (0.5 ** 48 at a 1 h half-life); do not load them.
HORIZON_S = 2 * 86400


class TrackerStore(UsesEngine):
    def record(self, attempt: Attempt, cluster: str | None = None) -> None:
        import sqlalchemy as sa

        from skyhop.state.schema import attempts

        k = attempt.key
        with self.engine.begin() as conn:
            conn.execute(sa.insert(attempts).values(
                at=attempt.at, cluster=cluster, provider=k.provider, region=k.region,
                zone=k.zone, instance_type=k.instance_type, spot=int(k.spot),
                outcome=attempt.outcome, message=attempt.message[:2000]))

    def attempts(self, since: float) -> list[Attempt]:
        if self._engine is None:  # the default SQLite file: read it without SQLAlchemy
            from skyhop import paths
            from skyhop.state.fastread import list_attempts

            url = paths.db_url()
            if url.startswith("sqlite:///"):
                rows = list_attempts(Path(url.removeprefix("sqlite:///")), since)
                if rows is not None:
                    return [Attempt(at, Key(p, r, z, t, bool(spot)), outcome, message or "")
                            for at, p, r, z, t, spot, outcome, message in rows]
        import sqlalchemy as sa

        from skyhop.state.schema import attempts

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(attempts).where(attempts.c.at >= since)
                                .order_by(attempts.c.at)).all()
        return [Attempt(r.at, Key(r.provider, r.region, r.zone, r.instance_type,
                                  bool(r.spot)), r.outcome, r.message or "") for r in rows]

    def tracker(self, now: float) -> Tracker:
        return Tracker(self.attempts(now - HORIZON_S))
