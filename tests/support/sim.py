"""Start a simulated fleet on loopback for a test: ephemeral ports, a temporary data dir."""

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.scenario import fleet_secret, mixed_fleet


@asynccontextmanager
async def running_fleet(
    data_dir: Path,
    *,
    models: Sequence[str] = ("P1S",),
    count: int | None = None,
    time_scale: float = 1.0,
    quirks: Mapping[str, Any] | None = None,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
    tick_interval: float = 1.0,
) -> AsyncIterator[tuple[SimFleet, Manifest]]:
    """A started fleet of `count` printers (default one per model), closed on exit."""
    size = count if count is not None else len(models)
    addressing = Addressing()
    spec = mixed_fleet(
        size,
        secret=fleet_secret(data_dir),
        hosts=addressing.hosts(size),
        models=models,
        time_scale=time_scale,
        default_quirks=quirks,
        overrides=overrides,
    )
    fleet = SimFleet(spec, data_dir=data_dir, addressing=addressing, tick_interval=tick_interval)
    manifest = await fleet.start()
    try:
        yield fleet, manifest
    finally:
        await fleet.close()
