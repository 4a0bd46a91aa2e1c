"""Dashboard benchmark: Chromium showing the fleet dashboard while N simulated printers print.

Processes: the simulator (one child: the mixed demo fleet, every printer printing, the clock
moved past PREPARE so each reports about once a second), the server (one child: as `bambufarm
serve` builds it, on a fresh SQLite database, with an admin whose password this run made up),
Chromium (Debian's `/usr/bin/chromium`, headless, launched by Playwright with the flags of
tests/browser/conftest.py plus `--enable-precise-memory-info`), and this parent, which drives
the page and also holds a plain WebSocket client subscribed like the page.

What is measured:
* report → card DOM update: for a sample of printers the simulator replaces `layer_num` of
  every push_status with a counter (a marker) and notes `time.time()` as the report leaves;
  the card shows it as "<marker>/<total>" in its Layer field, where a MutationObserver in the
  page notes `performance.timeOrigin + performance.now()`. Two readings of the same machine's
  wall clock, not one monotonic clock: their offset is measured at the start and the end of
  the window and printed. Also the next animation frame after each update (when it can be
  drawn). Budget: p99 ≤ 250 ms;
* baseline in the same run: the same marker's report → WebSocket-frame latency at the plain
  client (CLOCK_MONOTONIC in both processes), alone before the browser opens and alongside
  it; the browser's share is, per report seen by both, the page's DOM update minus the
  client's frame (wall clock on both sides). The client negotiates permessage-deflate, as
  Chromium does;
* the page's main thread: busy ms per wall second (CDP `Performance.getMetrics`
  TaskDuration, with its script / layout / style split), long tasks (PerformanceObserver
  `longtask`: count and longest; budget: none over 100 ms), and the renderer's CPU;
* the page's memory (JS heap, DOM nodes) after the first load and after `--minutes`, each
  before and after a forced collection.

Coalescing: the server sends the newest status of a printer per frame, so a report
overtaken by the next one is never shown; only the reports that reached the card count.

    .venv/bin/python -m bench.ui [--printers 500] [--minutes 10] [--baseline-seconds 30]
"""

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from bambufarm.api.app import create_app
from bambufarm.api.server import HttpServer
from bambufarm.simulator.node import PrinterNode
from bench import ui_probe
from bench.common import percentile, print_table, write_json
from bench.demo_fleet import (
    USER,
    dump,
    farm_server,
    load,
    number,
    server_mark,
    start_fleet,
    start_prints,
    until_online,
)
from bench.mqtt_subscriber import reply, stdin_lines
from bench.simulator import Child

SAMPLE = 50  # printers whose reports carry a marker, spread over the fleet
SETTLE_S = 5.0
DRAIN_S = 5.0  # how often the page's records are pulled out of it
MEMORY_EVERY_S = 60.0
PAGE_TIMEOUT_MS = 180_000  # 500 cards on a loaded 2-core machine, with margin
BUDGET_DOM_P99_MS = 250.0
BUDGET_LONG_TASK_MS = 100.0
BUDGET_WS_P99_MS = 100.0  # bench/api's budget for the frame itself
# As tests/browser/conftest.py launches it, plus exact heap figures for performance.memory.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--enable-precise-memory-info",
)
VIEWPORT: ViewportSize = {"width": 1366, "height": 900}


# --------------------------------------------------------------------------- child: simulator


def stamp(node: PrinterNode, records: list[tuple[str, int, float, float]]) -> None:
    """Put a counter into `layer_num` of each push_status of `node`; note when it leaves."""
    publish = node.broker.publish
    serial = node.serial
    counter = iter(range(1, 1 << 62))

    def stamped(topic: str, payload: bytes) -> int:
        message = orjson.loads(payload)
        body = message.get("print")
        if not isinstance(body, dict) or body.get("command") != "push_status":
            return publish(topic, payload)
        marker = next(counter)
        body["layer_num"] = marker
        payload = orjson.dumps(message)
        records.append((serial, marker, time.monotonic(), time.time()))
        return publish(topic, payload)

    node.broker.publish = stamped  # type: ignore[method-assign]


async def simulator_child(data_dir: Path, count: int) -> None:
    """Run the mixed fleet, all printing; serve the marker records."""
    fleet, clock, path = await start_fleet(data_dir, count)
    # Spread over the fleet and its models: a fixed stride would land on a few models only
    # (every 10th of 6 cycling models is 3 of them). Seeded, so every run times the same ones.
    picked = sorted(random.Random(count).sample(range(count), min(SAMPLE, count)))
    sampled = [fleet.nodes[index] for index in picked]
    records: list[tuple[str, int, float, float]] = []
    for node in sampled:
        stamp(node, records)
    printing = start_prints(fleet, clock)
    reply(
        {
            "manifest": str(path),
            "sampled": [node.serial for node in sampled],
            "printing": printing,
        }
    )
    try:
        async for line in stdin_lines():
            if line == "clear":
                reply({"cleared": len(records)})
                records.clear()
            elif line.startswith("samples "):
                dump(line.removeprefix("samples "), records)
                reply({"samples": len(records)})
                records.clear()
            elif line == "quit":
                break
    finally:
        await fleet.close()


# --------------------------------------------------------------------------- child: server


async def server_child(manifest_path: Path, data_dir: Path, ssdp_port: int) -> None:
    """The server as `bambufarm serve` builds it, with every printer of the manifest."""
    async with (
        farm_server(manifest_path, data_dir, ssdp_port) as farm,
        HttpServer(create_app(farm.services), host="127.0.0.1", port=0) as server,
    ):
        # Over the pipe to the parent only: the password is made up for this run.
        reply({"url": server.url, "key": farm.key, "password": farm.password})
        async for line in stdin_lines():
            if line == "mark":
                reply(server_mark(farm.services))
            elif line == "quit":
                break


# --------------------------------------------------------------------------- parent


def ms_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max in ms (samples already in ms)."""
    if not samples_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "n": 0}
    return {
        "p50_ms": round(statistics.median(samples_ms), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "max_ms": round(max(samples_ms), 2),
        "n": len(samples_ms),
    }


def delays(
    published: list[list[Any]], received: Sequence[Sequence[Any]], *, wall: bool
) -> list[float]:
    """Report → arrival in ms for each (serial, marker) seen on both sides. `wall`: the
    arrival is page epoch ms, compared with `time.time()`; else monotonic seconds."""
    sent = {(s, int(m)): (wall_s if wall else mono) for s, m, mono, wall_s in published}
    out = []
    for serial, marker, at in received:
        start = sent.get((serial, int(marker)))
        if start is not None:
            out.append(at - start * 1000 if wall else (at - start) * 1000)
    return out


def browser_share(
    frames: Sequence[tuple[str, int, float, float]], dom: Sequence[Sequence[Any]]
) -> list[float]:
    """Per report seen by both: page DOM update (epoch ms) minus the plain client's frame
    (`time.time()`), in ms. The server writes the frame to both sockets in the same pass."""
    at_client = {(serial, marker): wall for serial, marker, _, wall in frames}
    out = []
    for serial, marker, at in dom:
        wall = at_client.get((serial, int(marker)))
        if wall is not None:
            out.append(at - wall * 1000)
    return out


async def sim_samples(sim: Child, path: str) -> list[list[Any]]:
    """The simulator's marker records since the last clear."""
    await sim.ask(f"samples {path}")
    return load(path)


async def open_dashboard(browser: Browser, url: str, password: str, count: int) -> Page:
    """A signed-in page showing every card with the live feed open."""
    context = await browser.new_context(
        base_url=url, viewport=VIEWPORT, color_scheme="light", locale="en-GB"
    )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    await ui_probe.install(context)
    signed = await context.request.post(
        "/api/v1/auth/login", data={"username": USER, "password": password}
    )
    assert signed.ok, await signed.text()
    page = await context.new_page()
    page.on("pageerror", lambda error: print(f"page error: {error}", file=sys.stderr))
    await page.goto("/")
    await page.wait_for_function(
        "n => document.querySelectorAll('printer-card').length >= n", arg=count
    )
    await page.wait_for_selector(".live-state[data-state=open]")
    return page


async def window(
    page: Page, cdp: Any, seconds: float, records: dict[str, list[Any]]
) -> list[dict[str, float]]:
    """Let the page run for `seconds`, draining its records; the heap every minute."""
    timeline = []
    started = time.monotonic()
    next_memory = started + MEMORY_EVERY_S
    while (now := time.monotonic()) - started < seconds:
        await asyncio.sleep(min(DRAIN_S, seconds - (now - started)))
        drained = await ui_probe.drain(page)
        for key in ("dom", "frames", "longtasks"):
            records[key].extend(drained[key])
        if time.monotonic() >= next_memory:
            next_memory += MEMORY_EVERY_S
            m = await ui_probe.metrics(cdp, page)
            timeline.append(
                {
                    "t_s": round(time.monotonic() - started, 1),
                    "heap_mb": round(m["JSHeapUsedSize"] / 1e6, 2),
                    "nodes": m["Nodes"],
                }
            )
            print(f"  {timeline[-1]}", file=sys.stderr)
    return timeline


async def browser_run(
    args: Any, sim: Child, server: Child, hello: dict[str, Any], sampled: list[str]
) -> dict[str, Any]:
    """Baseline with the plain client alone, then the page and the client together."""
    scratch = args.scratch
    client = ui_probe.FrameClient(str(hello["url"]), str(hello["key"]), set(sampled))
    await client.start()
    try:
        await asyncio.sleep(SETTLE_S)  # the snapshots pass first
        await sim.ask("clear")
        client.take()
        gc.disable()  # the instrument must not pause inside a window
        await asyncio.sleep(args.baseline_seconds)
        alone_items = client.items / args.baseline_seconds
        alone = delays(
            await sim_samples(sim, f"{scratch}/p0.json"),
            [(serial, marker, mono) for serial, marker, mono, _ in client.take()],
            wall=False,
        )
        gc.enable()
        print(f"baseline: {ms_summary(alone)}", file=sys.stderr)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=list(CHROMIUM_ARGS)
            )
            try:
                loading = time.perf_counter()
                page = await open_dashboard(
                    browser, str(hello["url"]), str(hello["password"]), args.printers
                )
                load_s = time.perf_counter() - loading
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("Performance.enable")
                await cdp.send("HeapProfiler.enable")
                await asyncio.sleep(SETTLE_S)
                watched = await ui_probe.watch_cards(page, sampled)
                loaded = await ui_probe.drain(page)
                if loaded["error"]:
                    raise RuntimeError(f"no long-task timing in this Chromium: {loaded['error']}")
                load_tasks = loaded["longtasks"]
                await ui_probe.collect_garbage(cdp)
                start = await ui_probe.metrics(cdp, page)
                clock_start = await ui_probe.clock_offset(page, time.time)
                await sim.ask("clear")
                client.take()
                # What the forced collection and the reads above did is not the page's.
                await ui_probe.drain(page)
                records: dict[str, list[Any]] = {"dom": [], "frames": [], "longtasks": []}
                cpu_before = (ui_probe.renderer_cpu_s(), number(await server.ask("mark"), "cpu"))
                began = time.monotonic()
                gc.disable()
                timeline = await window(page, cdp, args.minutes * 60, records)
                gc.enable()
                elapsed = time.monotonic() - began
                end = await ui_probe.metrics(cdp, page)
                cpu_after = (ui_probe.renderer_cpu_s(), number(await server.ask("mark"), "cpu"))
                clock_end = await ui_probe.clock_offset(page, time.time)
                published = await sim_samples(sim, f"{scratch}/p1.json")
                with_page_items = client.items / elapsed
                frames = client.take()
                beside = delays(published, [(s, m, mono) for s, m, mono, _ in frames], wall=False)
                drained = await ui_probe.drain(page)
                records["dom"].extend(drained["dom"])
                records["frames"].extend(drained["frames"])
                await ui_probe.collect_garbage(cdp)
                end_gc = await ui_probe.metrics(cdp, page)
            finally:
                await browser.close()
    finally:
        gc.enable()
        await client.close()
    return {
        "printers": args.printers,
        "sampled": len(sampled),
        "watched_cards": watched,
        "window_s": round(elapsed, 1),
        "page_load_s": round(load_s, 2),
        "updates_per_s": {"alone": round(alone_items, 1), "with_page": round(with_page_items, 1)},
        "ws_alone": ms_summary(alone),
        "ws_with_page": ms_summary(beside),
        "dom": ms_summary(delays(published, records["dom"], wall=True)),
        "frame": ms_summary(delays(published, records["frames"], wall=True)),
        "share": ms_summary(browser_share(frames, records["dom"])),
        "reports_sent": len(published),
        "long_tasks": [[round(s, 1), round(d, 1)] for s, d in records["longtasks"]],
        "load_long_tasks": [[round(s, 1), round(d, 1)] for s, d in load_tasks],
        "metrics": {"start": start, "end": end, "end_after_gc": end_gc},
        "timeline": timeline,
        "clock": {"start": clock_start, "end": clock_end},
        "renderer_cpu_pct": round((cpu_after[0] - cpu_before[0]) / elapsed * 100, 1),
        "server_cpu_pct": round((cpu_after[1] - cpu_before[1]) / elapsed * 100, 1),
    }


async def parent(args: Any) -> None:
    """Run the simulator and the server, then the baseline and the page."""
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        args.scratch = tmp
        sim = await Child.spawn(
            "simulator", "bench.ui", "--child", "sim", "--data-dir", f"{tmp}/sim",
            "--count", str(args.printers),
        )  # fmt: skip
        try:
            sim_hello = await sim.ask()
            sampled = list(sim_hello["sampled"])
            server = await Child.spawn(
                "server", "bench.ui", "--child", "server", "--manifest",
                str(sim_hello["manifest"]), "--data-dir", f"{tmp}/server",
                "--ssdp-port", str(random.randint(40000, 60000)),
            )  # fmt: skip
            try:
                hello = await server.ask()
                online_s = await until_online(server, args.printers)
                print(
                    f"{args.printers} printers online in {online_s:.1f} s, "
                    f"{sim_hello['printing']} printing",
                    file=sys.stderr,
                )
                await asyncio.sleep(SETTLE_S)
                result = await browser_run(args, sim, server, hello, sampled)
            finally:
                await server.quit()
        finally:
            await sim.quit()
    report(args, result)


def verdict(value: float, budget: float) -> str:
    """pass / miss against a ceiling."""
    return "pass" if value <= budget else "miss"


def latency_rows(r: dict[str, Any]) -> list[list[object]]:
    """The latency table: one row per place a report is seen, then the browser's share."""
    rows: list[list[object]] = []
    for label, key, budget in (
        ("WebSocket frame, plain client alone (baseline)", "ws_alone", BUDGET_WS_P99_MS),
        ("WebSocket frame, plain client beside the page", "ws_with_page", BUDGET_WS_P99_MS),
        ("card DOM update (MutationObserver)", "dom", BUDGET_DOM_P99_MS),
        ("next animation frame after it", "frame", None),
    ):
        s = r[key]
        limit = f"p99 ≤ {budget:g}" if budget else "-"
        result = verdict(s["p99_ms"], budget) if budget and s["n"] else "-"
        rows.append([label, s["p50_ms"], s["p99_ms"], s["max_ms"], s["n"], limit, result])
    share = r["share"]
    rows.append(
        [
            "browser's share (DOM update minus frame at the plain client, per report)",
            share["p50_ms"],
            share["p99_ms"],
            share["max_ms"],
            share["n"],
            "-",
            "-",
        ]
    )
    return rows


def page_rows(r: dict[str, Any]) -> list[list[object]]:
    """The main-thread and memory table."""
    window_s = float(r["window_s"])
    start, end, end_gc = r["metrics"]["start"], r["metrics"]["end"], r["metrics"]["end_after_gc"]

    def busy(name: str) -> float:
        return round(float(end[name] - start[name]) / window_s * 1000, 1)

    def mb(values: dict[str, float], name: str = "JSHeapUsedSize") -> float:
        return round(values[name] / 1e6, 2)

    parts = ("ScriptDuration", "RecalcStyleDuration", "LayoutDuration")
    other = round(busy("TaskDuration") - sum(busy(name) for name in parts), 1)
    longest = max((d for _, d in r["long_tasks"]), default=0.0)
    load_longest = max((d for _, d in r["load_long_tasks"]), default=0.0)
    updates = r["updates_per_s"]["with_page"]
    per_update_us = (end["TaskDuration"] - start["TaskDuration"]) / max(updates * window_s, 1)
    minutes = f"{window_s / 60:.1f} min"
    precise = "performance.memory.usedJSHeapSize"
    clock = r["clock"]
    error = max(clock["start"]["uncertainty_ms"], clock["end"]["uncertainty_ms"])
    heap_pair = f"{mb(start, precise)} / {mb(end_gc, precise)}"
    nodes_pair = f"{start['Nodes']:.0f} / {end_gc['Nodes']:.0f}"
    return [
        ["main thread busy, ms per s (TaskDuration)", busy("TaskDuration"), "-", "-"],
        ["  script, ms per s", busy("ScriptDuration"), "-", "-"],
        ["  style recalc, ms per s", busy("RecalcStyleDuration"), "-", "-"],
        ["  layout, ms per s", busy("LayoutDuration"), "-", "-"],
        ["  other (paint, compositing, GC, IPC), ms per s", other, "-", "-"],
        ["printer updates per s (plain client's count)", updates, "-", "-"],
        ["main thread µs per printer update", round(per_update_us * 1e6, 1), "-", "-"],
        ["renderer CPU, % of one core", r["renderer_cpu_pct"], "-", "-"],
        ["server CPU, % of one core", r["server_cpu_pct"], "-", "-"],
        ["long tasks in the window (count)", len(r["long_tasks"]), "-", "-"],
        [
            "longest task in the window, ms",
            round(longest, 1),
            f"≤ {BUDGET_LONG_TASK_MS:g}",
            verdict(longest, BUDGET_LONG_TASK_MS),
        ],
        [
            f"first load: long tasks / longest ms ({r['page_load_s']} s to every card)",
            f"{len(r['load_long_tasks'])} / {load_longest:.1f}",
            "(not in the window)",
            "-",
        ],
        ["JS heap used at start, MB (after GC)", mb(start), "-", "-"],
        [f"JS heap used after {minutes}, MB", mb(end), "-", "-"],
        [f"JS heap used after {minutes}, MB (after GC)", mb(end_gc), "-", "-"],
        [f"{precise} start / end (after GC), MB", heap_pair, "-", "-"],
        ["DOM nodes start / end (after GC)", nodes_pair, "-", "-"],
        [
            "page clock minus time.time(), start / end, ms",
            f"{clock['start']['offset_ms']:.2f} / {clock['end']['offset_ms']:.2f} (± {error:.2f})",
            "-",
            "-",
        ],
    ]


def report(args: Any, r: dict[str, Any]) -> None:
    """Print the tables and write bench/results/ui.json."""
    print_table(
        f"Report → card latency ({r['printers']} printers printing, {r['watched_cards']} cards "
        f"timed, {r['window_s']:.0f} s window)",
        ["measured at", "p50 ms", "p99 ms", "max ms", "samples", "budget", "result"],
        latency_rows(r),
    )
    print_table(
        "Page main thread and memory", ["measure", "value", "budget", "result"], page_rows(r)
    )
    path = write_json("ui", {"minutes": args.minutes, **r})
    print(f"wrote {path}")


def main() -> None:
    """Entry point: the parent, or one of its children (`--child`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--printers", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--child", choices=["sim", "server"])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--count", type=int)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--ssdp-port", type=int, default=2021)
    args = parser.parse_args()
    if args.child == "sim":
        asyncio.run(simulator_child(args.data_dir, args.count))
    elif args.child == "server":
        asyncio.run(server_child(args.manifest, args.data_dir, args.ssdp_port))
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
