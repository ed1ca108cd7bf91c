"""Reconciling state with the providers' truth, and collecting what nobody owns.

`refresh` (behind `skyhop status --refresh`) asks each cluster's provider which nodes exist:
a launch or a teardown whose process died is finished (its nodes terminated, its row
removed), and a cluster whose machines are gone (preempted, deleted by hand) is forgotten.
`gc` then asks every usable provider for skyhop-tagged resources of clusters the state does
not know, and terminates them. Both only ever touch resources skyhop tagged.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field

from skyhop.errors import UserError
from skyhop.names import is_valid_name, shown
from skyhop.provision import registry
from skyhop.provision.keys import remove_cluster_key
from skyhop.state.clusters import ClusterStore
from skyhop.state.records import INIT, STOPPED, TERMINATING, UP, ClusterRecord


def owner_tag() -> str:
    """Who is launching: `host:pid`, so a later refresh can tell an interrupted launch."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process that wrote the row still runs (unknowable on another host:
    assume it does)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):  # a zombie is dead too
            return False
    return True


def lease_lapsed(record: ClusterRecord, now: float | None = None) -> bool:
    """Whether an ephemeral cluster (a function pool, `handle.ephemeral`) outlived its
    client. It lives only while the process that made it does: on this machine that is
    known exactly (the owner's PID); from another machine, by the client's heartbeat in
    `handle.heartbeat`, which must be newer than `handle.lease_s` seconds."""
    handle = record.handle or {}
    if not handle.get("ephemeral"):
        return False
    host = (record.owner or "").rpartition(":")[0]
    if not record.owner or host == socket.gethostname():
        return not owner_alive(record.owner)
    beat, lease = handle.get("heartbeat"), handle.get("lease_s")
    return beat is not None and lease is not None and (now or time.time()) - beat > lease


@dataclass
class Report:
    changes: list[str] = field(default_factory=list)
    terminated: dict[str, list[str]] = field(default_factory=dict)  # cluster -> ids
    errors: list[str] = field(default_factory=list)


def _finish_teardown(store: ClusterStore, record: ClusterRecord, report: Report,
                     ids: list[str]) -> None:
    provider = registry.get(record.provider)
    created = record.handle.get("created") or {}
    for other in sorted(set(created) - {record.provider}):  # an earlier attempt's provider
        leftover = registry.get(other)
        leftover.terminate(record.name, [i for ids in created[other].values() for i in ids])
        leftover.teardown(record.name)
    ids = sorted({*ids, *(i for r in created.get(record.provider, {}).values() for i in r)})
    if ids:
        provider.terminate(record.name, ids)
        report.terminated[record.name] = ids
    provider.teardown(record.name)
    store.close_usage(record.name)
    store.remove(record.name)
    remove_cluster_key(record.name)


def refresh(store: ClusterStore | None = None) -> Report:
    """Reconcile every cluster with its provider; one that fails (a provider or region
    that cannot be reached) is reported in `errors` and the others go on."""
    store = store or ClusterStore()
    report = Report()
    for record in store.list():
        if not is_valid_name(record.name):  # made before names were checked: never used
            report.changes.append(f"{shown(record.name)}: skipped, not a valid cluster name;"
                                  " `skyhop down` it to remove its record")
            continue
        try:
            _refresh_one(store, record, report)
        except UserError as exc:
            report.errors.append(f"{record.name}: could not check {record.provider}: "
                                 f"{exc.message.splitlines()[0]}")
    return report


def _refresh_one(store: ClusterStore, record: ClusterRecord, report: Report) -> None:
    provider = registry.get(record.provider)
    truth = provider.instances(record.name)
    ids = [i.instance_id for i in truth]
    if record.status in (INIT, TERMINATING) and not owner_alive(record.owner):
        _finish_teardown(store, record, report, ids)
        what = "launch" if record.status == INIT else "teardown"
        report.changes.append(f"{record.name}: its {what} was interrupted; "
                              f"{len(ids)} node(s) terminated, cluster removed")
        return
    if record.status != TERMINATING and lease_lapsed(record):
        _finish_teardown(store, record, report, ids)
        report.changes.append(f"{record.name}: an ephemeral pool whose client is gone; "
                              f"{len(ids)} node(s) terminated, cluster removed")
        return
    if record.status == INIT or not record.nodes:
        return
    # Ids, not counts: a node the row does not list is an earlier attempt's leftover. Only
    # a provider that collects by id (`sweep`) is asked: the local one ends a whole cluster.
    node_ids = {n.instance_id for n in record.nodes}
    stray = [i for i in ids if i not in node_ids]
    truth = [i for i in truth if i.instance_id in node_ids]
    sweep = getattr(provider, "sweep", None)
    if sweep is not None and stray:
        provider.terminate(record.name, stray)
        report.terminated[record.name] = stray
        report.changes.append(f"{record.name}: {len(stray)} node(s) no launch kept "
                              f"({', '.join(stray)}); terminated")
    if sweep is not None and truth:
        for line in sweep(record.name, [i.instance_id for i in truth]):
            report.changes.append(f"{record.name}: deleted {line} (an earlier attempt's)")
    if record.status == UP and not truth:
        _finish_teardown(store, record, report, [])
        why = "autostop --down, " if record.autostop_down else ""
        report.changes.append(f"{record.name}: its machines are gone ({why}preempted or "
                              "deleted outside skyhop); cluster removed")
    elif record.status == UP and len(truth) == len(node_ids) and all(
            i.info.get("state") in ("stopping", "stopped") for i in truth):
        store.update(record.name, status=STOPPED)
        store.close_usage(record.name)
        why = "autostop" if record.autostop_minutes is not None else "outside skyhop"
        report.changes.append(f"{record.name}: its machines were stopped ({why}); "
                              f"marked STOPPED (`skyhop start {record.name}`)")
    elif record.status == UP and len(truth) < len(node_ids):
        store.update(record.name, status="DEGRADED")
        report.changes.append(f"{record.name}: {len(truth)} of {len(node_ids)} nodes "
                              "left; marked DEGRADED (`skyhop down` it)")


def _busy_regions(store: ClusterStore) -> dict[str, set[str]]:
    """{provider: regions} some known cluster made anything in or runs in."""
    busy: dict[str, set[str]] = {}
    for record in store.list():
        if record.region:
            busy.setdefault(record.provider, set()).add(record.region)
        for provider, regions in (record.handle.get("created") or {}).items():
            busy.setdefault(provider, set()).update(regions)
    return busy


def gc(store: ClusterStore | None = None) -> Report:
    """Refresh, then terminate tagged resources of clusters the state does not know, and
    delete what they left (security groups, key pairs). A provider that fails is
    reported and the others go on."""
    store = store or ClusterStore()
    report = refresh(store)
    known = {r.name for r in store.list()}
    busy = _busy_regions(store)
    for name in registry.enabled():
        provider = registry.get(name)
        finder = getattr(provider, "orphans", None)
        if finder is None:
            continue
        try:
            for cluster, ids in finder(known).items():
                if ids:
                    provider.terminate(cluster, ids)
                provider.teardown(cluster)
                report.terminated[cluster] = ids
                report.changes.append(f"{name}: {cluster}: {len(ids)} resource(s) no "
                                      "cluster owns; terminated")
            collect = getattr(provider, "collect", None)
            if collect is not None:
                for line in collect(known, busy.get(name, set())):
                    report.changes.append(f"{name}: deleted {line} (no cluster owns it)")
            report.errors += [f"{name}: could not check {where}"
                              for where in getattr(provider, "scan_errors", [])]
        except UserError as exc:
            report.errors.append(f"{name}: {exc.message.splitlines()[0]}")
    for path in _stale_known_hosts(known):
        path.unlink(missing_ok=True)
        report.changes.append(f"removed {path} (no cluster owns it)")
    return report


def _stale_known_hosts(known: set[str]) -> list:
    """Per-cluster host-key files of clusters the state no longer knows."""
    from skyhop import paths

    folder = paths.home() / "known_hosts.d"
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in known]
