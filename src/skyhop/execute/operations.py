"""Cluster operations after launch: status, stop/start, down, autostop, queue, cancel, logs,
cost report."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shlex
import time
from collections.abc import Callable
from typing import Any

from skyhop.errors import UserError
from skyhop.execute.launcher import Launcher
from skyhop.names import check_name, check_pattern, is_valid_name, shown
from skyhop.provision import registry
from skyhop.provision.base import STOP
from skyhop.state.records import UP, ClusterRecord


class Operations:
    def __init__(self, launcher: Launcher | None = None):
        self.launcher = launcher or Launcher()
        self.store = self.launcher.store

    def get(self, name: str, *, invalid_ok: bool = False) -> ClusterRecord:
        """The cluster's record. A name that breaks the naming rule is refused before any
        lookup; with `invalid_ok`, a row already stored under such a name (made before the
        rule) is still found, so that `down` can remove it."""
        if not is_valid_name(name):
            record = self.store.get(name) if invalid_ok else None
            if record is None:
                check_name(name, "cluster")
            assert record is not None
            return record
        record = self.store.get(name)
        if record is None:
            known = [c.name for c in self.store.list()]
            raise UserError(f"no cluster named {name!r}",
                            hint=f"clusters: {', '.join(known)}" if known else
                            "there are no clusters; `skyhop launch` makes one")
        return record

    def select(self, names: list[str], everything: bool = False,
               status: str | None = None, invalid_ok: bool = False) -> list[str]:
        """Clusters by name or shell pattern (`'dev-*'`), or with `everything` all of them;
        patterns and `everything` pick only those in `status`, if given. Unknown names are
        an error before anything is done. Rows stored under names that break the naming
        rule are left out unless `invalid_ok` (for `down`, which only forgets them)."""
        for name in names:  # every argument is checked before anything is done
            if invalid_ok and not is_valid_name(name) and self.store.get(name) is not None:
                continue  # an old row under a bad name: `down` may name it to remove it
            check_pattern(name, "cluster")
        by_status = {r.name: r.status for r in self.store.list()
                     if invalid_ok or is_valid_name(r.name)}
        if everything:
            return [n for n, s in by_status.items() if status in (None, s)]
        if not names:
            raise UserError("name the clusters, or give --all", hint="see `skyhop status`")
        chosen: list[str] = []
        for name in names:
            if name not in by_status and any(ch in name for ch in "*?["):
                matched = [n for n in by_status if fnmatch.fnmatchcase(n, name)]
                if not matched:
                    raise UserError(f"no cluster matches {name!r}", hint="see `skyhop status`")
                matched = [m for m in matched if status in (None, by_status[m])]
            else:
                matched = [self.get(name, invalid_ok=invalid_ok).name]
            chosen += [m for m in matched if m not in chosen]
        return chosen

    def down(self, name: str) -> None:
        self.get(name, invalid_ok=True)
        if not is_valid_name(name):
            # Made before names were checked: a path or shell line built from it is unsafe,
            # so no provider is asked; whatever still carries its tag is left to `gc`.
            self.launcher.store.remove(name)
            self.launcher.reporter.stage("down", f"{shown(name)}: its name is not a valid "
                                         "cluster name, so only its record was removed; "
                                         "`skyhop gc` collects what it may have left")
            return
        self.launcher.reporter.stage("down", name)
        self.launcher.teardown(name)

    def stop(self, name: str) -> None:
        record = self.get(name)
        provider = registry.get(record.provider)
        if STOP not in provider.capabilities:
            raise UserError(f"{record.provider} clusters cannot be stopped, only taken down",
                            hint=f"skyhop down {name}")
        if record.status != UP:
            raise UserError(f"cluster {name!r} is {record.status}, not UP")
        self.launcher.reporter.stage("stop", name)
        with contextlib.suppress(UserError):
            self.launcher.agent(record).shutdown()
        provider.stop(name, [n.instance_id for n in record.nodes])
        self.store.update(name, status="STOPPED")
        self.store.close_usage(name)

    def start(self, name: str) -> None:
        record = self.get(name)
        if record.status == UP:
            return
        if record.status != "STOPPED":
            raise UserError(f"cluster {name!r} is {record.status}",
                            hint=f"skyhop down {name}, then launch again")
        self.launcher.start(record)

    def _up(self, name: str) -> ClusterRecord:
        record = self.get(name)
        if record.status != UP:
            raise UserError(f"cluster {name!r} is {record.status}",
                            hint=f"skyhop start {name}")
        return record

    def autostop(self, name: str, idle_minutes: int | None, down: bool,
                 wait_for: str = "jobs_and_ssh") -> None:
        self.launcher.set_autostop(self._up(name), idle_minutes, down, wait_for)

    def queue(self, name: str) -> list[dict[str, Any]]:
        return self.launcher.agent(self._up(name)).queue()

    def cancel(self, name: str, job_ids: list[int] | None) -> list[int]:
        return self.launcher.agent(self._up(name)).cancel(job_ids)

    def logs(self, name: str, job_id: int | None, follow: bool,
             output: Callable[[str], None]) -> dict[str, Any]:
        return self.launcher.agent(self._up(name)).logs(job_id, follow, output)

    def login(self, name: str, rank: int, command: list[str],
              tty: bool) -> tuple[list[str], str | None]:
        """(argv, working directory) that logs in to a node, or runs `command` there: OpenSSH
        with skyhop's key and trusted host keys; a shell in the node's folder for a local
        node. With `tty` (or no command), a terminal, which autostop counts as activity."""
        from skyhop.execute.ssh_runner import SSHRunner

        record = self._up(name)
        if not 0 <= rank < record.num_nodes:
            raise UserError(f"cluster {name!r} has nodes 0..{record.num_nodes - 1}, not {rank}")
        runner = self.launcher.runners(record)[rank]
        line = shlex.join(command) if len(command) > 1 else "".join(command)
        if isinstance(runner, SSHRunner):
            return [*runner.ssh_argv(), *(["-tt"] if tty else []),
                    f"{runner.user}@{runner.host}", *([line] if line else [])], None
        shell = os.environ.get("SHELL") or "/bin/sh"
        return ([shell, "-c", line] if line else [shell]), runner.home


def cost_report(store: Any = None) -> list[dict[str, Any]]:
    """Cost per cluster from the usage intervals (prices recorded at launch)."""
    from skyhop.state.clusters import ClusterStore

    store = store or ClusterStore()
    now = time.time()
    live = {c.name: c.status for c in store.list()}
    report: dict[str, dict[str, Any]] = {}
    for row in store.usage_rows():
        end = row["ended_at"] or now
        hours = max(0.0, end - row["started_at"]) / 3600
        entry = report.setdefault(row["cluster"], {
            "cluster": row["cluster"], "provider": row["provider"],
            "instance_type": row["instance_type"], "accelerators": row["accelerators"],
            "num_nodes": row["num_nodes"], "hourly_price": row["hourly_price"],
            "hours": 0.0, "cost": 0.0, "status": live.get(row["cluster"], "TERMINATED")})
        entry["hours"] += hours
        entry["cost"] += hours * row["hourly_price"] * row["num_nodes"]
    return list(report.values())
