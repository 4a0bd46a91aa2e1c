"""A whole simulated fleet in one process: addresses, start-up, the 1 Hz tick, the manifest.

One task ticks every printer instead of one task per printer: at 1,000 printers a task each
would cost ~1,000 timer wake-ups a second, while one loop that spreads the printers over
`TICK_SLICES` slices of the second keeps bursts small with ten wake-ups.
"""

import asyncio
import ipaddress
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .clock import Clock, ScaledClock
from .manifest import Manifest
from .node import EPHEMERAL_PORTS, STANDARD_PORTS, PrinterNode, RequestedPorts
from .scenario import FleetSpec
from .ssdp import DEFAULT_TARGETS
from .tls import SimulatorCA

logger = logging.getLogger(__name__)

TICK_SLICES = 10
# Starting servers is I/O plus a certificate each; 50 at once keeps start-up fast without
# thousands of half-started nodes if something fails.
START_CONCURRENCY = 50


@dataclass(frozen=True, slots=True)
class Addressing:
    """Where printers listen: all on one address with ephemeral ports, or one address each."""

    standard_ports: bool = False
    first_address: str = "127.0.0.1"

    def hosts(self, count: int) -> list[str]:
        """The address of each of `count` printers."""
        if not self.standard_ports:
            return [self.first_address] * count
        first = ipaddress.IPv4Address(self.first_address)
        last = first + (count - 1)
        if not first.is_loopback or not last.is_loopback:
            raise ValueError(
                f"{count} printers from {first} would leave 127.0.0.0/8; "
                "choose a lower --first-address"
            )
        return [str(first + i) for i in range(count)]

    @property
    def ports(self) -> RequestedPorts:
        """The ports every printer asks for."""
        return STANDARD_PORTS if self.standard_ports else EPHEMERAL_PORTS


class SimFleet:
    """Starts, ticks and stops a fleet of simulated printers."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        data_dir: Path,
        addressing: Addressing,
        ssdp_targets: Sequence[tuple[str, int]] = DEFAULT_TARGETS,
        clock: Clock | None = None,
        tick_interval: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if tick_interval <= 0:
            raise ValueError(f"tick interval must be positive, got {tick_interval!r}")
        self.spec = spec
        self.addressing = addressing
        self.data_dir = data_dir
        self.ca = SimulatorCA.load_or_create(data_dir / "ca")
        self._tick_interval = tick_interval
        rng = random.Random(seed)  # noqa: S311 - simulation noise, not security
        # One clock per time scale: a scenario may speed up single printers (quirk time_scale).
        clocks: dict[float, Clock] = {}
        if clock is not None:
            clocks = {p.quirks.time_scale: clock for p in spec.printers}
        self.nodes = [
            PrinterNode(
                printer,
                ca=self.ca,
                data_dir=data_dir / "printers",
                clock=clocks.setdefault(
                    printer.quirks.time_scale, ScaledClock(printer.quirks.time_scale)
                ),
                rng=random.Random(rng.random()),  # noqa: S311 - simulation noise
                ssdp_targets=ssdp_targets,
            )
            for printer in spec.printers
        ]
        self._by_serial = {node.serial: node for node in self.nodes}
        self._ticker: asyncio.Task[None] | None = None
        self.reports_published = 0

    def node(self, serial: str) -> PrinterNode:
        """The node of a printer by serial."""
        try:
            return self._by_serial[serial]
        except KeyError:
            raise KeyError(f"no simulated printer with serial {serial!r}") from None

    async def start(self) -> Manifest:
        """Start every printer's servers and the ticker; returns the manifest."""
        gate = asyncio.Semaphore(START_CONCURRENCY)
        ports = self.addressing.ports

        async def start_one(node: PrinterNode) -> None:
            async with gate:
                await node.start(ports)

        try:
            async with asyncio.TaskGroup() as group:
                for node in self.nodes:
                    group.create_task(start_one(node))
        except BaseException:
            await self.close()
            raise
        self._ticker = asyncio.create_task(self._tick_forever(), name="sim-fleet-ticker")
        return self.manifest()

    def manifest(self) -> Manifest:
        """Every started printer with its ports and the CA that signed them."""
        return Manifest(
            ca_cert=str(self.ca.cert_path),
            printers=tuple(node.manifest_entry() for node in self.nodes),
        )

    async def close(self) -> None:
        """Stop ticking and close every printer."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.wait([ticker])
        await asyncio.gather(*(node.close() for node in self.nodes))

    def tick_all(self) -> int:
        """Tick every printer once (tests call this with a manual clock)."""
        published = sum(node.tick() for node in self.nodes)
        self.reports_published += published
        return published

    async def _tick_forever(self) -> None:
        slices = [self.nodes[i::TICK_SLICES] for i in range(TICK_SLICES)]
        pause = self._tick_interval / TICK_SLICES
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for group in slices:
                for node in group:
                    try:
                        self.reports_published += node.tick()
                    except Exception:
                        # One broken printer must not stop the fleet; it is logged each time
                        # because it is a simulator bug, not an expected condition.
                        logger.exception("%s: tick failed", node.serial)
                next_at += pause
                await asyncio.sleep(max(0.0, next_at - loop.time()))
