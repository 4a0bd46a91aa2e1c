"""`bambufarm demo`: the server and a simulated mixed fleet in one process, ready to look at.

What `make run` starts. One event loop holds both sides, talking over loopback exactly as a
real farm would (MQTT/TLS, FTPS, SSDP): the simulator comes up on ephemeral ports, the server
starts on the demo's data directory (printers verified against the simulator's CA), imports
the printers — each connection tested before it is saved, as any added printer is — and some
of them start printing. The URL and, on the first start only, the admin's password are
printed; later starts point the stored printers at the simulator's new ports.
"""

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel

from bambufarm.api.app import create_app
from bambufarm.api.server import HttpServer
from bambufarm.app import Services, open_services
from bambufarm.auth.bootstrap import ADMIN_USERNAME
from bambufarm.cli.serve import show_first_password
from bambufarm.farm.service import Farm, ImportOutcome, PrinterEdit, PrinterSpec
from bambufarm.fleet.errors import FleetError
from bambufarm.protocol.errors import ProtocolError
from bambufarm.settings import PrinterTlsMode, Settings, SettingsError
from bambufarm.simulator.demo import start_demo_jobs
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from bambufarm.simulator.scenario import DEMO_MODELS, fleet_secret, mixed_fleet
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

ACTOR = "demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How the demo runs."""

    data_dir: Path
    printers: int = 6
    host: str = "127.0.0.1"
    port: int = 8888
    time_scale: float = 30.0
    manifest: Path | None = None


def demo_settings(options: DemoOptions) -> Settings:
    """The server's settings for the demo (environment variables still apply)."""
    try:
        settings = Settings(data_dir=options.data_dir / "server", host=options.host)
    except ValidationError as err:
        raise SettingsError(f"invalid settings for the demo: {err}") from None
    # Copied in rather than validated: 0 (any free port) is fine for a listener to bind.
    return settings.model_copy(update={"port": options.port})


async def run_demo(options: DemoOptions, console: Console, stop: asyncio.Event) -> None:
    """Run the simulator and the server until `stop` is set."""
    base = demo_settings(options)
    addressing = Addressing()
    sim_dir = options.data_dir / "sim"
    spec = mixed_fleet(
        options.printers,
        secret=fleet_secret(sim_dir),
        hosts=addressing.hosts(options.printers),
        models=list(DEMO_MODELS),
        time_scale=options.time_scale,
    )
    sim = SimFleet(
        spec,
        data_dir=sim_dir,
        addressing=addressing,
        ssdp_targets=[("127.0.0.1", base.ssdp_port)],
    )
    # The simulator's printers carry certificates from its own CA, CN = serial: verified as
    # real printers would be against Bambu's.
    settings = base.model_copy(
        update={"printer_tls": PrinterTlsMode.VERIFY, "printer_ca_file": sim.ca.cert_path}
    )
    manifest = await sim.start()
    try:
        if options.manifest is not None:
            manifest.write(options.manifest)
        services = await open_services(settings)
        try:
            await _serve(services, sim, manifest, console, stop)
        finally:
            await services.stop()
    finally:
        await sim.close()


async def _serve(
    services: Services,
    sim: SimFleet,
    manifest: Manifest,
    console: Console,
    stop: asyncio.Event,
) -> None:
    password = await services.first_admin_password()
    await services.start()
    settings = services.settings
    server = HttpServer(create_app(services), host=settings.host, port=settings.port)
    await server.start()
    try:
        added, failed = await import_printers(services.farm, manifest.printers)
        # Everything built so far (modules, the app, the farm) leaves the collector's walk:
        # bench/api.py, 1,000 printers: a full collection paused the loop 300-400 ms, ~100 after.
        gc.freeze()
        printing = start_demo_jobs(sim)
        for line in failed:
            console.print(f"[red]not imported:[/red] {line}", highlight=False)
        console.print(
            f"{added} simulated printers in the farm ({', '.join(DEMO_MODELS)} …); printing: "
            f"{', '.join(printing) or 'none'}",
            highlight=False,
        )
        if password is not None:
            show_first_password(console, password)
        else:
            console.print(
                f"sign in as {ADMIN_USERNAME} with the password shown at the demo's first start "
                f"(lost it? bambufarm admin reset-password {ADMIN_USERNAME} with "
                f"BAMBUFARM_DATA_DIR={settings.data_dir})",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            Panel(
                f"[bold]{server.url}/[/bold]\n\nAPI docs: {server.url}/api/docs\nPress Ctrl-C to "
                "stop.",
                title="bambufarm demo",
            ),
            soft_wrap=True,
        )
        await server.run_until(stop)
    finally:
        console.print("stopping the demo")
        await services.camera.close()  # open camera streams end, so the stop is not held up
        await server.stop()


async def import_printers(
    farm: Farm, printers: tuple[ManifestPrinter, ...]
) -> tuple[int, list[str]]:
    """Add the simulator's printers (tested), or point stored ones at their new ports."""
    new: list[PrinterSpec] = []
    failed: list[str] = []
    for printer in printers:
        if printer.serial in farm:
            try:
                await farm.update(
                    printer.serial,
                    PrinterEdit(
                        host=printer.host,
                        access_code=printer.access_code,
                        mqtt_port=printer.ports.mqtt,
                        ftps_port=printer.ports.ftps,
                        camera_port=printer.ports.camera,
                    ),
                    actor=ACTOR,
                )
            except (FleetError, StorageError, ProtocolError) as err:
                # Shown to the operator; the other printers go on.
                failed.append(f"{printer.serial}: {err}")
            continue
        new.append(PrinterSpec.of_manifest(printer))
    results = await farm.import_printers(new, actor=ACTOR)
    failed.extend(f"{r.serial}: {r.detail}" for r in results if r.outcome is ImportOutcome.FAILED)
    return len(farm), failed


def run(options: DemoOptions) -> None:
    """Run the demo until SIGINT or SIGTERM (a second one stops without waiting)."""
    # Wide enough for the URL and the password even when stdout is not a terminal.
    console = Console(width=max(120, Console().width))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_demo(options, console, stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
