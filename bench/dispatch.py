"""Dispatch benchmark: 200 jobs over 100 simulated printers, FTPS capped at 160 KB/s per printer.

A child process simulates the printers (P1S, X1C and A1 in a 5:3:2 mix, each AMS loaded with
four of six spools, so every job fits only some printers; the SD card of each takes uploads at
160 KB/s, the `ftps_write_rate` quirk). This process is the server side: the fleet, a SQLite
database, the library and the dispatcher, exactly as `Services` builds them, with a simulated
operator who clears each plate `--operator-s` after its print ends. Jobs: `--files` distinct
sliced files of `--file-mb` each, in copies, `--jobs` in all, each printing `--print-s` seconds.

The farm is run twice on fresh printers, without and with pre-staging, and measured:

* fleet utilisation: the share of printer-time in RUNNING (and in PREPARE or RUNNING) from the
  first start to the last job's end, and that makespan;
* plate cleared → `project_file` sent, per clear that was followed by a start (budget ≤ 1 s
  with pre-staging, design.md §6);
* uploads: transfers, bytes, concurrency while uploading (peak, mean) and aggregate throughput,
  against a baseline measured in the same run: the same file uploaded straight through an
  `Uploader` to as many printers at once, no dispatcher (budget ≥ 80 % of it per transfer);
* dispatcher CPU per decision: thread CPU of building views and matching, per job considered
  in a round, and per round.

    .venv/bin/python -m bench.dispatch [--printers 100] [--jobs 200] [--print-s 60]
"""

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bambufarm.fleet.config import PrinterConfig, SessionOptions
from bambufarm.fleet.events import (
    CommandSent,
    EventBus,
    PrintFailed,
    PrintFinished,
    Subscription,
)
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.fleet.uploads import Uploader
from bambufarm.jobs.dispatch import Target
from bambufarm.jobs.library import Library
from bambufarm.jobs.model import JobSpec, JobState
from bambufarm.jobs.plate import PlateGate
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.runner import Dispatcher, DispatcherOptions
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.models import model_by_name
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.identity import (
    AmsKind,
    AmsUnitSpec,
    PrinterIdentity,
    TraySpec,
    make_serial,
)
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from bambufarm.simulator.quirks import Quirks
from bambufarm.simulator.sample_files import FilamentSpec, PlateSpec, build_gcode_3mf
from bambufarm.simulator.scenario import FleetSpec, PrinterSpec, access_code_for, fleet_secret
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.jobs import list_jobs
from bench.common import percentile, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent
SD_RATE = 160_000  # bytes/s: what an SD card in a P1/X1 takes over FTPS (protocol.md §2.1)
TIME_SCALE = 60.0  # simulated seconds per real second: a one-hour print takes a minute
MODELS = (("P1S", 5), ("X1C", 3), ("A1", 2))
# (material, colour): each printer loads four of these six, so each job fits only some.
SPOOLS = (
    ("PLA", "#FFFFFF"), ("PLA", "#000000"), ("PLA", "#C12E1F"),
    ("PLA", "#0A2CA5"), ("PETG", "#8E9089"), ("PETG", "#FF6A13"),
)  # fmt: skip
FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.AWAITING_CLEAR})
SAMPLE_S = 0.25


# --------------------------------------------------------------------------- child: printers


def fleet_spec(count: int, data_dir: Path) -> FleetSpec:
    """`count` printers in the model mix, AMS loads rotating through the spools."""
    secret = fleet_secret(data_dir)
    models = [name for name, weight in MODELS for _ in range(weight)]
    quirks = Quirks(ftps_write_rate=SD_RATE, time_scale=TIME_SCALE)
    printers = []
    for index in range(count):
        model = model_by_name(models[index % len(models)])
        loaded = [SPOOLS[(index + k) % len(SPOOLS)] for k in range(4)]
        trays = tuple(TraySpec(m, c, remain=100, weight_g=1000) for m, c in loaded)
        kind = AmsKind.AMS_LITE if model.name == "A1" else AmsKind.AMS
        serial = make_serial(model, index)
        identity = PrinterIdentity(
            serial=serial,
            model=model,
            name=f"{model.name} #{index}",
            access_code=access_code_for(secret, serial),
            ams=(AmsUnitSpec(0, kind, trays),),
        )
        printers.append(PrinterSpec(identity, quirks))
    return FleetSpec(tuple(printers), TIME_SCALE)


async def printers_child(count: int, data_dir: Path) -> None:
    """Run the simulated printers until stdin closes; print the manifest path when ready."""
    sim = SimFleet(fleet_spec(count, data_dir), data_dir=data_dir, addressing=Addressing())
    manifest = await sim.start()
    path = data_dir / "manifest.json"
    manifest.write(path)
    print(path, flush=True)
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    finally:
        await sim.close()


@contextlib.asynccontextmanager
async def printers(count: int, tmp: Path) -> AsyncIterator[Manifest]:
    """A fresh simulated fleet in a child process; yields its manifest."""
    data = tmp / f"sim-{time.monotonic_ns()}"
    data.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dispatch", "--child", str(data), "--printers", str(count),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdin is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 300)
    try:
        yield Manifest.read(Path(line.decode().strip()))
    finally:
        proc.stdin.close()
        await proc.wait()


# --------------------------------------------------------------------------- server side


def sliced_files(count: int, size_mb: float, print_s: float) -> list[tuple[str, bytes, str]]:
    """(model code, bytes, name) of `count` distinct files across the models and spools."""
    models = [name for name, weight in MODELS for _ in range(weight)]
    padding = int(size_mb * 3_000_000)  # G-code padding deflates about 3:1
    out = []
    for index in range(count):
        model = model_by_name(models[index % len(models)])
        material, colour = SPOOLS[index % len(SPOOLS)]
        plate = PlateSpec(
            prediction_s=int(print_s * TIME_SCALE) + index,  # distinct bytes per file
            filaments=(FilamentSpec(slot=1, type=material, color=colour, used_g=15.0),),
        )
        data = build_gcode_3mf(
            plates=[plate], printer_model_id=model.code, gcode_padding_bytes=padding
        )
        out.append((model.code, data, f"part-{index:03d}.gcode.3mf"))
    return out


@dataclass
class Samples:
    """What the sampler saw every SAMPLE_S."""

    running: int = 0
    working: int = 0  # PREPARE or RUNNING
    printer_samples: int = 0
    upload_active: list[int] = field(default_factory=list)
    clears: list[tuple[str, float]] = field(default_factory=list)
    sends: list[tuple[str, float]] = field(default_factory=list)


def connect(manifest: Manifest, uploads: int) -> tuple[Fleet, Uploader]:
    """A fleet trusting the simulator's CA, every printer added."""
    uploader = Uploader(max_concurrent=uploads)
    fleet = Fleet(
        bus=EventBus(),
        tls=TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert)),
        uploader=uploader,
        session_options=SessionOptions(connect_timeout=30.0),
    )
    return fleet, uploader


async def until_ready(fleet: Fleet, serials: Iterable[str]) -> None:
    """Wait until every printer is online with a first report."""
    wanted = list(serials)
    for _ in range(1500):  # 5 minutes
        snapshots = [fleet.snapshot(s) for s in wanted]
        if all(s.connection.connected and s.state.report_count for s in snapshots):
            return
        await asyncio.sleep(0.2)  # start-up of 100 sessions; nothing to wait on but time
    raise TimeoutError("printers not online with a report within 5 minutes")


async def raw_baseline(manifest: Manifest, data: bytes, uploads: int) -> dict[str, float]:
    """The same file straight through an Uploader to `uploads` printers at once."""
    fleet, uploader = connect(manifest, uploads)
    async with uploader, fleet:
        for printer in manifest.printers[:uploads]:
            fleet.add(_config(printer))
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                fleet.get(p.serial).upload(data, "raw-baseline.gcode.3mf")
                for p in manifest.printers[:uploads]
            )
        )
        wall = time.perf_counter() - started
    total = sum(r.bytes for r in results)
    return {
        "transfers": len(results),
        "aggregate_Bps": total / wall,
        "per_transfer_Bps": total / sum(r.seconds for r in results),
    }


def _config(printer: ManifestPrinter) -> PrinterConfig:
    return PrinterConfig(
        serial=printer.serial, host=printer.host, access_code=printer.access_code,
        name=printer.name, model=printer.model, mqtt_port=printer.ports.mqtt,
        ftps_port=printer.ports.ftps,
    )  # fmt: skip


async def run_farm(
    manifest: Manifest, files: list[tuple[str, bytes, str]], args: argparse.Namespace, *,
    prestage: bool, tmp: Path,
) -> dict[str, object]:  # fmt: skip
    """Dispatch every job on the fleet; the measurements."""
    db = await open_database(f"sqlite+aiosqlite:///{tmp / f'bench-{prestage}.db'}")
    library = Library(tmp / f"library-{prestage}", db)
    shas: list[tuple[str, str]] = []
    for model, data, name in files:
        path = tmp / name
        path.write_bytes(data)
        shas.append((model, (await library.add(path, name=name)).sha256))
    fleet, uploader = connect(manifest, args.uploads)
    samples = Samples()
    cpu_before = os.times()
    async with uploader, fleet:
        for printer in manifest.printers:
            fleet.add(_config(printer))
        await until_ready(fleet, [p.serial for p in manifest.printers])
        wakeup = Wakeup()
        queue, plates = JobQueue(db, wakeup), PlateGate(db, wakeup)
        options = DispatcherOptions(prestage=prestage, prestage_concurrency=args.uploads)
        dispatcher = Dispatcher(
            database=db, fleet=fleet, library=library, wakeup=wakeup, options=options
        )
        events = fleet.bus.subscribe(kinds=frozenset({PrintFinished, PrintFailed, CommandSent}))
        tasks = [
            asyncio.create_task(_operator(events, plates, samples, args.operator_s)),
            asyncio.create_task(_sampler(fleet, uploader, samples)),
        ]
        await dispatcher.start()
        started = time.monotonic()
        ids: list[int] = []
        for index, (model, sha) in enumerate(shas):
            # args.jobs spread over the files, the first ones taking the remainder.
            copies = args.jobs // len(shas) + (index < args.jobs % len(shas))
            if copies <= 0:
                break
            spec = JobSpec(sha, f"part {index}", copies=copies, target=Target.of_models(model))
            ids.extend(j.id for j in await queue.add(spec))
        done_at = await _until_done(db, len(ids), args.timeout_s)
        cpu = os.times()
        await dispatcher.stop()
        events.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await db.aclose()
    return _measurements(
        samples, dispatcher, len(ids), started, done_at=done_at, args=args,
        cpu_s=(cpu.user - cpu_before.user) + (cpu.system - cpu_before.system),
    )  # fmt: skip


async def _operator(
    events: Subscription, plates: PlateGate, samples: Samples, delay: float
) -> None:
    """Clears each plate `delay` seconds after its print ends; records sends and clears."""
    pending: set[asyncio.Task[None]] = set()

    async def clear(serial: str) -> None:
        await asyncio.sleep(delay)  # the operator walks over to the printer
        samples.clears.append((serial, time.monotonic()))
        await plates.clear(serial, by="operator")

    async for event in events:
        if isinstance(event, CommandSent):
            if event.command == "project_file":
                samples.sends.append((event.serial, time.monotonic()))
        else:
            task = asyncio.create_task(clear(event.serial))
            pending.add(task)
            task.add_done_callback(pending.discard)


async def _sampler(fleet: Fleet, uploader: Uploader, samples: Samples) -> None:
    while True:
        states = Counter(s.state.job.gcode_state.value for s in fleet.printers())
        samples.running += states["RUNNING"]
        samples.working += states["RUNNING"] + states["PREPARE"]
        samples.printer_samples += len(fleet)
        samples.upload_active.append(len(uploader.active))
        await asyncio.sleep(SAMPLE_S)  # a sampler: fixed period by design


async def _until_done(db: Database, total: int, limit_s: float) -> float:
    for _ in range(int(limit_s / 0.5)):
        async with db.session(readonly=True) as session:
            page = await list_jobs(session, states={s.value for s in FINISHED}, limit=1)
        if page.total >= total:
            return time.monotonic()
        await asyncio.sleep(0.5)  # the database has no change notification
    raise TimeoutError(f"jobs not finished within {limit_s:g} s")


def _latencies(
    samples: Samples, starts: Iterable[tuple[str, float, str]]
) -> list[tuple[float, str]]:
    """Per clear: seconds to the next project_file sent to that printer (within 5 min), and
    how that start's file got to the printer ("held", "staging" in flight, "upload")."""
    out = []
    for serial, cleared in samples.clears:
        later = [(t, how) for s, t, how in starts if s == serial and t >= cleared]
        if later:
            first, how = min(later)
            if first - cleared < 300:
                out.append((first - cleared, how))
    return out


def _summary(latencies: list[float]) -> dict[str, object]:
    return {
        "count": len(latencies),
        "within_1s": sum(1 for x in latencies if x <= 1.0),
        "p50_s": percentile(latencies, 50) if latencies else None,
        "p95_s": percentile(latencies, 95) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "all_s": sorted(round(x, 3) for x in latencies),
    }


def _measurements(
    samples: Samples, dispatcher: Dispatcher, jobs: int, started: float, *, done_at: float,
    args: argparse.Namespace, cpu_s: float,
) -> dict[str, object]:  # fmt: skip
    stats, staging = dispatcher.stats, dispatcher.staging
    active = [n for n in samples.upload_active if n > 0]
    upload_time = len(active) * SAMPLE_S
    total_bytes = stats.upload_bytes + staging.staged_bytes
    timed = _latencies(samples, stats.starts)
    first_send = min((t for _, t in samples.sends), default=started)
    return {
        "jobs": jobs,
        "makespan_s": done_at - first_send,
        "utilisation_running": samples.running / max(1, samples.printer_samples),
        "utilisation_working": samples.working / max(1, samples.printer_samples),
        "clear_to_start": _summary([x for x, _ in timed]),
        # Only the starts whose file was on the printer when it was cleared.
        "clear_to_start_held": _summary([x for x, how in timed if how == "held"]),
        "clear_to_start_by_file": dict(Counter(how for _, how in timed)),
        "uploads": {
            "dispatch_transfers": stats.uploads,
            "prestage_transfers": staging.staged,
            "bytes": total_bytes,
            "peak_concurrency": max(active, default=0),
            "mean_concurrency": sum(active) / len(active) if active else 0.0,
            "aggregate_Bps": total_bytes / upload_time if upload_time else 0.0,
            "per_transfer_Bps": total_bytes / (stats.upload_s + staging.staged_s)
            if stats.upload_s + staging.staged_s
            else 0.0,
        },
        "dispatcher": {
            "rounds": stats.rounds,
            "decisions": stats.decisions,
            "cpu_per_decision_us": 1e6 * stats.match_cpu_s / max(1, stats.decisions),
            "cpu_per_round_ms": 1e3 * stats.match_cpu_s / max(1, stats.rounds),
            "starts_sent": stats.starts_sent,
        },
        "server_cpu_s": cpu_s,
        "uploader_limit": args.uploads,
    }


def report(
    baseline: dict[str, float], runs: dict[str, dict[str, object]], args: argparse.Namespace
) -> None:
    """Print the tables and write bench/results/dispatch.json."""
    print(
        f"\n{args.printers} simulated printers (P1S:X1C:A1 = 5:3:2, 4 of 6 spools each), "
        f"{args.jobs} jobs from {args.files} files of {args.file_mb:g} MB, {args.print_s:g} s "
        f"prints, SD at {SD_RATE / 1000:g} KB/s, {args.uploads} uploads at once, plates cleared "
        f"{args.operator_s:g} s after each print; {os.cpu_count()} cores."
    )
    rows = []
    for name, run in runs.items():
        lat = run["clear_to_start"]
        held = run["clear_to_start_held"]
        assert isinstance(held, dict)
        up = run["uploads"]
        disp = run["dispatcher"]
        assert isinstance(lat, dict)
        assert isinstance(up, dict)
        assert isinstance(disp, dict)
        rows.append([
            name, f"{run['makespan_s']:.0f} s",
            f"{_pct(run['utilisation_running'])} / {_pct(run['utilisation_working'])}",
            _s(lat["p50_s"]), _s(lat["p95_s"]), _s(lat["max_s"]),
            f"{lat['within_1s']} of {lat['count']}",
            f"{held['count']}: {_s(held['p50_s'])} / {_s(held['max_s'])}",
            f"{up['dispatch_transfers']} + {up['prestage_transfers']}",
            f"{up['peak_concurrency']} / {up['mean_concurrency']:.1f}",
            f"{up['aggregate_Bps'] / 1e6:.2f} MB/s",
            f"{100 * up['per_transfer_Bps'] / baseline['per_transfer_Bps']:.0f} %",
            f"{disp['cpu_per_decision_us']:.0f} µs / {disp['cpu_per_round_ms']:.1f} ms",
            disp["rounds"],
        ])  # fmt: skip
    print_table(
        f"Dispatch: {args.jobs} jobs over {args.printers} printers",
        [
            "run", "makespan", "utilisation (running / working)", "cleared→project_file p50",
            "p95", "max", "≤ 1 s", "file already on the printer: n, p50 / max",
            "uploads (dispatch + pre-staged)", "concurrency peak / mean",
            "aggregate upload", "per transfer vs raw", "dispatcher CPU per job / per round",
            "rounds",
        ],
        rows,
    )  # fmt: skip
    print_table(
        "Baseline: the same file straight through an Uploader, no dispatcher",
        ["transfers at once", "aggregate", "per transfer"],
        [[int(baseline["transfers"]), f"{baseline['aggregate_Bps'] / 1e6:.2f} MB/s",
          f"{baseline['per_transfer_Bps'] / 1e3:.0f} KB/s"]],
    )  # fmt: skip
    path = write_json(
        "dispatch",
        {"args": vars(args), "sd_rate_Bps": SD_RATE, "baseline": baseline, "runs": runs},
    )
    print(f"\nwritten to {path}")


def _pct(value: object) -> str:
    assert isinstance(value, float)
    return f"{100 * value:.0f} %"


def _s(value: object) -> str:
    return "-" if value is None else f"{float(value):.2f} s"  # type: ignore[arg-type]


async def main_async(args: argparse.Namespace) -> None:
    """Baseline, then the farm without and with pre-staging, each on fresh printers."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        files = sliced_files(args.files, args.file_mb, args.print_s)
        runs: dict[str, dict[str, object]] = {}
        async with printers(args.printers, tmp) as manifest:
            baseline = await raw_baseline(manifest, files[0][1], args.uploads)
        for label, prestage in (("without pre-staging", False), ("with pre-staging", True)):
            async with printers(args.printers, tmp) as manifest:
                runs[label] = await run_farm(manifest, files, args, prestage=prestage, tmp=tmp)
            print(f"{label}: {runs[label]}", flush=True)
        report(baseline, runs, args)


def main() -> None:
    """Parse the arguments; run the benchmark or, with --child, the simulated printers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--printers", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--file-mb", type=float, default=1.0)
    parser.add_argument("--print-s", type=float, default=60.0)
    parser.add_argument("--uploads", type=int, default=16, help="transfers at once")
    parser.add_argument("--operator-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    args = parser.parse_args()
    if args.child is not None:
        asyncio.run(printers_child(args.printers, args.child))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
