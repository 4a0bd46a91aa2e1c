"""Shared benchmark plumbing: timing loops, percentiles, the printed table and the JSON file."""

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def time_calls(fn: Callable[[], object], *, rounds: int, inner: int = 1) -> list[float]:
    """Per-call wall times in µs: `rounds` samples, each the mean over `inner` calls."""
    for _ in range(min(rounds, 200)):  # warm-up: caches, allocator, branch predictors
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter_ns() - start) / inner / 1000)
    return samples


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of samples."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median and p99 of samples."""
    return {"median": statistics.median(samples), "p99": percentile(samples, 99)}


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (ready to paste into a note)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        cells = [f"{c:.2f}" if isinstance(c, float) else str(c) for c in row]
        print("| " + " | ".join(cells) + " |")


def write_json(name: str, body: dict[str, object]) -> Path:
    """Write bench/results/<name>.json with the machine description added."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **body}, indent=2) + "\n")
    return path
