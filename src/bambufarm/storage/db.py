"""The database: an async engine for SQLite (default) or PostgreSQL, migrated at open.

`open_database(url)` builds the engine, applies every Alembic migration up to head (the
`alembic upgrade head` of the command line, done programmatically so it ships in the package
and runs the same on both dialects) and returns a `Database`. Work happens in
`async with db.session() as s:` — one transaction, committed on a clean exit, rolled back on
an exception. Driver errors leave `session()` as `StorageError`s that say what to do, e.g.
"the database at /srv/farm/bambufarm.db cannot be written: disk full; free space and retry".

SQLite runs in WAL mode (readers never block the writer) with foreign keys on and a busy
timeout. Write transactions start with BEGIN IMMEDIATE so that two writers queue on the busy
timeout instead of one failing at once with SQLITE_BUSY when it upgrades a read lock;
`session(readonly=True)` starts a plain deferred BEGIN that never waits for a writer.
aiosqlite runs each connection on its own worker thread: that thread is the driver's, not ours.
"""

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import orjson
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from bambufarm.storage.errors import (
    InvalidValue,
    MigrationError,
    NotWritableReason,
    StorageError,
    StorageNotWritable,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Every SQLite connection holds three file descriptors (db, -wal, -shm) and one aiosqlite
# worker thread, and SQLite runs one writer at a time whatever the pool size. SQLAlchemy's
# default 5 + 10 overflow lets a burst open 15 of them for no gain; a large pool under a
# 1,000-printer fleet is how a server runs out of file descriptors. Four readers are plenty.
SQLITE_POOL_SIZE: Final = 4
# A writer waits up to 5 s for another writer's transaction (ours are milliseconds long).
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
POSTGRES_POOL_SIZE: Final = 10
POSTGRES_MAX_OVERFLOW: Final = 10
# Two server processes starting at once on one PostgreSQL must not migrate in parallel; the
# number is arbitrary but fixed ("bfrm" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x6266726D

_READ_ONLY_OPTION: Final = "bambufarm_readonly"
_SUPPORTED_DRIVERS: Final = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})

# PostgreSQL SQLSTATE codes (Appendix A of its manual) that we explain to the operator.
_PG_DISK_FULL: Final = frozenset({"53100"})
_PG_READ_ONLY: Final = frozenset({"25006"})
_PG_UNAVAILABLE_PREFIXES: Final = ("08", "57P")  # connection exceptions, operator shutdown
# Data exceptions: a value the server refuses (NUL in text is 22021, out of range 22003).
_PG_DATA_EXCEPTION: Final = "22"


class Database:
    """An open database: hands out transactional sessions; close it with `aclose()`."""

    def __init__(self, engine: AsyncEngine, *, where: str) -> None:
        self._engine = engine
        self._where = where
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @property
    def where(self) -> str:
        """The database's path or `postgresql://user@host:port/name`, without any password."""
        return self._where

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine, for code that must run SQL outside a repository (tests)."""
        return self._engine

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises.

        `readonly=True` promises no writes: PostgreSQL enforces it (READ ONLY transaction);
        SQLite uses it to start a deferred transaction that never queues behind writers.
        """
        options: dict[str, Any] = {}
        if readonly:
            options[_READ_ONLY_OPTION] = True
            if self.dialect == "postgresql":
                options["postgresql_readonly"] = True
        try:
            async with self._sessions() as session, session.begin():
                try:
                    # Checked out here, before the caller's code runs, so that a refused
                    # connection (a bare OSError from the driver) is told apart from an
                    # OSError of the caller's own (a file write in an upload handler).
                    await session.connection(execution_options=options or None)
                except OSError as err:
                    raise storage_error(err, self._where) from err
                yield session
        except (DBAPIError, StatementError) as err:
            raise storage_error(err, self._where) from err

    async def migrate(self) -> None:
        """Apply every migration up to head (what `alembic upgrade head` does)."""
        try:
            async with self._engine.begin() as conn:
                if self.dialect == "postgresql":
                    # Held until this transaction commits: a second process waits here.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                await conn.run_sync(_upgrade_to_head)
        except CommandError as err:
            raise MigrationError(
                f"the database at {self._where} cannot be migrated: {err}; if it was created by "
                "a newer bambufarm, run that version (or restore a backup)"
            ) from err
        except (DBAPIError, StatementError, OSError) as err:
            raise storage_error(err, self._where) from err

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()


async def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open (and by default migrate) the database at an `sqlite+aiosqlite` or `asyncpg` URL."""
    sa_url = _parse_url(url)
    where = describe_url(sa_url)
    if sa_url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(sa_url)
    else:
        engine = create_async_engine(
            sa_url,
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            # A checkout after a server restart gets a fresh connection instead of an error.
            pool_pre_ping=True,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
        )
    db = Database(engine, where=where)
    if migrate:
        try:
            await db.migrate()
        except BaseException:
            await db.aclose()
            raise
    logger.info("database open: %s (%s)", where, db.dialect)
    return db


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations (pass a connection to run them on it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def describe_url(url: URL) -> str:
    """How error messages name a database: its file path, or its server without the password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    port = f":{url.port}" if url.port else ""
    user = f"{url.username}@" if url.username else ""
    return f"postgresql://{user}{url.host or 'localhost'}{port}/{url.database or ''}"


def storage_error(err: BaseException, where: str) -> StorageError:
    """The `StorageError` that explains a driver error to the operator."""
    sqlite_name, sqlstate = _error_codes(err)
    if sqlite_name == "SQLITE_FULL" or sqlstate in _PG_DISK_FULL:
        return StorageNotWritable(where, NotWritableReason.DISK_FULL)
    if sqlite_name.startswith("SQLITE_READONLY") or sqlstate in _PG_READ_ONLY:
        return StorageNotWritable(where, NotWritableReason.READ_ONLY)
    if sqlite_name.startswith("SQLITE_CANTOPEN"):
        return StorageUnavailable(
            f"the database file {where} cannot be opened; check that its directory exists "
            "and is writable by this user"
        )
    if sqlite_name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StorageUnavailable(
            f"the database at {where} stayed locked by another writer for more than "
            f"{SQLITE_BUSY_TIMEOUT_MS / 1000:g} s; retry, and check that no other program "
            "holds a long transaction on it"
        )
    if sqlstate.startswith(_PG_UNAVAILABLE_PREFIXES) or _is_connection_failure(err):
        return StorageUnavailable(
            f"the database at {where} cannot be reached ({_first_line(err)}); "
            "check that the server is running and the URL is right, then retry"
        )
    if sqlstate.startswith(_PG_DATA_EXCEPTION):
        return InvalidValue(f"a value cannot be stored: {_first_line(err)}")
    if isinstance(err, StatementError) and not isinstance(err, DBAPIError):
        # Raised before the driver saw anything: a bind value our types refused.
        return InvalidValue(f"a value cannot be stored: {_first_line(err.orig or err)}")
    return StorageError(f"the database at {where} failed: {_first_line(err)}")


def _parse_url(url: str) -> URL:
    try:
        sa_url = make_url(url)
    except ArgumentError as err:
        raise InvalidValue(f"database URL cannot be read: {err}") from None
    if sa_url.drivername not in _SUPPORTED_DRIVERS:
        raise InvalidValue(
            f"database driver {sa_url.drivername!r} is not supported; use "
            "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
        )
    return sa_url


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if in_memory:
        # Every connection to ":memory:" is a new empty database: share a single one.
        kwargs["poolclass"] = StaticPool
    else:
        if not url.query.get("uri"):
            path = Path(database).expanduser()
            directory = path.parent
            if path.is_dir():
                # Said here rather than left to the driver: its failed connect leaves a
                # closing worker thread behind, and "unable to open" names no cause.
                raise StorageUnavailable(
                    f"the database file {path} cannot be opened: it is a directory; "
                    "give the path of a file (created if missing)"
                )
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StorageUnavailable(
                    f"the directory {directory} for the database cannot be created "
                    f"({err.strerror}); check the path and its permissions"
                ) from None
        kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=0)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (below); the driver's own implicit BEGIN would get in the way.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL is crash-safe (a power cut may lose the last commits, never
        # corrupt the file) and saves an fsync per commit.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    readonly = conn.get_execution_options().get(_READ_ONLY_OPTION, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _error_codes(err: BaseException) -> tuple[str, str]:
    """The SQLite error name and PostgreSQL SQLSTATE found anywhere in the error's chain."""
    sqlite_name = ""
    sqlstate = ""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error) and not sqlite_name:
            sqlite_name = current.sqlite_errorname or ""
        code = getattr(current, "sqlstate", None)
        if isinstance(code, str) and not sqlstate:
            sqlstate = code
        nxt = current.orig if isinstance(current, DBAPIError) else None
        current = nxt if nxt is not None else (current.__cause__ or current.__context__)
    return sqlite_name, sqlstate


def _is_connection_failure(err: BaseException) -> bool:
    current: BaseException | None = err
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # Refused, reset, unreachable, timed out: the driver's socket errors are all OSErrors.
        if isinstance(current, OSError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        nxt = current.orig if isinstance(current, DBAPIError) else None
        current = nxt if nxt is not None else (current.__cause__ or current.__context__)
    return False


def _first_line(err: BaseException) -> str:
    # DBAPIError's own str() carries the SQL and its parameters; only the driver's message
    # (first line) is safe to show, since parameters can be password hashes or tokens.
    source = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    lines = str(source).strip().splitlines()
    return lines[0] if lines else type(source).__name__
