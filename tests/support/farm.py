"""The real server with its farm, against a real simulated fleet, for the printer API tests.

`running_farm_api(database_url, tmp)` starts, all on 127.0.0.1 with ephemeral ports:

* a discovery listener (so the simulator's SSDP announcements are sent to it, unicast);
* a simulated mixed fleet (its CA made first, so the server can verify printers against it);
* the services with a `Farm` whose fleet trusts that CA (or pins, or not), with quick
  reconnects and short timeouts so faults play out fast;
* uvicorn serving the app, an admin API key and helpers to wait for printers' states.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from bambufarm.api.app import create_app
from bambufarm.api.server import HttpServer
from bambufarm.app import Services, utc_now
from bambufarm.auth.passwords import Passwords
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.farm.files import PrinterFiles
from bambufarm.farm.service import Farm
from bambufarm.fleet.discovery import DiscoveryListener
from bambufarm.fleet.events import EventBus
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.fleet.uploads import Uploader
from bambufarm.settings import Settings
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from bambufarm.simulator.scenario import fleet_secret, mixed_fleet
from bambufarm.storage.db import open_database
from bambufarm.storage.secrets import SecretBox, load_or_create_key
from tests.support.api import CHEAP, MonotonicClock, MovableClock, RunningApi
from tests.support.fleet_harness import QUICK, SHORT

WAIT = 15.0  # an upper bound for what takes a tick or two on a loaded 2-core machine


@dataclass
class FarmApi:
    """The served app with its farm, the simulator behind it, and an admin key."""

    api: RunningApi
    sim: SimFleet
    manifest: Manifest
    admin_key: str
    discovery: DiscoveryListener

    @property
    def services(self) -> Services:
        """The server's services."""
        return self.api.services

    @property
    def farm(self) -> Farm:
        """The server's farm."""
        return self.api.services.farm

    def admin(self) -> httpx.AsyncClient:
        """A client sending the admin's API key."""
        return self.api.key_client(self.admin_key)

    def printer(self, index: int = 0) -> ManifestPrinter:
        """A simulated printer of the manifest."""
        return self.manifest.printers[index]

    def body(self, printer: ManifestPrinter, **overrides: Any) -> dict[str, Any]:
        """The POST /api/v1/printers body for a simulated printer."""
        body: dict[str, Any] = {
            "serial": printer.serial,
            "host": printer.host,
            "access_code": printer.access_code,
            "name": printer.name,
            "mqtt_port": printer.ports.mqtt,
            "ftps_port": printer.ports.ftps,
        }
        body.update(overrides)
        return {key: value for key, value in body.items() if value is not None}

    async def add(self, *printers: ManifestPrinter) -> None:
        """Add printers through the API (tested), failing the test if that fails."""
        client = self.admin()
        for printer in printers or self.manifest.printers:
            response = await client.post("/api/v1/printers", json=self.body(printer))
            assert response.status_code == 201, response.text

    async def until(self, condition: Callable[[], bool], what: str, within: float = WAIT) -> None:
        """Wait until `condition()` holds, checking every 20 ms; fail naming `what`."""
        try:
            async with asyncio.timeout(within):
                # Polled every 20 ms: the conditions read fleet and simulator state that
                # changes without a signal this helper could wait on.
                while not condition():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"timed out after {within} s waiting for {what}") from None

    async def until_online(self, serials: Sequence[str] | None = None) -> None:
        """Wait until the given printers (default: all in the farm) are online."""
        wanted = list(serials) if serials is not None else [p.serial for p in self.farm.printers()]

        def online() -> bool:
            return all(
                s in self.farm and self.farm.printer(s).snapshot.connection.connected
                for s in wanted
            )

        await self.until(online, f"{len(wanted)} printer(s) online")


def tls_for(manifest_ca: Path, data_dir: Path, mode: TlsMode) -> TlsPolicy:
    """The server's TLS trust for the simulator: verify its CA, pin, or nothing."""
    match mode:
        case TlsMode.VERIFY:
            return TlsPolicy(TlsMode.VERIFY, ca_file=manifest_ca)
        case TlsMode.TOFU:
            return TlsPolicy(TlsMode.TOFU, pin_store=data_dir / "tls_pins.json")
        case TlsMode.INSECURE:
            return TlsPolicy(TlsMode.INSECURE)


@dataclass
class Simulated:
    """A running simulated fleet and the discovery listener its announcements go to."""

    sim: SimFleet
    manifest: Manifest
    discovery: DiscoveryListener


@contextlib.asynccontextmanager
async def running_farm_api(
    database_url: str,
    tmp: Path,
    *,
    models: Sequence[str] = ("P1S", "X1C"),
    count: int | None = None,
    tls: TlsMode = TlsMode.VERIFY,
    time_scale: float = 1.0,
    quirks: Mapping[str, Any] | None = None,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
    farm_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[FarmApi]:
    """A simulated fleet and the server (not yet holding any printer) on a fresh database."""
    async with (
        running_sim(
            tmp, models=models, count=count, time_scale=time_scale, quirks=quirks,
            overrides=overrides,
        ) as simulated,
        serving(
            database_url, tmp / "server", simulated, tls=tls, farm_options=farm_options
        ) as farm_api,
    ):  # fmt: skip
        yield farm_api


@contextlib.asynccontextmanager
async def running_sim(
    tmp: Path,
    *,
    models: Sequence[str] = ("P1S", "X1C"),
    count: int | None = None,
    time_scale: float = 1.0,
    quirks: Mapping[str, Any] | None = None,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Simulated]:
    """A simulated fleet announcing itself to a discovery listener on 127.0.0.1."""
    sim_dir = tmp / "sim"
    discovery = DiscoveryListener(host="127.0.0.1", port=0)
    await discovery.start()
    size = count if count is not None else len(models)
    addressing = Addressing()
    spec = mixed_fleet(
        size,
        secret=fleet_secret(sim_dir),
        hosts=addressing.hosts(size),
        models=models,
        time_scale=time_scale,
        default_quirks=quirks,
        overrides=overrides,
    )
    assert discovery.port is not None
    sim = SimFleet(
        spec, data_dir=sim_dir, addressing=addressing, ssdp_targets=[("127.0.0.1", discovery.port)]
    )
    try:
        manifest = await sim.start()
        yield Simulated(sim, manifest, discovery)
    finally:
        await sim.close()
        await discovery.close()


@contextlib.asynccontextmanager
async def serving(
    database_url: str,
    data_dir: Path,
    simulated: Simulated,
    *,
    tls: TlsMode = TlsMode.VERIFY,
    farm_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[FarmApi]:
    """The server with its farm on `database_url` and `data_dir`, trusting the simulator."""
    sim, manifest, discovery = simulated.sim, simulated.manifest, simulated.discovery
    database = await open_database(database_url)
    box = SecretBox(load_or_create_key(data_dir))
    registry = CollectorRegistry(auto_describe=True)
    fleet = Fleet(
        bus=EventBus(),
        tls=tls_for(Path(manifest.ca_cert), data_dir, tls),
        uploader=Uploader(),
        session_options=SHORT,
        supervision=QUICK,
    )
    farm = Farm(
        database=database,
        secret_box=box,
        fleet=fleet,
        files=PrinterFiles(fleet, data_dir / "tmp"),
        registry=registry,
        wall_clock=utc_now,
        discovery=discovery,
        **(farm_options or {}),
    )
    clock, limiter_clock = MovableClock(), MonotonicClock()
    services = Services(
        settings=Settings(data_dir=data_dir, database_url=database_url),
        database=database,
        secret_box=box,
        passwords=Passwords(CHEAP),
        limiter=LoginLimiter(clock=limiter_clock),
        metrics=registry,
        clock=clock,
        farm=farm,
    )
    try:
        admin_password = await services.first_admin_password() or ""
        await services.start()
        app = create_app(services)
        async with HttpServer(app, host="127.0.0.1", port=0) as server:
            api = RunningApi(
                url=server.url,
                app=app,
                services=services,
                clock=clock,
                limiter_clock=limiter_clock,
                admin_password=admin_password,
            )
            try:
                if admin_password:
                    await _change_first_password(api)
                key = await api.add_key("admin", ["admin"], name="tests")
                yield FarmApi(api, sim, manifest, key, discovery)
            finally:
                await api.aclose()
    finally:
        await services.stop()


async def _change_first_password(api: RunningApi) -> None:
    """The first admin must change its password before its keys may do anything."""
    signed_in = await api.sign_in("admin", api.admin_password)
    response = await signed_in.client.post(
        "/api/v1/auth/password",
        json={"current_password": api.admin_password, "new_password": "a fresh admin passphrase"},
        headers=signed_in.csrf_header,
    )
    assert response.status_code == 204, response.text
