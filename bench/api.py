"""API benchmark: the real server (services, farm, uvicorn) holding 1,000 simulated printers.

Processes, so each one's CPU is its own: the simulator (one child: the mixed demo fleet, half
of it printing with the clock moved past PREPARE, so RUNNING printers report every second and
idle ones send a heartbeat), the server (one child: `open_services` on a fresh SQLite database,
the printers imported, uvicorn on 127.0.0.1), the WebSocket clients (one child holding 1 or
100 connections, each subscribed to every printer), and this parent, which times HTTP requests.

What is measured:
* `GET /api/v1/printers` — the whole fleet in one page (`limit=1000`) and the default page
  (100), sequential requests, p50 / p99 (budget: p50 ≤ 50 ms at 1,000 printers);
* `GET /api/v1/printers/{serial}/status` — one printer's full status, p50 / p99 (≤ 5 ms);
* report → WebSocket latency — the simulator notes `time.monotonic()` when a sampled printer
  publishes a report (keyed by its `sequence_id`); the clients note it when an `updates` frame
  carrying that printer's `sequence` arrives. CLOCK_MONOTONIC is one clock for every process on
  Linux. Coalescing means a client sees the newest report of a printer per frame, so each
  frame's sequence is matched to the publish of that very report. Budget: p99 ≤ 100 ms with 1
  and with 100 clients;
* server CPU (share of one core) over a window with no clients, 1 client and 100 clients, and
  per report merged.

Clients do not negotiate permessage-deflate by default (`--deflate` to measure it): browsers
do, and uvicorn then compresses every frame for every client separately.

    .venv/bin/python -m bench.api [--printers 1000] [--seconds 15] [--clients 1 100] [--deflate]
"""

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from bambufarm.api.app import create_app
from bambufarm.api.server import HttpServer
from bambufarm.simulator.node import PrinterNode
from bench.common import RESULTS, percentile, print_table, write_json
from bench.demo_fleet import (
    dump,
    farm_server,
    load,
    number,
    server_mark,
    start_fleet,
    start_prints,
    until_online,
)
from bench.mqtt_subscriber import raise_nofile, reply, stdin_lines
from bench.simulator import Child

SAMPLE = 50  # printers whose reports are timed
SETTLE_S = 5.0
REQUESTS = 200
STATUS_REQUESTS = 500
BUDGET_LIST_P50_MS = 50.0
BUDGET_STATUS_MS = 5.0
BUDGET_WS_P99_MS = 100.0


# --------------------------------------------------------------------------- child: simulator


def tap(node: PrinterNode, records: list[tuple[str, int, float]]) -> None:
    """Note when each push_status of `node` leaves the printer, keyed by its sequence_id."""
    publish = node.broker.publish
    serial = node.serial

    def timed(topic: str, payload: bytes) -> int:
        sent = time.monotonic()
        delivered = publish(topic, payload)
        body = orjson.loads(payload).get("print", {})
        if body.get("command") == "push_status" and "sequence_id" in body:
            records.append((serial, int(body["sequence_id"]), sent))
        return delivered

    node.broker.publish = timed  # type: ignore[method-assign]


async def simulator_child(data_dir: Path, count: int) -> None:
    """Run the mixed fleet; serve jobs (half print), samples and marks."""
    fleet, clock, path = await start_fleet(data_dir, count)
    # Printing printers report every second: sample among them (even indexes print).
    sampled = [node for index, node in enumerate(fleet.nodes) if index % 2 == 0][:SAMPLE]
    records: list[tuple[str, int, float]] = []
    for node in sampled:
        tap(node, records)
    reply({"manifest": str(path), "sampled": [node.serial for node in sampled]})
    try:
        async for line in stdin_lines():
            if line == "jobs":
                reply({"printing": start_prints(fleet, clock, every=2)})
            elif line == "clear":
                reply({"cleared": len(records)})
                records.clear()
            elif line.startswith("samples "):
                dump(line.removeprefix("samples "), records)
                reply({"samples": len(records)})
                records.clear()
            elif line == "mark":
                reply({"published": fleet.reports_published, "t": time.monotonic()})
            elif line == "quit":
                break
    finally:
        await fleet.close()


# --------------------------------------------------------------------------- child: server


async def server_child(
    manifest_path: Path, data_dir: Path, ssdp_port: int, *, freeze: bool = False
) -> None:
    """The server as `bambufarm serve` builds it, holding every printer of the manifest."""
    profiler: cProfile.Profile | None = None
    async with farm_server(manifest_path, data_dir, ssdp_port) as farm:
        if freeze:
            # Everything built so far (modules, the app, the printers) out of the collector's
            # reach: a full collection then walks only what changed since.
            gc.freeze()
        health = LoopHealth()
        watch = asyncio.create_task(health.watch())
        async with HttpServer(create_app(farm.services), host="127.0.0.1", port=0) as server:
            reply({"url": server.url, "key": farm.key, "import_s": farm.import_s})
            async for line in stdin_lines():
                if line == "mark":
                    reply({**server_mark(farm.services), **health.take()})
                elif line == "profile-start":
                    profiler = cProfile.Profile()
                    profiler.enable()
                    reply({})
                elif line.startswith("profile-stop ") and profiler is not None:
                    profiler.disable()
                    write_profile(profiler, line.removeprefix("profile-stop "))
                    reply({})
                elif line == "quit":
                    break
        watch.cancel()


class LoopHealth:
    """The server loop's worst lateness and the full garbage collections between two marks."""

    def __init__(self) -> None:
        self.lag_max = 0.0
        self.gc_full = 0
        self.gc_full_s = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_full += 1
            self.gc_full_s += time.perf_counter() - self._gc_started

    async def watch(self) -> None:
        """Wake every 10 ms and note how late each wake-up was."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.lag_max = max(self.lag_max, loop.time() - due)

    def take(self) -> dict[str, float]:
        """The figures since the last call, reset."""
        figures = {
            "lag_max_ms": round(self.lag_max * 1000, 1),
            "gc_full": self.gc_full,
            "gc_full_ms": round(self.gc_full_s * 1000, 1),
            "gc_tracked": len(gc.get_objects()),
        }
        self.lag_max, self.gc_full, self.gc_full_s = 0.0, 0, 0.0
        return figures


def write_profile(profiler: cProfile.Profile, path: str) -> None:
    """The profile's top functions by own time and by cumulative time, as text."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(40)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(40)
    Path(path).write_text(out.getvalue())


# --------------------------------------------------------------------------- child: clients


async def clients_child(url: str, key: str, count: int, sampled: set[str], deflate: bool) -> None:
    """`count` WebSocket clients subscribed to every printer; time the sampled printers."""
    from websockets.asyncio.client import ClientConnection, connect  # noqa: PLC0415

    raise_nofile(count + 100)
    # The measuring instrument must not pause: a window's records (~70,000 tuples at 100
    # clients) would otherwise bring full collections that count as WebSocket latency.
    gc.disable()
    ws_url = url.replace("http://", "ws://") + "/api/v1/ws"
    records: list[tuple[str, int, float]] = []
    counts = {"frames": 0, "bytes": 0}

    async def open_one() -> ClientConnection:
        socket = await connect(
            ws_url,
            additional_headers={"Authorization": f"Bearer {key}"},
            compression="deflate" if deflate else None,
            max_size=None,
            proxy=None,
        )
        await socket.recv()  # hello
        await socket.send('{"type": "subscribe", "topics": ["printers"]}')
        return socket

    async def read(socket: ClientConnection) -> None:
        async for message in socket:
            now = time.monotonic()
            counts["frames"] += 1
            counts["bytes"] += len(message)
            frame = orjson.loads(message)
            if frame["type"] != "updates":
                continue
            for item in frame["printers"]:
                serial = item["serial"]
                if serial in sampled and item["sequence"] is not None:
                    records.append((serial, item["sequence"], now))

    sockets = [await open_one() for _ in range(count)]
    readers = [asyncio.create_task(read(socket)) for socket in sockets]
    reply({"connected": len(sockets)})
    try:
        async for line in stdin_lines():
            if line == "clear":
                reply({"cleared": len(records)})
                records.clear()
                counts.update(frames=0, bytes=0)
            elif line.startswith("samples "):
                dump(line.removeprefix("samples "), records)
                reply({"samples": len(records), **counts})
                records.clear()
            elif line == "quit":
                break
    finally:
        for socket in sockets:
            await socket.close()
        await asyncio.gather(*readers, return_exceptions=True)


# --------------------------------------------------------------------------- parent


def ms_summary(samples: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in ms of samples given in seconds."""
    in_ms = [s * 1000 for s in samples]
    return {
        "p50_ms": round(statistics.median(in_ms), 2),
        "p99_ms": round(percentile(in_ms, 99), 2),
        "n": len(in_ms),
    }


async def timed_gets(client: httpx.AsyncClient, paths: Sequence[str]) -> list[float]:
    """Seconds per sequential GET (each must answer 200)."""
    times = []
    for path in paths:
        started = time.perf_counter()
        response = await client.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:200]
    return times


def latencies(published: list[list[Any]], received: list[list[Any]]) -> list[float]:
    """Report → frame delays in seconds for every (serial, sequence) seen on both sides."""
    sent = {(serial, int(seq)): t for serial, seq, t in published}
    return [
        t - sent[(serial, int(seq))] for serial, seq, t in received if (serial, int(seq)) in sent
    ]


async def cpu_window(
    server: Child, seconds: float, profile_to: str | None = None
) -> dict[str, float]:
    """The server's CPU share of one core and µs per report over a window (optionally
    profiled into the text file `profile_to`: the numbers then include cProfile's cost)."""
    if profile_to is not None:
        await server.ask("profile-start")
    before = await server.ask("mark")
    await asyncio.sleep(seconds)
    after = await server.ask("mark")
    if profile_to is not None:
        await server.ask(f"profile-stop {profile_to}")
        print(f"profile written to {profile_to}", file=sys.stderr)
    window = number(after, "t") - number(before, "t")
    cpu = number(after, "cpu") - number(before, "cpu")
    reports = number(after, "reports") - number(before, "reports")
    return {
        "window_s": round(window, 1),
        "cpu_pct": round(cpu / window * 100, 1),
        "reports_per_s": round(reports / window, 1),
        "cpu_us_per_report": round(cpu / max(reports, 1) * 1e6, 1),
        "loop_lag_max_ms": number(after, "lag_max_ms"),
        "gc_full": number(after, "gc_full"),
        "gc_full_ms": number(after, "gc_full_ms"),
        "gc_tracked": number(after, "gc_tracked"),
    }


async def with_clients(
    sim: Child, server: Child, hello: dict[str, Any], sampled: list[str], *, count: int, args: Any
) -> dict[str, Any]:
    """Connect `count` clients, measure latency and server CPU over a window."""
    clients = await Child.spawn(
        f"clients-{count}", "bench.api", "--child", "clients", "--url", str(hello["url"]),
        "--key", str(hello["key"]), "--count", str(count), "--sampled", ",".join(sampled),
        *(["--deflate"] if args.deflate else []),
    )  # fmt: skip
    try:
        await clients.ask()
        await asyncio.sleep(SETTLE_S)  # the snapshots of 1,000 printers pass first
        await sim.ask("clear")
        await clients.ask("clear")
        others_before = (sim.cpu_s(), clients.cpu_s(), time.monotonic())
        cpu = await cpu_window(
            server,
            args.seconds,
            str(RESULTS / f"api-profile-{count}.txt") if args.profile else None,
        )
        others_after = (sim.cpu_s(), clients.cpu_s(), time.monotonic())
        received = await clients.ask(f"samples {args.scratch}/received.json")
        await sim.ask(f"samples {args.scratch}/published.json")
    finally:
        await clients.quit()
    delays = latencies(
        load(f"{args.scratch}/published.json"), load(f"{args.scratch}/received.json")
    )
    elapsed = others_after[2] - others_before[2]
    return {
        "clients": count,
        **cpu,
        "sim_cpu_pct": round((others_after[0] - others_before[0]) / elapsed * 100, 1),
        "clients_cpu_pct": round((others_after[1] - others_before[1]) / elapsed * 100, 1),
        **ms_summary(delays),
        "frames_per_s": round(number(received, "frames") / args.seconds, 1),
        "mb_per_s": round(number(received, "bytes") / args.seconds / 1e6, 2),
    }


async def parent(args: Any) -> None:
    """Run the simulator and the server; measure REST, then WebSocket clients."""
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        args.scratch = tmp
        sim = await Child.spawn(
            "simulator", "bench.api", "--child", "sim", "--data-dir", f"{tmp}/sim",
            "--count", str(args.printers),
        )  # fmt: skip
        try:
            sim_hello = await sim.ask()
            sampled = list(sim_hello["sampled"])
            printing = (await sim.ask("jobs"))["printing"]
            server = await Child.spawn(
                "server", "bench.api", "--child", "server", "--manifest",
                str(sim_hello["manifest"]), "--data-dir", f"{tmp}/server",
                "--ssdp-port", str(random.randint(40000, 60000)),
                *(["--gc-freeze"] if args.gc_freeze else []),
            )  # fmt: skip
            try:
                hello = await server.ask()
                online_s = await until_online(server, args.printers)
                print(
                    f"{args.printers} printers online in {online_s:.1f} s, {printing} printing",
                    file=sys.stderr,
                )
                await asyncio.sleep(SETTLE_S)
                rest = await measure_rest(str(hello["url"]), str(hello["key"]), sampled)
                baseline_profile = str(RESULTS / "api-profile-0.txt") if args.profile else None
                rows = [{"clients": 0, **await cpu_window(server, args.seconds, baseline_profile)}]
                for count in args.clients:
                    rows.append(
                        await with_clients(sim, server, hello, sampled, count=count, args=args)
                    )
                    print(f"measured: {rows[-1]}", file=sys.stderr)
            finally:
                await server.quit()
        finally:
            await sim.quit()
    report(args, rest, rows, {"online_s": online_s, "import_s": number(hello, "import_s")})


async def measure_rest(url: str, key: str, serials: list[str]) -> dict[str, dict[str, float]]:
    """Sequential GETs of the printer list (whole and default page) and of one status."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        whole = await timed_gets(client, ["/api/v1/printers?limit=1000"] * REQUESTS)
        page = await timed_gets(client, ["/api/v1/printers"] * REQUESTS)
        status = await timed_gets(
            client,
            [
                f"/api/v1/printers/{serials[i % len(serials)]}/status"
                for i in range(STATUS_REQUESTS)
            ],
        )
    return {
        "list_1000": ms_summary(whole),
        "list_100": ms_summary(page),
        "status": ms_summary(status),
    }


def report(
    args: Any,
    rest: dict[str, dict[str, float]],
    rows: list[dict[str, Any]],
    start: dict[str, float],
) -> None:
    """Print the tables and write bench/results/api.json."""
    print_table(
        f"REST with {args.printers} printers (sequential requests, no WebSocket clients)",
        ["request", "p50 ms", "p99 ms", "n", "budget"],
        [
            ["GET /api/v1/printers?limit=1000", rest["list_1000"]["p50_ms"],
             rest["list_1000"]["p99_ms"], rest["list_1000"]["n"], f"p50 ≤ {BUDGET_LIST_P50_MS:g}"],
            ["GET /api/v1/printers (100)", rest["list_100"]["p50_ms"], rest["list_100"]["p99_ms"],
             rest["list_100"]["n"], f"p50 ≤ {BUDGET_LIST_P50_MS:g}"],
            ["GET /api/v1/printers/{serial}/status", rest["status"]["p50_ms"],
             rest["status"]["p99_ms"], rest["status"]["n"], f"≤ {BUDGET_STATUS_MS:g}"],
        ],
    )  # fmt: skip
    print_table(
        f"Report → WebSocket latency and server CPU ({args.printers} printers, "
        f"{'deflate' if args.deflate else 'no compression'})",
        ["clients", "server CPU %", "reports/s", "CPU µs/report", "p50 ms", "p99 ms", "samples",
         "frames/s", "MB/s", "loop lag max ms", "budget p99"],
        [
            [r["clients"], r["cpu_pct"], r["reports_per_s"], r["cpu_us_per_report"],
             r.get("p50_ms", "-"), r.get("p99_ms", "-"), r.get("n", "-"),
             r.get("frames_per_s", "-"), r.get("mb_per_s", "-"), r["loop_lag_max_ms"],
             f"≤ {BUDGET_WS_P99_MS:g}" if r["clients"] else "-"]
            for r in rows
        ],
    )  # fmt: skip
    print(
        f"\nstart-up: {args.printers} printers imported in {start['import_s']:.2f} s, all online "
        f"{start['online_s']:.1f} s later"
    )
    path = write_json(
        "api",
        {"printers": args.printers, "deflate": args.deflate, "rest": rest, "rows": rows, **start},
    )
    print(f"wrote {path}")


def main() -> None:
    """Entry point: the parent, or one of its children (`--child`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 100])
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the client windows")
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() in the server once it is up, as `bambufarm serve` does",
    )
    parser.add_argument("--child", choices=["sim", "server", "clients"])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--count", type=int)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--ssdp-port", type=int, default=2021)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--sampled", default="")
    args = parser.parse_args()
    if args.child == "sim":
        asyncio.run(simulator_child(args.data_dir, args.count))
    elif args.child == "server":
        asyncio.run(
            server_child(args.manifest, args.data_dir, args.ssdp_port, freeze=args.gc_freeze)
        )
    elif args.child == "clients":
        sampled = set(filter(None, args.sampled.split(",")))
        asyncio.run(clients_child(args.url, args.key, args.count, sampled, args.deflate))
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
