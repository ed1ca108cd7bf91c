"""State on SQLite and on a real PostgreSQL server the suite starts itself."""

import multiprocessing
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from pg import PostgresServer, unavailable_reason
from skyhop.state import db
from skyhop.state.clusters import ClusterStore
from skyhop.state.fastread import CLUSTER_COLUMNS, NODE_COLUMNS, list_clusters
from skyhop.state.records import STOPPED, UP, Node
from skyhop.state.schema import clusters, nodes


@pytest.fixture(scope="module")
def postgres_url():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_engine(url)
        with engine.begin() as conn:  # a clean schema per test
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
        db.engine_for.cache_clear()
    return ClusterStore(db.engine_for(url))


def test_cluster_lifecycle(store):
    assert store.reserve("c1", provider="local", num_nodes=2, hourly_price=0.5,
                         accelerators={"V100": 1.0}, handle={"dir": "/x"})
    assert not store.reserve("c1", provider="local", num_nodes=1, hourly_price=0)
    record = store.get("c1")
    assert record.status == "INIT" and record.handle == {"dir": "/x"}
    store.set_nodes("c1", [Node(0, "n0", "127.0.0.1"), Node(1, "n1", "127.0.0.1")])
    store.update("c1", status=UP)
    store.open_usage(store.get("c1"))
    store.open_usage(store.get("c1"))  # idempotent: one open interval
    record = store.get("c1")
    assert record.status == UP and [n.rank for n in record.nodes] == [0, 1]
    assert [c.name for c in store.list()] == ["c1"]
    store.update("c1", status=STOPPED)
    store.close_usage("c1")
    store.remove("c1")
    assert store.get("c1") is None and store.list() == []
    (interval,) = store.usage_rows()
    assert interval["hourly_price"] == 0.5 and interval["ended_at"] >= interval["started_at"]


def test_fast_reader_matches_the_schema_and_the_store(tmp_path):
    assert tuple(c.name for c in clusters.columns) == CLUSTER_COLUMNS
    assert tuple(c.name for c in nodes.columns) == NODE_COLUMNS
    path = tmp_path / "state.db"
    store = ClusterStore(db.engine_for(f"sqlite:///{path}"))
    store.reserve("a", provider="local", num_nodes=1, hourly_price=0,
                  accelerators={"A100": 8.0}, resources={"cpus": "8+"})
    store.set_nodes("a", [Node(0, "i-1", "10.0.0.1", {"gpus": 1})])
    assert list_clusters(path) == store.list()
    assert list_clusters(tmp_path / "missing.db") is None


def _reserve(url: str, name: str, queue) -> None:  # in a child process
    db.engine_for.cache_clear()
    queue.put(ClusterStore(db.engine_for(url)).reserve(name, provider="local", num_nodes=1,
                                                        hourly_price=0))


def test_concurrent_processes_reserve_a_name_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"  # a new database: both also race to migrate
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve, args=(url, "same", queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results == [False, False, False, True]
    assert all(p.exitcode == 0 for p in procs)


def _open_new_databases(urls: list[str], barrier, queue) -> None:  # in a child process
    for url in urls:
        engine = db.create(url)
        barrier.wait()  # every process opens the same new file at the same instant
        try:
            ClusterStore(db.prepare(engine)).reserve(f"c{os.getpid()}", provider="local",
                                                     num_nodes=1, hourly_price=0)
            queue.put(None)
        except Exception as exc:
            queue.put(f"{url}: {exc}")


def test_processes_opening_a_new_database_together_all_succeed(tmp_path):
    # Two CLIs on a new home once failed with "database is locked": SQLite refuses, without
    # waiting, a second concurrent switch of a new file to WAL mode.
    urls = [f"sqlite:///{tmp_path / f'state{i}.db'}" for i in range(40)]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open_new_databases, args=(urls, barrier, queue))
             for _ in range(6)]
    for p in procs:
        p.start()
    errors = [queue.get(timeout=60) for _ in range(len(procs) * len(urls))]
    for p in procs:
        p.join(60)
    assert [e for e in errors if e] == []
    for url in urls:
        path = Path(url.removeprefix("sqlite:///"))
        assert db._is_wal(path) and len(list_clusters(path)) == len(procs)


def test_bad_database_url_is_a_clear_error(monkeypatch):
    from skyhop.errors import UserError

    db.engine_for.cache_clear()
    monkeypatch.setenv("SKYHOP_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(UserError, match="state database"):
        db.engine()
    monkeypatch.setenv("SKYHOP_DB_URL", "notadb://x")
    db.engine_for.cache_clear()
    with pytest.raises(UserError, match="SKYHOP_DB_URL"):
        db.engine()
    assert os.environ["SKYHOP_DB_URL"] == "notadb://x"


def test_fast_attempt_reader_matches_the_schema_and_the_store(tmp_path, monkeypatch):
    from skyhop.state.fastread import ATTEMPT_COLUMNS
    from skyhop.state.schema import attempts
    from skyhop.tracker import Attempt, Key
    from skyhop.tracker.store import TrackerStore

    assert set(ATTEMPT_COLUMNS) <= {c.name for c in attempts.columns}
    monkeypatch.setenv("SKYHOP_HOME", str(tmp_path))
    monkeypatch.delenv("SKYHOP_DB_URL", raising=False)
    written = [Attempt(100.0, Key("aws", "us-east-1", "use1-az1", "p3.2xlarge", True),
                       "capacity", "none left"),
               Attempt(200.0, Key("gcp", "us-central1", None, "n1", False), "ok")]
    slow = TrackerStore(db.engine_for(f"sqlite:///{tmp_path / 'state.db'}"))
    for attempt in written:
        slow.record(attempt)
    fast = TrackerStore()  # the default file: read with the standard library
    assert fast.attempts(0.0) == slow.attempts(0.0) == written
    assert fast.attempts(150.0) == written[1:]


def test_managed_task_ids_differ_across_homes(tmp_path, monkeypatch):
    """Each home numbers its managed jobs from 1; $SKYHOP_TASK_ID (what checkpoints are keyed
    by) must still differ, or two homes' job 1 would share a checkpoint folder."""
    from conftest import use_home
    from skyhop.jobs.store import JobStore

    task_ids = []
    for name in ("home-a", "home-b"):
        use_home(monkeypatch, tmp_path / name)
        store = JobStore()
        job_id = store.add("train", {"order": [0]}, None, None)
        assert job_id == 1
        task_ids.append(store.get(job_id).task_id)
        assert store.get(job_id).task_id == task_ids[-1]  # stable: read back the same
    assert task_ids[0] != task_ids[1]
