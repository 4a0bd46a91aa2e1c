"""The demo-fleet benchmarks' shared children: the simulated fleet and the farm server.

bench/api.py and bench/ui.py measure the same set-up: one child runs the mixed demo fleet
(printers printing, the clock moved past PREPARE), another runs the server as `bambufarm
serve` builds it holding every printer of that fleet's manifest, and the parent drives and
times them. This module starts the fleet, runs the server, answers the server's `mark` and
waits in the parent until every printer is online; each benchmark adds its own instruments.
"""

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bambufarm.app import Services, open_services
from bambufarm.auth.accounts import create_user
from bambufarm.auth.api_keys import create_api_key
from bambufarm.auth.roles import Role
from bambufarm.farm.service import PrinterSpec
from bambufarm.runtime import tune_asyncio_tls
from bambufarm.settings import PrinterTlsMode, Settings
from bambufarm.simulator.demo import demo_job, start_job
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.scenario import DEMO_MODELS, fleet_secret, mixed_fleet
from bambufarm.storage.users import get_user
from bench.mqtt_subscriber import raise_nofile
from bench.simulator import Child, WarpClock

JOB_HOURS = 6.0  # no job ends inside a window (bench/ui's is 10 minutes)
WARP_S = 180.0  # past PREPARE's ~130 simulated seconds
FDS_PER_PRINTER = 8
ONLINE_TIMEOUT_S = 300.0
USER = "bench"


# --------------------------------------------------------------------------- child: simulator


async def start_fleet(data_dir: Path, count: int) -> tuple[SimFleet, WarpClock, Path]:
    """Start `count` printers of the mixed demo fleet; the fleet, its clock, the manifest."""
    raise_nofile(count * FDS_PER_PRINTER + 200)
    addressing = Addressing()
    clock = WarpClock()
    spec = mixed_fleet(
        count, secret=fleet_secret(data_dir), hosts=addressing.hosts(count), models=DEMO_MODELS
    )
    fleet = SimFleet(spec, data_dir=data_dir, addressing=addressing, clock=clock, ssdp_targets=())
    manifest = await fleet.start()
    # Test equipment: the printers' start-up objects out of the collector's walk, so a full
    # collection here does not delay reports and count against the server.
    gc.freeze()
    path = data_dir / "manifest.json"
    manifest.write(path)
    return fleet, clock, path


def start_prints(fleet: SimFleet, clock: WarpClock, *, every: int = 1) -> int:
    """Start a long job on every `every`th printer (from the first), then jump past PREPARE;
    how many print."""
    jobs: dict[str, bytes] = {}
    printing = 0
    for index, node in enumerate(fleet.nodes):
        if index % every == 0:
            model = node.spec.identity.model
            job = jobs.setdefault(model.name, demo_job(model, JOB_HOURS))
            start_job(node, "bench.gcode.3mf", job, task_id=1_000_000 + index)
            printing += 1
    clock.jump(WARP_S)
    return printing


def dump(path: str, records: Sequence[tuple[Any, ...]]) -> None:
    """Write timing records to a file (a window's worth is too much for one pipe line)."""
    Path(path).write_bytes(orjson.dumps(records))


def load(path: str) -> list[list[Any]]:
    """Read what `dump` wrote."""
    records: list[list[Any]] = orjson.loads(Path(path).read_bytes())
    return records


# --------------------------------------------------------------------------- child: server


@dataclass(frozen=True, slots=True)
class FarmServer:
    """The running services, an admin's API key and password, and how long the import took."""

    services: Services
    key: str
    password: str  # made up for this run; only ever sent over the pipe to the parent
    import_s: float


@asynccontextmanager
async def farm_server(
    manifest_path: Path, data_dir: Path, ssdp_port: int
) -> AsyncIterator[FarmServer]:
    """The services as `bambufarm serve` builds them, holding every printer of the manifest."""
    # Only errors: 1,000 sessions saying hello and goodbye would bury the parent's output.
    logging.basicConfig(level=logging.ERROR)
    tune_asyncio_tls()
    manifest = Manifest.read(manifest_path)
    raise_nofile(len(manifest.printers) * 2 + 500)
    settings = Settings(
        data_dir=data_dir,
        printer_tls=PrinterTlsMode.VERIFY,
        printer_ca_file=Path(manifest.ca_cert),
        ssdp_port=ssdp_port,
    )
    services = await open_services(settings)
    password = os.urandom(16).hex()
    try:
        async with services.database.session() as session:
            await create_user(
                session, services.passwords, USER, password, Role.ADMIN, must_change_password=False
            )
            owner = await get_user(session, USER)
            issued = await create_api_key(session, owner, USER, ["admin"])
        await services.start()
        specs = [PrinterSpec.of_manifest(p) for p in manifest.printers]
        started = time.perf_counter()
        await services.farm.import_printers(specs, actor="bench", test=False)
        yield FarmServer(services, issued.token, password, time.perf_counter() - started)
    finally:
        await services.stop()


def server_mark(services: Services) -> dict[str, float]:
    """The server's answer to `mark`: when, its CPU seconds, reports merged, printers online."""
    times = os.times()
    snapshots = [p.snapshot for p in services.farm.printers()]
    return {
        "t": time.monotonic(),
        "cpu": times.user + times.system,
        "reports": sum(s.state.report_count for s in snapshots),
        "online": sum(s.connection.connected for s in snapshots),
    }


# --------------------------------------------------------------------------- parent


def number(body: dict[str, Any], key: str) -> float:
    """A number from a child's answer."""
    value = body[key]
    assert isinstance(value, int | float), (key, value)
    return float(value)


async def until_online(server: Child, count: int) -> float:
    """Seconds until every printer is connected."""
    started = time.perf_counter()
    while time.perf_counter() - started < ONLINE_TIMEOUT_S:
        if number(await server.ask("mark"), "online") >= count:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"not every printer came online within {ONLINE_TIMEOUT_S} s")
