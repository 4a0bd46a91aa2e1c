"""`bambufarm sim` (a simulated fleet until interrupted) and `bambufarm demo` (the server and a
simulated fleet together, see cli/demo.py)."""

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bambufarm.cli.demo import DemoOptions
from bambufarm.cli.demo import run as run_demo
from bambufarm.settings import SettingsError
from bambufarm.simulator.demo import start_demo_jobs
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.quirks import ScenarioError
from bambufarm.simulator.scenario import (
    DEMO_MODELS,
    FleetSpec,
    fleet_secret,
    load_scenario,
    mixed_fleet,
)
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)


def _parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"SSDP target {text!r} must be HOST:PORT, e.g. 127.0.0.1:2021")
    return host, int(port)


def _build_spec(
    *,
    printers: int,
    models: list[str] | None,
    scenario: Path | None,
    data_dir: Path,
    addressing: Addressing,
    time_scale: float,
) -> FleetSpec:
    secret = fleet_secret(data_dir)
    if scenario is not None:
        return load_scenario(scenario, secret=secret, hosts_for=addressing.hosts)
    return mixed_fleet(
        printers,
        secret=secret,
        hosts=addressing.hosts(printers),
        models=models or list(DEMO_MODELS),
        time_scale=time_scale,
    )


def _print_fleet(console: Console, manifest: Manifest) -> None:
    table = Table(title=f"{len(manifest.printers)} simulated printers")
    for column in ("serial", "model", "name", "host", "mqtt", "ftps", "camera", "access code"):
        table.add_column(column)
    for p in manifest.printers[:50]:
        camera = str(p.ports.camera) if p.ports.camera else "-"
        table.add_row(
            p.serial, p.model_name, p.name, p.host, str(p.ports.mqtt), str(p.ports.ftps), camera,
            p.access_code,
        )  # fmt: skip
    console.print(table)
    if len(manifest.printers) > 50:
        console.print(f"... and {len(manifest.printers) - 50} more (see the manifest)")
    console.print(f"CA certificate: {manifest.ca_cert}")


async def _run(fleet: SimFleet, manifest_path: Path | None, *, demo_jobs: bool) -> None:
    # Wide enough for serials and access codes even when stdout is not a terminal.
    console = Console(width=max(130, Console().width))
    manifest = await fleet.start()
    try:
        if manifest_path is not None:
            manifest.write(manifest_path)
            console.print(f"manifest written to {manifest_path}")
        _print_fleet(console, manifest)
        if demo_jobs:
            started = start_demo_jobs(fleet)
            console.print(f"demo: started prints on {', '.join(started)}")
        console.print("simulator running; press Ctrl-C to stop")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        console.print("stopping simulator")
        await fleet.close()


def _launch(
    *,
    printers: int,
    models: list[str] | None,
    scenario: Path | None,
    data_dir: Path,
    ports: str,
    first_address: str,
    time_scale: float,
    manifest: Path | None,
    ssdp_targets: list[str],
    demo_jobs: bool,
) -> None:
    if ports not in ("auto", "standard"):
        raise typer.BadParameter("--ports must be 'auto' or 'standard'")
    addressing = Addressing(standard_ports=ports == "standard", first_address=first_address)
    try:
        spec = _build_spec(
            printers=printers,
            models=models,
            scenario=scenario,
            data_dir=data_dir,
            addressing=addressing,
            time_scale=time_scale,
        )
        fleet = SimFleet(
            spec,
            data_dir=data_dir,
            addressing=addressing,
            ssdp_targets=[_parse_target(t) for t in ssdp_targets],
        )
    except (ScenarioError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err
    try:
        asyncio.run(_run(fleet, manifest, demo_jobs=demo_jobs))
    except PermissionError as err:
        raise typer.BadParameter(
            f"{err}: the standard ports (990, ...) need root; use --ports auto"
        ) from err
    except OSError as err:
        raise typer.BadParameter(f"cannot listen: {err}") from err


def register(app: typer.Typer) -> None:
    """Add the `sim` and `demo` commands to the CLI."""

    @app.command()
    def sim(
        *,
        printers: Annotated[int, typer.Option(help="Number of printers.")] = 6,
        model: Annotated[
            list[str] | None, typer.Option(help="Model to include (repeat); default a mix.")
        ] = None,
        scenario: Annotated[
            Path | None, typer.Option(help="TOML scenario: fleet, quirks, per-printer overrides.")
        ] = None,
        data_dir: Annotated[Path, typer.Option(help="CA, SD cards, access-code key.")] = Path(
            "sim-data"
        ),
        ports: Annotated[
            str, typer.Option(help="'auto': 127.0.0.1 + ephemeral ports; 'standard': real ports.")
        ] = "auto",
        standard_ports: Annotated[
            bool, typer.Option(help="Same as --ports standard: one address per printer.")
        ] = False,
        first_address: Annotated[
            str, typer.Option(help="Address of the first printer (standard ports).")
        ] = "127.0.0.10",
        time_scale: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
        manifest: Annotated[Path | None, typer.Option(help="Write the manifest JSON here.")] = None,
        ssdp_target: Annotated[
            list[str] | None, typer.Option(help="HOST:PORT to send NOTIFY to (repeat).")
        ] = None,
    ) -> None:
        """Run simulated printers that speak the real Bambu LAN protocol."""
        mode = "standard" if standard_ports else ports
        _launch(
            printers=printers,
            models=model,
            scenario=scenario,
            data_dir=data_dir,
            ports=mode,
            first_address=first_address if mode == "standard" else "127.0.0.1",
            time_scale=time_scale,
            manifest=manifest,
            ssdp_targets=ssdp_target or ["127.0.0.1:2021"],
            demo_jobs=False,
        )

    @app.command()
    def demo(
        *,
        data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data.")] = Path(
            "data/demo"
        ),
        printers: Annotated[
            int, typer.Option(min=1, max=1000, help="Number of simulated printers.")
        ] = 6,
        manifest: Annotated[Path | None, typer.Option(help="Write the manifest JSON here.")] = Path(
            "data/demo/sim.json"
        ),
        host: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option(min=0, max=65535, help="Server port (0 picks a free one).")
        ] = 8888,
        time_scale: Annotated[
            float, typer.Option(min=0.1, help="Simulated seconds per real second.")
        ] = 30.0,
    ) -> None:
        """The demo: the server and a mixed simulated fleet (some printing), imported and live."""
        with contextlib.suppress(FileExistsError):
            data_dir.mkdir(parents=True)
        options = DemoOptions(
            data_dir=data_dir.resolve(),
            printers=printers,
            host=host,
            port=port,
            time_scale=time_scale,
            manifest=manifest,
        )
        try:
            run_demo(options)
        except (ScenarioError, SettingsError, StorageError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        except OSError as err:
            typer.echo(
                f"error: cannot serve the demo on {host}:{port}: {err}; another server may be "
                "running there (try --port 0 to pick a free port)",
                err=True,
            )
            raise typer.Exit(1) from None
