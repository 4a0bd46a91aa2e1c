"""Simulator scale benchmark: start-up, RSS and CPU of 10 → 100 → 1,000 printers in one process.

For each fleet size the simulator runs in a child process of its own (so its RSS is its own),
as `bambufarm sim` would: the mixed demo fleet, every printer with all of its servers. Another
process connects one real MQTT/TLS subscriber per printer (bench/mqtt_subscriber.py). Then a
share of the printers (`--printing`, default half and all) start a print job and the clock
jumps past PREPARE, so the window sees the reports of RUNNING printers (progress, layers,
temperatures) next to idle ones: X1-family printers push a full report every second, the
others a delta every second while printing and a heartbeat every 5 s when idle. The child is
measured with psutil over the window: CPU seconds / wall seconds = share of one core.

Baseline, measured in the same run: the transport alone. A child with one MQTT broker per
printer (same simulator CA, one leaf and one TLS 1.2 context each, as the simulator has) that
publishes as many messages per second, of the same mean size, as the simulator did at that
size, with no simulation and none of the other servers. Simulator minus baseline is what the
printer model, FTPS, bind, SSDP and camera servers add.

Budget (issue "Printer simulator", design.md §6): 1,000 printers in one process, RSS ≤ 1.5 GB,
CPU at 1 report/s each ≤ 50 % of one core.

    .venv/bin/python -m bench.simulator [--sizes 10 100 1000] [--seconds 20]
    .venv/bin/python -m bench.simulator --profile --sizes 1000   # cProfile the child's window
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import psutil  # type: ignore[import-untyped]

from bambufarm.simulator.broker import MqttBroker
from bambufarm.simulator.clock import ScaledClock
from bambufarm.simulator.demo import demo_job, start_job
from bambufarm.simulator.fleet import TICK_SLICES, Addressing, SimFleet
from bambufarm.simulator.scenario import DEMO_MODELS, fleet_secret, mixed_fleet
from bambufarm.simulator.tls import SimulatorCA, server_context
from bench.common import RESULTS, print_table, write_json
from bench.mqtt_subscriber import Target, Targets, raise_nofile, reply, stdin_lines

ROOT = Path(__file__).resolve().parent.parent
BUDGET_PRINTERS = 1000
BUDGET_RSS_BYTES = 1.5e9
BUDGET_CPU_SHARE = 0.5
# Each printer listens on up to 6 sockets (MQTT, FTPS, bind, bind TLS, SSDP, camera) and holds
# the subscriber's connection: 8 a printer leaves room for a CA file or a log.
FDS_PER_PRINTER = 8
# Long enough that no job ends in the window even when the clock is warped past PREPARE.
JOB_HOURS = 6.0
# PREPARE takes ~130 simulated seconds (download 10 s + preheat, levelling, cleaning); the
# clock jumps past it so the window sees RUNNING printers rather than warm-up.
WARP_S = 180.0
# After the jump every idle printer publishes a heartbeat at once; let that burst pass.
SETTLE_S = 3.0
LINE_TIMEOUT_S = 900.0  # start-up of 1,000 printers on a busy 2-core machine, with margin
ACCESS_CODE = "12345678"


# --------------------------------------------------------------------------- child: simulator


class WarpClock:
    """Real-time simulated clock that can jump forward once jobs are started."""

    __slots__ = ("_base", "_offset")

    def __init__(self) -> None:
        self._base = ScaledClock(1.0)
        self._offset = 0.0

    def now(self) -> float:
        """Simulated Unix seconds."""
        return self._base.now() + self._offset

    def jump(self, seconds: float) -> None:
        """Move simulated time forward by `seconds`."""
        self._offset += seconds


def _rss() -> int:
    rss: int = psutil.Process().memory_info().rss
    return rss


def _cpu_since(start: os.times_result) -> dict[str, float]:
    now = os.times()
    return {
        "startup_cpu_s": now.user + now.system - start.user - start.system,
        "startup_sys_s": now.system - start.system,  # bind(0), listen, mkdir: the kernel's part
    }


def prints(index: int, share: float) -> bool:
    """Whether printer `index` gets a job when `share` of the fleet should print."""
    # Whole blocks of one printer per model print or idle, spread evenly (Bresenham), so
    # every model is in both groups: every other printer would print only X1C, P1P, A1 mini.
    block = index // len(DEMO_MODELS)
    return int((block + 1) * share) > int(block * share)


async def _serve(
    hello: dict[str, object],
    on_jobs: Callable[[], dict[str, object]],
    mark: Callable[[], dict[str, object]],
) -> None:
    """Answer the parent's commands until `quit` (both child kinds speak this)."""
    profiler: cProfile.Profile | None = None
    reply(hello)
    async for line in stdin_lines():
        if line == "jobs":
            reply(on_jobs())
        elif line == "mark":
            reply(mark() | {"t": time.monotonic()})
        elif line == "profile-start":
            profiler = cProfile.Profile()
            profiler.enable()
            reply({})
        elif line == "profile-stop" and profiler is not None:
            profiler.disable()
            reply({"profile": _profile_text(profiler)})
        elif line == "quit":
            break


def _profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(30)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(30)
    return out.getvalue()


async def simulator_child(count: int, data_dir: Path, share: float) -> None:
    """Start a mixed fleet of `count` printers, then serve the parent's commands."""
    nofile = raise_nofile(count * FDS_PER_PRINTER + 100)
    rss_base = _rss()
    addressing = Addressing()
    clock = WarpClock()
    started, started_cpu = time.perf_counter(), os.times()
    spec = mixed_fleet(
        count,
        secret=fleet_secret(data_dir),
        hosts=addressing.hosts(count),
        models=DEMO_MODELS,
    )
    fleet = SimFleet(spec, data_dir=data_dir, addressing=addressing, clock=clock)
    built = time.perf_counter()
    manifest = await fleet.start()
    listening = time.perf_counter()
    Targets(
        ca_cert=manifest.ca_cert,
        printers=tuple(
            Target(p.host, p.ports.mqtt, p.serial, p.access_code) for p in manifest.printers
        ),
    ).write(data_dir / "targets.json")

    def start_jobs() -> dict[str, object]:
        files: dict[str, bytes] = {}
        printing = 0
        for index, node in enumerate(fleet.nodes):
            if not prints(index, share):
                continue
            model = node.spec.identity.model
            data = files.get(model.name) or files.setdefault(model.name, demo_job(model, JOB_HOURS))
            start_job(node, "bench.gcode.3mf", data, task_id=1_000_000 + index)
            printing += 1
        clock.jump(WARP_S)
        return {"printing": printing}

    def mark() -> dict[str, object]:
        states = Counter(node.printer.gcode_state for node in fleet.nodes)
        return {"published": fleet.reports_published, "states": dict(states)}

    hello: dict[str, object] = {
        "build_s": built - started,
        "listen_s": listening - built,
        **_cpu_since(started_cpu),
        "rss_base": rss_base,
        "rss_started": _rss(),
        "nofile": nofile,
    }
    try:
        await _serve(hello, start_jobs, mark)
    finally:
        await fleet.close()


# --------------------------------------------------------------------------- child: baseline


class TransportOnly:
    """Broker behaviour of the baseline: the login check and nothing behind it."""

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        """`bblp` + the one access code every baseline broker shares."""
        return username == "bblp" and password == ACCESS_CODE.encode()

    def allow_subscribe(self, topic_filter: str) -> bool:
        """Every filter is allowed."""
        return True

    def on_publish(self, topic: str, payload: bytes) -> None:
        """Requests are ignored: no printer answers them."""

    def on_subscribed(self, topic_filter: str) -> None:
        """No full report on subscribe: there is no printer state to send."""


def filler_payload(size: int) -> bytes:
    """A push_status-shaped JSON message of `size` bytes (at least its envelope)."""
    head = b'{"print":{"command":"push_status","msg":1,"sequence_id":"1","pad":"'
    tail = b'"}}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


class Publisher:
    """Publishes `rate` messages a second over every broker in turn, ten slices a second.

    The slicing is the fleet's own (`SimFleet` ticks a tenth of the printers every 100 ms), so
    the baseline's writes come in bursts of the same size.
    """

    __slots__ = ("_brokers", "_payload", "_rate", "_topics", "published")

    def __init__(
        self, brokers: list[MqttBroker], topics: list[str], rate: float, payload: bytes
    ) -> None:
        self._brokers = brokers
        self._topics = topics
        self._rate = rate
        self._payload = payload
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled."""
        pause = 1.0 / TICK_SLICES
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        owed = 0.0
        index = 0
        count = len(self._brokers)
        while True:
            owed += self._rate * pause
            while owed >= 1.0:
                slot = index % count
                self._brokers[slot].publish(self._topics[slot], self._payload)
                index += 1
                owed -= 1.0
                self.published += 1
            next_at += pause
            await asyncio.sleep(max(0.0, next_at - loop.time()))


async def transport_child(count: int, data_dir: Path, rate: float, size: int) -> None:
    """One TLS MQTT broker per printer publishing `rate` messages/s of `size` bytes in all."""
    nofile = raise_nofile(count * 2 + 100)
    rss_base = _rss()
    started, started_cpu = time.perf_counter(), os.times()
    ca = SimulatorCA.load_or_create(data_dir / "ca")
    behaviour = TransportOnly()
    serials = [f"01P00A{index:09d}" for index in range(count)]
    brokers = [
        MqttBroker(behaviour, server_context(ca.issue_leaf(serial, ["127.0.0.1"])))
        for serial in serials
    ]
    built = time.perf_counter()
    ports = [await broker.start("127.0.0.1", 0) for broker in brokers]
    listening = time.perf_counter()
    Targets(
        ca_cert=str(ca.cert_path),
        printers=tuple(
            Target("127.0.0.1", port, serial, ACCESS_CODE)
            for port, serial in zip(ports, serials, strict=True)
        ),
    ).write(data_dir / "targets.json")
    publisher = Publisher(
        brokers, [f"device/{s}/report" for s in serials], rate, filler_payload(size)
    )
    tasks: list[asyncio.Task[None]] = []

    def start_publishing() -> dict[str, object]:
        tasks.append(asyncio.create_task(publisher.run(), name="bench-publisher"))
        return {"printing": 0}

    hello: dict[str, object] = {
        "build_s": built - started,
        "listen_s": listening - built,
        **_cpu_since(started_cpu),
        "rss_base": rss_base,
        "rss_started": _rss(),
        "nofile": nofile,
    }
    try:
        await _serve(hello, start_publishing, lambda: {"published": publisher.published})
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for broker in brokers:
            await broker.close()


# --------------------------------------------------------------------------- parent


@dataclass(frozen=True, slots=True)
class Run:
    """One measured child: a fleet size under the simulator or the transport baseline."""

    kind: str  # "simulator" or "transport"
    printers: int
    share: float  # of the fleet asked to print (the baseline copies its simulator's rate)
    printing: int
    states: dict[str, int]  # gcode_state of every printer at the end of the window
    build_s: float  # specs, leaf certificates, TLS contexts, objects
    listen_s: float  # until every server of every printer listens
    startup_s: float  # build_s + listen_s
    startup_cpu_s: float  # CPU seconds of the same: what a busy machine cannot inflate
    startup_sys_s: float  # of which in the kernel
    process_ready_s: float  # spawn -> listening: interpreter and imports included
    connect_s: float  # the other process: every TLS login and SUBACK
    rss_base_mb: float  # after imports, before the first printer
    rss_started_mb: float  # listening, no client yet
    rss_mb: float  # after the measured window, every subscriber connected
    rss_per_printer_kb: float
    fds: int
    nofile_hard: int  # RLIMIT_NOFILE hard limit (the soft one is raised to it)
    window_s: float
    cpu_pct: float  # of one core, over the window
    cpu_us_per_report: float
    reports_per_s: float
    received_per_s: float
    mean_payload_bytes: float
    subscriber_cpu_pct: float
    subscribers_lost: int
    loadavg_1min: float

    @property
    def label(self) -> str:
        """The table's first column."""
        if self.kind == "transport":
            return "transport baseline"
        return f"simulator, {self.share:.0%} printing"


class Child:
    """A child process spoken to with one line in, one JSON line out."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.ps = psutil.Process(process.pid)

    @classmethod
    async def spawn(cls, name: str, *args: str) -> "Child":
        """Start `python -m <args>` from the repository root."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(name, process)

    async def ask(self, command: str | None = None) -> dict[str, Any]:
        """Send `command` (if any) and read the one-line JSON answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command.encode() + b"\n")
            await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), LINE_TIMEOUT_S)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} exited with {code} (its stderr is above)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def cpu_s(self) -> float:
        """User + system CPU seconds so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    async def quit(self) -> None:
        """Ask the child to stop and wait for it."""
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.write(b"quit\n")
            self.process.stdin.close()
            await self.process.wait()


def _f(body: dict[str, object], key: str) -> float:
    value = body[key]
    assert isinstance(value, int | float), (key, value)
    return float(value)


async def measure(
    kind: str, count: int, share: float, seconds: float, extra: list[str], *, profile: bool
) -> tuple[Run, str | None]:
    """Run one child of `kind` with `count` printers and measure it over `seconds`."""
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        spawned = time.perf_counter()
        args = ["--child", kind, str(count), "--data-dir", tmp, "--share", str(share), *extra]
        server = await Child.spawn(kind, "bench.simulator", *args)
        subscriber: Child | None = None
        try:
            hello = await server.ask()
            ready = time.perf_counter() - spawned
            targets = str(Path(tmp) / "targets.json")
            subscriber = await Child.spawn("subscriber", "bench.mqtt_subscriber", targets)
            online = await subscriber.ask()
            jobs = await server.ask("jobs")
            await asyncio.sleep(SETTLE_S)
            if profile:
                await server.ask("profile-start")
            before_pub, before_sub = await server.ask("mark"), await subscriber.ask("mark")
            cpu0, sub_cpu0 = server.cpu_s(), subscriber.cpu_s()
            await asyncio.sleep(seconds)
            after_pub, after_sub = await server.ask("mark"), await subscriber.ask("mark")
            cpu1, sub_cpu1 = server.cpu_s(), subscriber.cpu_s()
            rss, fds = server.ps.memory_info().rss, server.ps.num_fds()
            profile_text = str((await server.ask("profile-stop"))["profile"]) if profile else None
        finally:
            if subscriber is not None:
                await subscriber.quit()
            await server.quit()
    window = _f(after_pub, "t") - _f(before_pub, "t")
    published = _f(after_pub, "published") - _f(before_pub, "published")
    received = _f(after_sub, "messages") - _f(before_sub, "messages")
    cpu = cpu1 - cpu0
    run = Run(
        kind=kind,
        printers=count,
        share=share,
        printing=int(_f(jobs, "printing")),
        states=cast(dict[str, int], after_pub.get("states", {})),
        build_s=_f(hello, "build_s"),
        listen_s=_f(hello, "listen_s"),
        startup_s=_f(hello, "build_s") + _f(hello, "listen_s"),
        startup_cpu_s=_f(hello, "startup_cpu_s"),
        startup_sys_s=_f(hello, "startup_sys_s"),
        process_ready_s=ready,
        connect_s=_f(online, "connect_s"),
        rss_base_mb=_f(hello, "rss_base") / 1e6,
        rss_started_mb=_f(hello, "rss_started") / 1e6,
        rss_mb=rss / 1e6,
        rss_per_printer_kb=(rss - _f(hello, "rss_base")) / count / 1e3,
        fds=fds,
        nofile_hard=int(_f(cast(dict[str, object], hello["nofile"]), "hard")),
        window_s=window,
        cpu_pct=cpu / window * 100,
        cpu_us_per_report=cpu / max(published, 1) * 1e6,
        reports_per_s=published / window,
        received_per_s=received / window,
        mean_payload_bytes=(_f(after_sub, "bytes") - _f(before_sub, "bytes")) / max(received, 1),
        subscriber_cpu_pct=(sub_cpu1 - sub_cpu0) / window * 100,
        subscribers_lost=int(_f(after_sub, "lost")),
        loadavg_1min=os.getloadavg()[0],
    )
    return run, profile_text


def verdict(run: Run) -> str:
    """The budget column: how much of each budget this process used.

    The budget is for 1,000 printers; a smaller fleet is only shown against it (ok/OVER is
    judged from 1,000 up), because fixed costs make a linear extrapolation from 10 wrong.
    """
    if run.kind != "simulator":
        return "-"
    rss = run.rss_mb * 1e6 / BUDGET_RSS_BYTES
    cpu = run.cpu_pct / 100 / BUDGET_CPU_SHARE
    used = f"RSS {rss:.0%}, CPU {cpu:.0%}"
    if run.printers < BUDGET_PRINTERS:
        return used
    return f"{'ok' if rss <= 1 and cpu <= 1 else 'OVER'}: {used}"


def added_by_simulation(pairs: list[tuple[Run, Run]]) -> list[dict[str, float]]:
    """Simulator minus its baseline, per (size, share)."""
    return [
        {
            "printers": sim.printers,
            "share": sim.share,
            "startup_s": sim.startup_s - base.startup_s,
            "rss_mb": sim.rss_mb - base.rss_mb,
            "rss_per_printer_kb": sim.rss_per_printer_kb - base.rss_per_printer_kb,
            "cpu_pct": sim.cpu_pct - base.cpu_pct,
            "cpu_us_per_report": sim.cpu_us_per_report - base.cpu_us_per_report,
        }
        for sim, base in pairs
    ]


def report(pairs: list[tuple[Run, Run]], seconds: float) -> None:
    """Print the tables and write bench/results/simulator.json."""
    runs = [run for pair in pairs for run in pair]
    print_table(
        f"Simulator scale: mixed fleet ({', '.join(DEMO_MODELS)}), one MQTT/TLS subscriber "
        f"per printer in another process, {seconds:g} s window, {os.cpu_count()} cores. "
        f"Budget at {BUDGET_PRINTERS:,}: RSS <= {BUDGET_RSS_BYTES / 1e9:g} GB, "
        f"CPU <= {BUDGET_CPU_SHARE:.0%} of one core",
        [
            "run", "printers", "start-up s", "start-up CPU s", "subscribers online s", "RSS MB",
            "RSS/printer KB", "CPU % of one core", "CPU µs/report", "reports/s published",
            "messages/s received", "subscriber CPU %", "vs budget (share used)",
        ],
        [
            [
                r.label, r.printers, r.startup_s, r.startup_cpu_s, r.connect_s, round(r.rss_mb, 1),
                round(r.rss_per_printer_kb, 1), round(r.cpu_pct, 1), round(r.cpu_us_per_report, 1),
                round(r.reports_per_s, 1), round(r.received_per_s, 1),
                round(r.subscriber_cpu_pct, 1), verdict(r),
            ]
            for r in runs
        ],
    )  # fmt: skip
    added = added_by_simulation(pairs)
    print_table(
        "What simulation adds (simulator minus the transport baseline at the same message rate)",
        [
            "printers",
            "printing",
            "start-up s",
            "RSS MB",
            "RSS/printer KB",
            "CPU %",
            "CPU µs/report",
        ],
        [
            [int(a["printers"]), f"{a['share']:.0%}", *(round(v, 1) for v in list(a.values())[2:])]
            for a in added
        ],
    )
    path = write_json(
        "simulator",
        {
            "benchmark": "simulator",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "window_s": seconds,
            "budget": {
                "printers": BUDGET_PRINTERS,
                "rss_bytes": BUDGET_RSS_BYTES,
                "cpu_share_of_one_core": BUDGET_CPU_SHARE,
            },
            "runs": [asdict(r) | {"verdict": verdict(r)} for r in runs],
            "added_by_simulation": added,
        },
    )
    print(f"\nwrote {path}")


async def parent(sizes: list[int], shares: list[float], seconds: float, profile: bool) -> None:
    """Measure the simulator and its baseline at every size and share, then report."""
    pairs: list[tuple[Run, Run]] = []
    for count in sizes:
        for share in shares:
            sim, profile_text = await measure(
                "simulator", count, share, seconds, [], profile=profile
            )
            print(f"measured: {sim}", file=sys.stderr)
            if profile_text is not None:
                path = RESULTS / f"simulator_profile_{count}_{share:g}.txt"
                RESULTS.mkdir(exist_ok=True)
                path.write_text(profile_text)
                print(f"{profile_text}\nwrote {path}")
                continue
            rate = ["--rate", f"{sim.reports_per_s:.3f}"]
            size = ["--payload", str(max(1, round(sim.mean_payload_bytes)))]
            base, _ = await measure("transport", count, share, seconds, rate + size, profile=False)
            print(f"measured: {base}", file=sys.stderr)
            pairs.append((sim, base))
    if not profile:  # profiled CPU figures carry cProfile's overhead: not results
        report(pairs, seconds)


def main() -> None:
    """Command-line entry point (the parent, or one of the two child kinds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--printing",
        type=float,
        nargs="+",
        default=[0.5, 1.0],
        help="share(s) of the fleet printing during the window (default: 0.5 1.0)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the simulator child over the window (no baseline, no JSON)",
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=float, default=0.5, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--payload", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is None:
        if not all(0.0 <= share <= 1.0 for share in args.printing):
            parser.error("--printing shares must be between 0 and 1")
        asyncio.run(parent(args.sizes, args.printing, args.seconds, args.profile))
        return
    kind, count = args.child[0], int(args.child[1])
    if kind == "simulator":
        asyncio.run(simulator_child(count, args.data_dir, args.share))
    elif kind == "transport":
        asyncio.run(transport_child(count, args.data_dir, args.rate, args.payload))
    else:
        parser.error(f"unknown child kind {kind!r}")


if __name__ == "__main__":
    main()
