"""`bambufarm demo` as a new user runs it: one process, the server and a simulated fleet.

Started as a real process on a free port; the test reads the URL and the admin password from
its output, signs in as a person would, and finds six live printers of different models, some
printing; Ctrl-C (SIGINT) stops it cleanly. A second start on the same data directory shows no
password again and brings the same printers back online on the simulator's new ports.
"""

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT_S = 90.0  # six simulated printers, migrations and imports on a loaded machine
NEW_PASSWORD = "demo passphrase for the test"
URL = re.compile(r"(http://127\.0\.0\.1:\d+)/")
PASSWORD = re.compile(r"password: (\S+)")


@dataclass
class Demo:
    """A running demo process and what it printed before it was ready."""

    process: asyncio.subprocess.Process
    url: str
    output: str


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_demo(data_dir: Path, ssdp_port: int) -> AsyncIterator[Demo]:
    """`python -m bambufarm demo` on a free port until the block ends (then SIGINT)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAMBUFARM_")},
        # Discovery on a free port, not the real 2021 a slicer on this machine may hold.
        "BAMBUFARM_SSDP_PORT": str(ssdp_port),
        "COLUMNS": "160",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bambufarm", "demo", "--data-dir", str(data_dir), "--port", "0",
        "--manifest", str(data_dir / "sim.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not (found := URL.search("".join(lines))):
                line = await process.stdout.readline()
                assert line, "the demo exited early:\n" + "".join(lines)
                lines.append(line.decode(errors="replace"))
        yield Demo(process, found.group(1), "".join(lines))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        lines.append(rest.decode(errors="replace"))
    assert process.returncode == 0, "".join(lines)[-3000:]


async def _signed_in(client: httpx.AsyncClient, password: str) -> None:
    login = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": password}
    )
    assert login.status_code == 200, login.text
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]


async def _printers(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/printers")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _until_printers(
    client: httpx.AsyncClient, what: str, test: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    printers: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(60):
            # Polled over HTTP every 250 ms, as a dashboard would: the printers' states
            # arrive from the simulator at its own pace.
            while not test(printers := await _printers(client)):  # noqa: ASYNC110
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; last seen: {printers}") from None
    return printers


@pytest.mark.timeout(300)
async def test_the_demo_runs_the_server_and_a_live_mixed_fleet(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    ssdp_port = _free_udp_port()
    async with running_demo(data_dir, ssdp_port) as demo:
        password = PASSWORD.search(demo.output)
        assert password is not None, demo.output
        assert "6 simulated printers in the farm" in demo.output
        async with httpx.AsyncClient(base_url=demo.url, timeout=30) as client:
            assert (await client.get("/api/health")).status_code == 200
            page = await client.get("/", follow_redirects=True)
            assert page.status_code == 200
            await _signed_in(client, password.group(1))
            changed = await client.post(
                "/api/v1/auth/password",
                json={"current_password": password.group(1), "new_password": NEW_PASSWORD},
            )
            assert changed.status_code == 204, changed.text
            await _signed_in(client, NEW_PASSWORD)
            printers = await _until_printers(
                client,
                "six online printers, some printing",
                lambda ps: (
                    len(ps) == 6
                    and all(p["connection"]["state"] == "online" for p in ps)
                    and sum(p["job"]["gcode_state"] in ("PREPARE", "RUNNING") for p in ps) >= 2
                ),
            )
            models = {p["model_name"] for p in printers}
            assert len(models) == 6, models
            hms = (await client.get("/api/v1/hms")).json()
            assert hms["items"], "the demo raises an HMS warning on one printer"
    # The same data directory again: no new password, the printers back on new ports.
    async with running_demo(data_dir, ssdp_port) as again:
        assert PASSWORD.search(again.output) is None
        assert "password shown at the demo's first start" in again.output
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as client:
            await _signed_in(client, NEW_PASSWORD)
            printers = await _until_printers(
                client,
                "the same six printers online again",
                lambda ps: len(ps) == 6 and all(p["connection"]["state"] == "online" for p in ps),
            )
            assert len(printers) == 6
