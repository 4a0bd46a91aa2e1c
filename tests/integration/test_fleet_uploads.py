"""fleet.uploads against simulated printers: a global limit, one transfer per printer, errors.

The simulated printers are P1S (data-channel session reuse required) verified the way the
fleet verifies printers: the simulator CA and CN == serial (fleet.tls.check_peer).
"""

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path

import pytest

from bambufarm.fleet.errors import AuthFailed, TlsVerificationFailed, UploadFailed
from bambufarm.fleet.tls import TlsMode, TlsPolicy, check_peer, client_context
from bambufarm.fleet.uploads import Uploader, UploadTarget
from bambufarm.protocol.ftps_replies import FtpsTransferError
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from tests.support.sim import running_fleet

# Bounded so that a hang fails; generous for a loaded 2-core machine.
TIMEOUT = 30.0


def target(
    manifest: Manifest, printer: ManifestPrinter, *, serial: str | None = None, code: str = ""
) -> UploadTarget:
    """The printer as the fleet would describe it: verified against the CA with CN == serial."""
    policy = TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))
    context = client_context(policy)
    context.maximum_version = context.maximum_version.TLSv1_2  # FTPS needs TLS 1.2
    expected = serial or printer.serial
    return UploadTarget(
        serial=printer.serial,
        host=printer.host,
        port=printer.ports.ftps,
        access_code=code or printer.access_code,
        ssl_context=context,
        verify_peer=lambda sock: check_peer(expected, sock, policy),
    )


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that are open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


class Timeline:
    """When each transfer sent its first byte and when its upload call returned."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.first_byte = asyncio.Event()
        self.intervals: list[tuple[float, float]] = []

    def progress(self, key: str) -> "ProgressRecorder":
        return ProgressRecorder(self, key)

    async def run(self, key: str, upload: Awaitable[object]) -> object:
        result = await upload
        self.intervals.append((self.started[key], asyncio.get_running_loop().time()))
        return result


class ProgressRecorder:
    def __init__(self, timeline: Timeline, key: str) -> None:
        self.timeline = timeline
        self.key = key

    def __call__(self, sent: int, total: int) -> None:
        self.timeline.started.setdefault(self.key, asyncio.get_running_loop().time())
        self.timeline.first_byte.set()


async def test_ten_printers_upload_in_parallel_within_the_global_limit(tmp_path: Path) -> None:
    # 2 MB/s per printer: each 400 kB upload lasts ~0.2 s, long enough to overlap.
    quirks = {"ftps_write_rate": 2_000_000}
    payloads = {i: os.urandom(400_000) for i in range(10)}
    async with (
        running_fleet(tmp_path, models=("P1S",), count=10, quirks=quirks) as (fleet, manifest),
        Uploader(max_concurrent=4) as uploader,
    ):
        timeline = Timeline()
        uploads = [
            timeline.run(
                printer.serial,
                uploader.upload(
                    target(manifest, printer),
                    payloads[i],
                    "plate.gcode.3mf",
                    progress=timeline.progress(printer.serial),
                ),
            )
            for i, printer in enumerate(manifest.printers)
        ]
        async with asyncio.timeout(TIMEOUT):
            results = await asyncio.gather(*uploads)

        for i, printer in enumerate(manifest.printers):
            stored = fleet.node(printer.serial).storage.root / "plate.gcode.3mf"
            assert stored.read_bytes() == payloads[i]
        assert all(r.bytes == 400_000 and r.throughput > 0 for r in results)  # type: ignore[attr-defined]
        assert 2 <= max_overlap(timeline.intervals) <= 4
        assert uploader.active == frozenset()


async def test_uploads_to_one_printer_run_one_at_a_time(tmp_path: Path) -> None:
    quirks = {"ftps_write_rate": 2_000_000}
    async with (
        running_fleet(tmp_path, models=("P1S",), quirks=quirks) as (fleet, manifest),
        Uploader(max_concurrent=4) as uploader,
    ):
        printer = manifest.printers[0]
        timeline = Timeline()
        names = [f"job{i}.gcode.3mf" for i in range(3)]
        uploads = [
            timeline.run(
                name,
                uploader.upload(
                    target(manifest, printer),
                    os.urandom(300_000),
                    name,
                    progress=timeline.progress(name),
                ),
            )
            for name in names
        ]
        tasks = [asyncio.create_task(upload) for upload in uploads]
        async with asyncio.timeout(TIMEOUT):
            await timeline.first_byte.wait()
        assert uploader.busy(printer.serial)
        assert uploader.active == {printer.serial}
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*tasks)

        assert max_overlap(timeline.intervals) == 1
        assert not uploader.busy(printer.serial)
        sd = fleet.node(printer.serial).storage.root
        assert sorted(p.name for p in sd.iterdir() if p.is_file()) == names


async def test_failures_are_fleet_errors_that_name_the_printer(tmp_path: Path) -> None:
    overrides = {1: {"quirks": {"ftps_fail_after_bytes": 100_000}}}
    async with (
        running_fleet(tmp_path, models=("P1S",), count=2, overrides=overrides) as (fleet, manifest),
        Uploader() as uploader,
    ):
        healthy, failing = manifest.printers
        with pytest.raises(AuthFailed, match="access code") as refused:
            await uploader.upload(target(manifest, healthy, code="wr0ngc0d"), b"x", "x.bin")
        assert refused.value.serial == healthy.serial
        assert "wr0ngc0d" not in str(refused.value)

        with pytest.raises(UploadFailed, match="426") as broken:
            await uploader.upload(target(manifest, failing), os.urandom(1_000_000), "big.3mf")
        assert broken.value.serial == failing.serial
        assert isinstance(broken.value.__cause__, FtpsTransferError)
        sd = fleet.node(failing.serial).storage.root
        assert [p for p in sd.iterdir() if p.is_file()] == []

        # A certificate that is not the printer's (CN is another serial) is refused before login.
        with pytest.raises(TlsVerificationFailed):
            await uploader.upload(target(manifest, healthy, serial=failing.serial), b"x", "x.bin")

        # The printers are fine for the next upload.
        result = await uploader.upload(target(manifest, healthy), b"fine", "fine.bin")
        assert result.bytes == 4
        assert not uploader.busy(healthy.serial)


async def test_a_closed_uploader_refuses_uploads(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        uploader = Uploader(max_concurrent=2)
        await uploader.upload(target(manifest, manifest.printers[0]), b"one", "one.bin")
        await uploader.aclose()
        with pytest.raises(UploadFailed, match="closed"):
            await uploader.upload(target(manifest, manifest.printers[0]), b"two", "two.bin")


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        Uploader(max_concurrent=0)
    with pytest.raises(ValueError, match="executor_workers"):
        Uploader(max_concurrent=4, executor_workers=2)


def test_target_repr_hides_the_access_code() -> None:
    context = client_context(TlsPolicy(TlsMode.INSECURE))
    printer = UploadTarget("01P00A000000001", "127.0.0.1", 990, "12345678", context)
    assert "12345678" not in repr(printer)
