"""`bambufarm serve` and `bambufarm admin reset-password` as an operator runs them: a real
process, its console output, its log (stderr), signals and exit codes."""

import asyncio
import os
import re
import signal
import socket
import ssl
import sys
from pathlib import Path

import httpx

from bambufarm.auth.passwords import Passwords
from bambufarm.storage.db import open_database
from bambufarm.storage.users import get_user
from tests.support.api import self_signed_tls

# Python, FastAPI, SQLAlchemy and Alembic import in ~2 s here; a loaded machine takes longer.
START_TIMEOUT_S = 60
_URL = re.compile(r"serving on (https?://127\.0\.0\.1:\d+)/")
_PASSWORD = re.compile(r"password: (\S+)")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BAMBUFARM_")}
    return {**env, "BAMBUFARM_DATA_DIR": str(data_dir), **extra}


class Served:
    """A `bambufarm serve` process, read until it says where it listens."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.url = ""

    async def wait_for_url(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            while not self.url:
                line = (await self.process.stdout.readline()).decode()
                assert line, f"serve exited early: {''.join(self.stdout)}"
                self.stdout.append(line)
                if found := _URL.search(line):
                    self.url = found.group(1)
        return self.url

    async def stop(self, sig: signal.Signals) -> tuple[int, str, str]:
        self.process.send_signal(sig)
        async with asyncio.timeout(30):
            out, err = await self.process.communicate()
        return self.process.returncode or 0, "".join(self.stdout) + out.decode(), err.decode()


async def _serve(data_dir: Path, *args: str, **env: str) -> Served:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bambufarm",
        "serve",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(data_dir, **env),
    )
    return Served(process)


async def _run(data_dir: Path, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bambufarm",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(data_dir, **env),
    )
    async with asyncio.timeout(START_TIMEOUT_S):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_first_start_shows_the_admin_password_once_on_the_console_only(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    served = await _serve(data)
    url = await served.wait_for_url()
    async with httpx.AsyncClient(base_url=url) as client:
        health = await client.get("/api/health")
        assert health.json()["status"] == "ok"
        password = _PASSWORD.search("".join(served.stdout))
        assert password is not None
        login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password.group(1)}
        )
        assert login.status_code == 200
        assert login.json()["must_change_password"] is True
    code, out, err = await served.stop(signal.SIGTERM)
    assert code == 0, err
    assert out.count(password.group(1)) == 1
    # The log (stderr) says an admin was made, never with what password.
    assert "created the first user 'admin'" in err
    assert password.group(1) not in err
    assert "API stopped" in err

    # A second start finds the admin and shows no password; Ctrl-C stops it cleanly too.
    again = await _serve(data)
    await again.wait_for_url()
    code, out, err = await again.stop(signal.SIGINT)
    assert code == 0, err
    assert "password:" not in out
    assert "Traceback" not in err


async def test_admin_reset_password_prints_a_new_working_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    served = await _serve(data)
    await served.wait_for_url()
    first = _PASSWORD.search("".join(served.stdout))
    assert first is not None
    # Reset while the server runs: SQLite queues the write behind the server's.
    code, out, err = await _run(data, "admin", "reset-password", "Admin")
    assert code == 0, err
    found = _PASSWORD.search(out)
    assert found is not None
    new = found.group(1)
    assert new != first.group(1)
    assert new not in err
    async with httpx.AsyncClient(base_url=served.url) as client:
        old_login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": first.group(1)}
        )
        assert old_login.status_code == 401
        new_login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": new}
        )
        assert new_login.status_code == 200
        assert new_login.json()["must_change_password"] is True
    code, _, err = await served.stop(signal.SIGTERM)
    assert code == 0, err
    database = await open_database(f"sqlite+aiosqlite:///{data / 'bambufarm.db'}")
    try:
        async with database.session(readonly=True) as session:
            user = await get_user(session, "admin")
    finally:
        await database.aclose()
    assert Passwords().verify(user.password_hash, new)

    missing = await _run(data, "admin", "reset-password", "nobody")
    assert missing[0] == 1
    assert "no user named 'nobody'" in missing[2]


async def test_bad_settings_and_a_taken_port_exit_with_a_clear_message(tmp_path: Path) -> None:
    code, _, err = await _run(tmp_path / "data", "serve", BAMBUFARM_PORT="not-a-port")
    assert code == 2
    assert "port (env BAMBUFARM_PORT)" in err
    assert "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await _run(tmp_path / "data", "serve", "--port", str(port))
    assert code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_serves_https_with_a_certificate_and_key(tmp_path: Path) -> None:
    tls = self_signed_tls(tmp_path)
    served = await _serve(tmp_path / "data", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
    url = await served.wait_for_url()
    assert url.startswith("https://")
    trust = ssl.create_default_context(cafile=tls.cert)
    async with httpx.AsyncClient(base_url=url, verify=trust) as client:
        assert (await client.get("/api/health")).status_code == 200
    code, _, err = await served.stop(signal.SIGTERM)
    assert code == 0, err
    alone = await _run(tmp_path / "data", "serve", "--tls-cert", str(tls.cert))
    assert alone[0] == 2
    assert "--tls-cert and --tls-key go together" in alone[2]
