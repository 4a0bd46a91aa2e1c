"""The instruments of bench/ui.py: what it puts into the dashboard page (long-task and card
observers, and the reads), the plain WebSocket client of its baseline, the renderer's CPU.

The page's clock is `performance.timeOrigin + performance.now()` (ms since the Unix epoch,
from the machine's wall clock at navigation plus the page's monotonic timer); the bench
process stamps reports with `time.time()`. Both read the same machine's clock, but they are
not one clock: `clock_offset` measures how far apart they are (bracketed by a round trip),
at the start and the end of the window, so the table says how much to trust a millisecond.

Every record is kept in page arrays that the bench drains every few seconds, so the
instrument's own garbage stays out of the heap figures.
"""

import asyncio
import time
from typing import Any, cast

import orjson
import psutil  # type: ignore[import-untyped]
from playwright.async_api import BrowserContext, CDPSession, Page

# Installed before any of the page's scripts run (`add_init_script`), so `buffered` long
# tasks from the first load are kept too.
INIT_SCRIPT = """
(() => {
  const probe = { longtasks: [], dom: [], frames: [], pending: [], frameQueued: false };
  window.__bfBench = probe;
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        probe.longtasks.push([entry.startTime, entry.duration]);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (err) {
    probe.longtaskError = String(err);
  }
})();
"""

# Watch the layer field of each sampled card: the bench stamps a marker into `layer_num`,
# so the text "<marker>/<total>" names the report it shows. MutationObserver callbacks run
# as a microtask right after the task that changed the DOM (the WebSocket message handler),
# so their time is the DOM update's; the next requestAnimationFrame is when it can be drawn.
WATCH_SCRIPT = """
(serials) => {
  const probe = window.__bfBench;
  const clock = () => performance.timeOrigin + performance.now();
  const onFrame = () => {
    const now = clock();
    for (const [serial, marker] of probe.pending) probe.frames.push([serial, marker, now]);
    probe.pending = [];
    probe.frameQueued = false;
  };
  let watched = 0;
  for (const serial of serials) {
    const card = document.querySelector(`printer-card[data-serial="${CSS.escape(serial)}"]`);
    const field = card && card.querySelector('dd[data-field="layer"]');
    if (!field) continue;
    new MutationObserver(() => {
      const now = clock();
      const marker = parseInt(field.textContent, 10);
      if (!Number.isFinite(marker)) return;
      probe.dom.push([serial, marker, now]);
      probe.pending.push([serial, marker]);
      if (!probe.frameQueued) {
        probe.frameQueued = true;
        requestAnimationFrame(onFrame);
      }
    }).observe(field, { childList: true, characterData: true, subtree: true });
    watched += 1;
  }
  return watched;
}
"""

DRAIN_SCRIPT = """
() => {
  const probe = window.__bfBench;
  const out = { dom: probe.dom, frames: probe.frames, longtasks: probe.longtasks };
  out.error = probe.longtaskError || null;
  probe.dom = [];
  probe.frames = [];
  probe.longtasks = [];
  return out;
}
"""

CLOCK_SCRIPT = "() => performance.timeOrigin + performance.now()"

MEMORY_SCRIPT = """
() => performance.memory ? performance.memory.usedJSHeapSize : null
"""

# Chromium's cumulative counters (CDP Performance.getMetrics) that the table uses.
METRICS = (
    "TaskDuration",
    "ScriptDuration",
    "LayoutDuration",
    "RecalcStyleDuration",
    "JSHeapUsedSize",
    "JSHeapTotalSize",
    "Nodes",
    "JSEventListeners",
    "LayoutCount",
    "RecalcStyleCount",
)


async def install(context: BrowserContext) -> None:
    """Add the long-task observer to every page the context opens."""
    await context.add_init_script(INIT_SCRIPT)


async def watch_cards(page: Page, serials: list[str]) -> int:
    """Observe the layer field of each sampled card; how many cards were found."""
    return int(await page.evaluate(WATCH_SCRIPT, serials))


async def drain(page: Page) -> dict[str, Any]:
    """The records since the last drain: `dom`, `frames` ([serial, marker, epoch ms]) and
    `longtasks` ([start ms, duration ms] on the page's timeline)."""
    return cast(dict[str, Any], await page.evaluate(DRAIN_SCRIPT))


async def clock_offset(page: Page, wall: Any) -> dict[str, float]:
    """Page clock minus the bench's `wall()` (s → ms), with the round trip as its error bar."""
    before = wall()
    page_ms = float(await page.evaluate(CLOCK_SCRIPT))
    after = wall()
    return {
        "offset_ms": round(page_ms - (before + after) / 2 * 1000, 3),
        "uncertainty_ms": round((after - before) / 2 * 1000, 3),
    }


async def metrics(cdp: CDPSession, page: Page) -> dict[str, float]:
    """Chromium's counters now, plus `performance.memory.usedJSHeapSize`."""
    answer = await cdp.send("Performance.getMetrics")
    values = {m["name"]: float(m["value"]) for m in answer["metrics"] if m["name"] in METRICS}
    used = await page.evaluate(MEMORY_SCRIPT)
    values["performance.memory.usedJSHeapSize"] = float(used) if used is not None else -1.0
    return values


async def collect_garbage(cdp: CDPSession) -> None:
    """A full collection in the page, so the heap figure that follows is what is retained."""
    await cdp.send("HeapProfiler.collectGarbage")


class FrameClient:
    """A plain WebSocket client subscribed to every printer, noting the sampled markers."""

    def __init__(self, url: str, key: str, sampled: set[str]) -> None:
        self.url = url.replace("http://", "ws://") + "/api/v1/ws"
        self.key = key
        self.sampled = sampled
        # (serial, marker, monotonic s, wall s): monotonic against the simulator's stamp,
        # wall against the page's arrival of the same report (the browser's own share).
        self.records: list[tuple[str, int, float, float]] = []
        self.items = 0
        self.frames = 0
        self._task: asyncio.Task[None] | None = None
        self._socket: Any = None

    async def start(self) -> None:
        """Connect, subscribe, and read in the background."""
        from websockets.asyncio.client import connect  # noqa: PLC0415

        self._socket = await connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.key}"},
            compression="deflate",
            max_size=None,
            proxy=None,
        )
        await self._socket.recv()  # hello
        await self._socket.send('{"type": "subscribe", "topics": ["printers"]}')
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            now, wall = time.monotonic(), time.time()
            frame = orjson.loads(message)
            if frame["type"] != "updates":
                continue
            self.frames += 1
            for item in frame["printers"]:
                self.items += 1
                if item["serial"] not in self.sampled:
                    continue
                layer = item["parts"].get("job", {}).get("layer")
                if layer is not None:
                    self.records.append((item["serial"], int(layer), now, wall))

    def take(self) -> list[tuple[str, int, float, float]]:
        """The records so far, and start afresh."""
        taken, self.records = self.records, []
        self.items = self.frames = 0
        return taken

    async def close(self) -> None:
        """Close the socket and wait for the reader."""
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def renderer_cpu_s() -> float:
    """CPU seconds of the Chromium renderers below this process (the page's own work)."""
    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in " ".join(proc.cmdline()):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue  # a helper process that ended between listing and reading
    return total
