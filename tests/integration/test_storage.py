"""The database on SQLite and PostgreSQL: migrations, engine settings, transactions, faults.

Faults are real where the machine allows: SQLite's own size limit and a read-only open, a
tiny tmpfs that really fills up (when the test may mount one), a read-only PostgreSQL
database, a server that is not there, and connections killed under the pool.
"""

import asyncio
import contextlib
import os
import pwd
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from bambufarm.storage.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_POOL_SIZE,
    Database,
    alembic_config,
    open_database,
    storage_error,
)
from bambufarm.storage.errors import (
    InvalidValue,
    MigrationError,
    NotWritableReason,
    StorageError,
    StorageNotWritable,
    StorageUnavailable,
)
from bambufarm.storage.events import NewEvent, append_event, append_events, event_history
from bambufarm.storage.tables import Base

pytest_plugins = ["tests.support.postgres"]

TABLES = {"printers", "users", "api_keys", "sessions", "audit_log", "events"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def event(i: int, serial: str = "01P00A000000001", size: int = 10) -> NewEvent:
    return NewEvent(serial, "state_changed", {"i": i, "pad": "x" * size}, T0)


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_build_every_table_from_empty(db: Database) -> None:
    async with db.engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert names >= TABLES | {"alembic_version"}
    # The newest packaged revision, so that adding a migration does not break this test.
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrated_schema_matches_the_tables_module(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff)
    assert diff == []


async def test_migrations_go_down_to_empty_and_back_up(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
        async with db.engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert not names & TABLES
        await db.migrate()
        async with db.session() as s:
            await append_event(s, event(1))
    finally:
        await db.aclose()


async def test_opening_again_is_a_no_op_and_keeps_data(database_url: str) -> None:
    first = await open_database(database_url)
    try:
        async with first.session() as s:
            await append_event(s, event(1))
    finally:
        await first.aclose()
    second = await open_database(database_url)
    try:
        async with second.session(readonly=True) as s:
            page = await event_history(s)
        assert [e.body["i"] for e in page.items] == [1]
    finally:
        await second.aclose()


async def test_two_processes_starting_at_once_both_migrate_cleanly(database_url: str) -> None:
    # Two engines stand for two server processes opening one fresh database together.
    opened = await asyncio.gather(open_database(database_url), open_database(database_url))
    try:
        async with opened[1].session() as s:
            await append_event(s, event(1))
    finally:
        for db in opened:
            await db.aclose()


async def test_database_from_a_newer_version_is_refused(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        async with db.session() as s:
            await s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await db.aclose()
    with pytest.raises(MigrationError, match="newer bambufarm"):
        await open_database(database_url)


async def test_sqlite_runs_in_wal_with_foreign_keys_and_a_small_pool(tmp_path: Path) -> None:
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'farm' / 'bambufarm.db'}")
    try:
        async with db.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            busy = (await s.execute(text("PRAGMA busy_timeout"))).scalar()
            assert busy == SQLITE_BUSY_TIMEOUT_MS
        assert db.engine.pool.size() == SQLITE_POOL_SIZE  # type: ignore[attr-defined]
        assert db.where == str(tmp_path / "farm" / "bambufarm.db")
        assert (tmp_path / "farm").is_dir()
    finally:
        await db.aclose()


async def test_in_memory_sqlite_works_for_quick_scripts() -> None:
    db = await open_database("sqlite+aiosqlite://")
    try:
        async with db.session() as s:
            await append_event(s, event(1))
        async with db.session(readonly=True) as s:
            assert len((await event_history(s)).items) == 1
        assert db.where == ":memory:"
    finally:
        await db.aclose()


async def test_a_failing_block_rolls_back_everything(db: Database) -> None:
    async def write_then_fail() -> None:
        async with db.session() as s:
            await append_event(s, event(1))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await write_then_fail()
    async with db.session(readonly=True) as s:
        assert (await event_history(s)).items == ()


async def test_concurrent_writers_all_commit(db: Database) -> None:
    async def write(i: int) -> None:
        async with db.session() as s:
            # Read, then write: the pattern that fails at once with SQLITE_BUSY when two
            # deferred transactions both try to upgrade their read locks.
            await event_history(s, limit=1)
            await append_event(s, event(i))

    await asyncio.gather(*(write(i) for i in range(20)))
    async with db.session(readonly=True) as s:
        page = await event_history(s, limit=100)
    assert sorted(e.body["i"] for e in page.items) == list(range(20))


async def test_batch_append_is_one_statement_for_many_rows(db: Database) -> None:
    async with db.session() as s:
        assert await append_events(s, (event(i) for i in range(500))) == 500
        assert await append_events(s, []) == 0
    async with db.session(readonly=True) as s:
        assert len((await event_history(s, limit=1000)).items) == 500


async def test_readonly_session_refuses_writes_on_postgresql(pg_database_url: str) -> None:
    db = await open_database(pg_database_url)
    try:
        with pytest.raises(StorageNotWritable) as caught:
            async with db.session(readonly=True) as s:
                await append_event(s, event(1))
        assert caught.value.reason is NotWritableReason.READ_ONLY
        async with db.session() as s:  # the pooled connection is writable again
            await append_event(s, event(2))
    finally:
        await db.aclose()


async def test_sqlite_size_limit_reports_disk_full(tmp_path: Path) -> None:
    path = tmp_path / "bambufarm.db"
    db = await open_database(f"sqlite+aiosqlite:///{path}")
    try:

        async def fill() -> None:
            for i in range(200):
                async with db.session() as s:
                    # SQLite's own cap, per connection: SQLITE_FULL exactly as on a full disk.
                    pages = (await s.execute(text("PRAGMA page_count"))).scalar()
                    await s.execute(text(f"PRAGMA max_page_count = {int(pages or 0) + 2}"))
                    await append_events(s, [event(i, size=4000) for _ in range(20)])

        with pytest.raises(StorageNotWritable) as caught:
            await fill()
        assert caught.value.reason is NotWritableReason.DISK_FULL
        assert str(caught.value) == (
            f"the database at {path} cannot be written: disk full; free space and retry"
        )
    finally:
        await db.aclose()


async def test_sqlite_opened_read_only_reports_read_only(tmp_path: Path) -> None:
    path = tmp_path / "bambufarm.db"
    await (await open_database(f"sqlite+aiosqlite:///{path}")).aclose()
    db = await open_database(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true", migrate=False)
    try:
        with pytest.raises(StorageNotWritable, match="cannot be written: read-only; make it"):
            async with db.session() as s:
                await append_event(s, event(1))
    finally:
        await db.aclose()


async def test_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    with pytest.raises(StorageUnavailable, match=r"not-a-dir for the database cannot be created"):
        await open_database(f"sqlite+aiosqlite:///{tmp_path / 'not-a-dir' / 'bambufarm.db'}")
    (tmp_path / "a-dir.db").mkdir()
    with pytest.raises(StorageUnavailable, match=r"a-dir\.db cannot be opened"):
        await open_database(f"sqlite+aiosqlite:///{tmp_path / 'a-dir.db'}")


async def test_postgresql_that_is_not_there_is_unavailable() -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(StorageUnavailable, match=r"cannot be reached .* is running"):
            await open_database(f"postgresql+asyncpg://farm:pw@127.0.0.1:{port}/farm")


async def test_read_only_postgresql_database_reports_read_only(
    pg_server: str, pg_database_url: str
) -> None:
    db = await open_database(pg_database_url)
    await db.aclose()
    name = make_url(pg_database_url).database
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    finally:
        await admin.close()
    db = await open_database(pg_database_url, migrate=False)
    try:
        with pytest.raises(StorageNotWritable, match="read-only") as caught:
            async with db.session() as s:
                await append_event(s, event(1))
        assert "pw" not in str(caught.value)
    finally:
        await db.aclose()


async def test_postgresql_connections_killed_under_the_pool_recover(
    pg_server: str, pg_database_url: str
) -> None:
    # What a server restart looks like from the pool: every open connection dies.
    db = await open_database(pg_database_url)
    try:
        async with db.session() as s:
            await append_event(s, event(1))
        admin = await asyncpg.connect(pg_server)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                make_url(pg_database_url).database,
            )
        finally:
            await admin.close()
        assert killed >= 1
        async with db.session() as s:
            await append_event(s, event(2))
        async with db.session(readonly=True) as s:
            assert len((await event_history(s)).items) == 2
    finally:
        await db.aclose()


async def test_sessions_on_a_server_that_went_away_are_unavailable() -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        db = await open_database(f"postgresql+asyncpg://farm:pw@127.0.0.1:{port}/f", migrate=False)
        try:
            with pytest.raises(StorageUnavailable, match="cannot be reached") as caught:
                async with db.session(readonly=True):
                    pytest.fail("the block must not run without a connection")
            assert "pw" not in str(caught.value)
        finally:
            await db.aclose()


async def test_the_callers_own_errors_pass_through_unchanged(db: Database) -> None:
    async def fail_inside() -> None:
        async with db.session():
            raise FileNotFoundError("an upload's temp file")

    with pytest.raises(FileNotFoundError, match="upload"):
        await fail_inside()


def test_error_mapping_of_postgresql_disk_full_and_shutdown() -> None:
    full = storage_error(asyncpg.exceptions.DiskFullError("could not extend file"), "pg")
    assert isinstance(full, StorageNotWritable)
    assert full.reason is NotWritableReason.DISK_FULL
    down = storage_error(asyncpg.exceptions.AdminShutdownError("terminating"), "pg")
    assert isinstance(down, StorageUnavailable)
    other = storage_error(RuntimeError("strange"), "pg")
    assert type(other) is StorageError
    assert "strange" in str(other)


async def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(InvalidValue, match="no time zone"):
        async with db.session() as s:
            await append_event(s, NewEvent("01P00A000000001", "x", {}, datetime(2025, 1, 1)))  # noqa: DTZ001


async def test_bad_urls_are_refused_before_connecting() -> None:
    with pytest.raises(InvalidValue, match="not supported"):
        await open_database("mysql+aiomysql://farm@db/farm")
    with pytest.raises(InvalidValue, match="cannot be read"):
        await open_database("not a url")


# --- a disk that really fills up: a tiny tmpfs, when this test may mount one ----------------


@contextlib.contextmanager
def tiny_tmpfs(size_kib: int) -> Iterator[Path]:
    """A fresh tmpfs of `size_kib` mounted under /tmp, unmounted and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = Path(tempfile.mkdtemp(prefix="bambufarm-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0777", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


async def test_sqlite_on_a_full_disk_says_so() -> None:
    with tiny_tmpfs(512) as disk:
        path = disk / "bambufarm.db"
        db = await open_database(f"sqlite+aiosqlite:///{path}")
        try:

            async def fill() -> None:
                for i in range(1000):
                    async with db.session() as s:
                        await append_events(s, [event(i, size=8000) for _ in range(8)])

            with pytest.raises(StorageNotWritable, match="disk full; free space and retry"):
                await fill()
        finally:
            await db.aclose()


@contextlib.asynccontextmanager
async def tablespace_on(admin_url: str, location: Path) -> AsyncIterator[str]:
    """A tablespace in `location` (owned by the server's user), dropped afterwards."""
    name = f"bf_full_{uuid.uuid4().hex[:8]}"
    owner = pwd.getpwnam("postgres")
    os.chown(location, owner.pw_uid, owner.pw_gid)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE TABLESPACE {name} LOCATION '{location}'")
        yield name
    finally:
        await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
        await admin.close()


async def test_postgresql_on_a_full_disk_says_so(pg_server: str, pg_database_url: str) -> None:
    if os.environ.get("BAMBUFARM_TEST_PG_URL"):
        pytest.skip("needs the test session's own PostgreSQL (a tablespace on a local tmpfs)")
    with tiny_tmpfs(1024) as disk:
        async with tablespace_on(pg_server, disk) as space:
            db = await open_database(pg_database_url)
            try:
                async with db.session() as s:
                    await s.execute(text(f"CREATE TABLE filler (x text) TABLESPACE {space}"))

                async def fill() -> None:
                    for _ in range(100):
                        async with db.session() as s:
                            await s.execute(
                                text(
                                    "INSERT INTO filler SELECT md5(g::text) "
                                    "FROM generate_series(1, 20000) AS g"
                                )
                            )

                with pytest.raises(StorageNotWritable, match="disk full; free space and retry"):
                    await fill()
                async with db.session() as s:
                    await s.execute(text("DROP TABLE filler"))
                    # Events live on the normal disk: they still work.
                    await append_event(s, event(1))
            finally:
                await db.aclose()


async def test_a_value_postgresql_refuses_is_an_invalid_value(pg_database_url: str) -> None:
    # NUL in text (SQLSTATE 22021): bad input, said as such (a 422 in the API), not an outage.
    db = await open_database(pg_database_url)
    try:
        with pytest.raises(InvalidValue, match=r"a value cannot be stored: .*0x00"):
            async with db.session(readonly=True) as session:
                await event_history(session, serial="01P\x00", kinds=None)
    finally:
        await db.aclose()
