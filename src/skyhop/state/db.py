"""The state database: SQLite under the skyhop home by default, PostgreSQL by URL.

The schema is migrated with Alembic on first use. Importing Alembic costs ~0.3 s, so it is
only imported when the stored revision is not the newest one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
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


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two processes migrating one SQLite file at once: the second waits, then finds the
    schema current."""
    database = _sqlite_file(engine)
    if database is None:
        yield
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _is_wal(database: str) -> bool:
    """Bytes 18-19 of an SQLite file are 2, 2 once it is in WAL mode:
    https://sqlite.org/fileformat2.html#file_format_version_numbers"""
    try:
        with open(database, "rb") as file:
            return file.read(20)[18:20] == b"\x02\x02"
    except FileNotFoundError:
        return False


def ensure_wal(engine: Engine) -> None:
    """Put the SQLite file in WAL mode (readers never block the writer), once.

    The mode is stored in the file. Switching needs an exclusive lock, and SQLite answers
    "database is locked" at once, without waiting out busy_timeout, when two processes
    switch together (two CLIs on a new home did), so switches take the migration lock."""
    database = _sqlite_file(engine)
    if database is None or _is_wal(database):
        return
    import sqlite3

    with _migration_lock(engine):
        if not _is_wal(database):  # another process may have switched it while we waited
            with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")


def create(url: str) -> Engine:
    """An engine for `url`, not yet connected."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            _owner_only_file(engine.url.database)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL, missing driver
        raise UserError(f"cannot use the state database {url!r}: {exc}",
                        hint="check SKYHOP_DB_URL (e.g. postgresql+psycopg://user@host/db)"
                        ) from None


def _owner_only_file(path: str | None) -> None:
    """Create a new SQLite file readable by its owner alone (SQLite gives its -wal and -shm
    files the same mode)."""
    if not path or path == ":memory:":
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def prepare(engine: Engine) -> Engine:
    """Make the database ready to use: WAL mode for SQLite, the newest schema."""
    try:
        with _lock:
            ensure_wal(engine)
            migrate(engine)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot open the state database: {exc}",
                        hint="check SKYHOP_DB_URL / SKYHOP_HOME and that the server is up"
                        ) from None
    return engine


@functools.lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    return prepare(create(url))


def engine() -> Engine:
    """The engine for the configured database, migrated."""
    return engine_for(paths.db_url())
