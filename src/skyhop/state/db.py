"""The state database: SQLite under the skyhop home by default, PostgreSQL by URL.

The schema is migrated with Alembic on first use. Importing Alembic costs ~0.3 s, so it is
only imported when the stored revision is not the newest one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text

from skyhop import paths
from skyhop.errors import UserError
from skyhop.state.schema import SCHEMA_REVISION

_MIGRATIONS = Path(__file__).parent / "migrations"
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    # With WAL, NORMAL survives any process crash (only a power loss may drop the last
    # commits) and saves an fsync per commit: https://sqlite.org/pragma.html#pragma_synchronous
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")  # concurrent CLIs wait instead of failing
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # no table yet: a new database
            conn.rollback()
            return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent, safe under concurrency)."""
    if _stored_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with _migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # serialise first runs against a team server
            conn.execute(text("SELECT pg_advisory_xact_lock(72170001)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two processes migrating one SQLite file at once: the second waits, then finds the
    schema current."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@functools.lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL, missing driver
        raise UserError(f"cannot use the state database {url!r}: {exc}",
                        hint="check SKYHOP_DB_URL (e.g. postgresql+psycopg://user@host/db)"
                        ) from None
    try:
        with _lock:
            migrate(engine)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot open the state database: {exc}",
                        hint="check SKYHOP_DB_URL / SKYHOP_HOME and that the server is up"
                        ) from None
    return engine


def engine() -> Engine:
    """The engine for the configured database, migrated."""
    return engine_for(paths.db_url())
