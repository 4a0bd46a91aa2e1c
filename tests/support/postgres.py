"""Pytest plugin: the storage tests run on SQLite and on a real PostgreSQL.

Load it with `pytest_plugins = ["tests.support.postgres"]`. It provides:

* `pg_server` (session): the admin URL of a PostgreSQL server. `BAMBUFARM_TEST_PG_URL` names
  an existing one (its user must be allowed to CREATE DATABASE); otherwise a throwaway cluster
  is built with `initdb` in a temporary directory and started with `pg_ctl` on a free loopback
  port, with its unix socket in that directory, and stopped and deleted at the end of the
  session. PostgreSQL refuses to run as root, so under root it runs as the `postgres` user.
  Without PostgreSQL installed the tests that need it are skipped with the apt-get line — or
  fail under `CI=true`, where nothing may be skipped.
* `database_url` (per test, parametrised `sqlite` / `postgresql`): the URL of a fresh, empty
  database: a new SQLite file, or a new PostgreSQL database dropped after the test.
* `pg_database_url`: the same, PostgreSQL only.
* `db`: an open, migrated `bambufarm.storage.db.Database` on `database_url`.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bambufarm.storage.db import Database, open_database

PG_URL_ENV = "BAMBUFARM_TEST_PG_URL"
PG_OS_USER = "postgres"
INSTALL_HINT = "sudo apt-get install postgresql"
# initdb and a first start take ~2 s here; a loaded 2-core machine can take ten times that.
START_TIMEOUT_S = 60


def _pg_bin_dir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_cluster_owner(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *argv]
    return argv


def _missing(reason: str) -> NoReturn:
    message = f"PostgreSQL tests need a server: {reason}; install it with: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def _run_as_owner(argv: list[str], timeout: float) -> None:
    subprocess.run(_as_cluster_owner(argv), check=True, capture_output=True, timeout=timeout)


def _start_cluster(bin_dir: Path, root: Path) -> str:
    """initdb + pg_ctl start under `root` on a free loopback port; returns the admin URL."""
    data, sockets, log = root / "data", root / "sock", root / "postgres.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam(PG_OS_USER)
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_loopback_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    initdb += ["-E", "UTF8", "--locale=C", "--no-sync"]
    # fsync off and friends: a test cluster that a crash may lose is the point of it.
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
    pg_ctl += ["-w", "-t", str(START_TIMEOUT_S), "start"]
    try:
        _run_as_owner(initdb, START_TIMEOUT_S)
        _run_as_owner(pg_ctl, START_TIMEOUT_S + 10)
    except subprocess.CalledProcessError as err:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(
            f"could not start a test PostgreSQL ({err.cmd} exited {err.returncode}): "
            f"{err.stderr.decode(errors='replace')}\n{tail}",
            pytrace=False,
        )
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _stop_cluster(bin_dir: Path, root: Path) -> None:
    if (root / "data" / "postmaster.pid").exists():
        stop = [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]
        subprocess.run(
            _as_cluster_owner(stop), check=False, capture_output=True, timeout=START_TIMEOUT_S
        )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The admin URL (plain `postgresql://`) of a PostgreSQL server for this test session."""
    given = os.environ.get(PG_URL_ENV, "").strip()
    if given:
        yield given
        return
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        _missing("no /usr/lib/postgresql/*/bin/initdb")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            _missing(f"no {PG_OS_USER!r} OS user to run it as (PostgreSQL refuses root)")
    # Under /tmp rather than pytest's tmp dir: the postgres user cannot enter root's 0700
    # pytest-of-root directory.
    root = Path(tempfile.mkdtemp(prefix="bambufarm-pg-"))
    try:
        yield _start_cluster(bin_dir, root)
    finally:
        _stop_cluster(bin_dir, root)


@contextlib.asynccontextmanager
async def fresh_pg_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server; yields its `postgresql+asyncpg` URL; drops it."""
    admin = make_url(admin_url)
    name = f"bf_test_{uuid.uuid4().hex[:16]}"
    connect = {
        "host": admin.host,
        "port": admin.port,
        "user": admin.username,
        "password": admin.password,
        "database": admin.database or "postgres",
    }
    conn = await asyncpg.connect(**connect)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        conn = await asyncpg.connect(**connect)
        try:
            # FORCE (PostgreSQL 13+): a test that leaked a connection must not leak a database.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh empty database on each dialect; PostgreSQL is started only if a test needs it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}"
        return
    admin_url = request.getfixturevalue("pg_server")
    async with fresh_pg_database(admin_url) as url:
        yield url


@pytest.fixture
async def pg_database_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh empty PostgreSQL database."""
    async with fresh_pg_database(pg_server) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An open, migrated `Database` on each dialect, closed after the test."""
    database = await open_database(database_url)
    try:
        yield database
    finally:
        await database.aclose()
