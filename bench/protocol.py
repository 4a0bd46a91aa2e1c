"""Protocol codec benchmark: report parse + merge, command building, 3MF metadata.

Run with `make bench-protocol` (or `python -m bench.protocol` from the repository root).
Budgets (issue "Foundation"): ~1 KB delta parse+merge ≤ 20 µs, ~4 KB full ≤ 100 µs,
building a command ≤ 10 µs, 20 MB .gcode.3mf metadata ≤ 50 ms. The floor is `orjson.loads`
alone on the same payloads, measured in the same run.
"""

import io
import time
from typing import Any

import orjson
from tests.support.reports import load_report
from tests.support.threemf_factory import build_gcode_3mf

from bambufarm.protocol import commands
from bambufarm.protocol.models import model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import empty_state, merge
from bambufarm.protocol.threemf import read_3mf
from bench.common import print_table, summary, time_calls, write_json

SERIAL = "01P00A123456789"


def _delta_payload() -> bytes:
    """A ~1 KB delta: progress, temperatures, a tray change and an HMS entry in one push."""
    merged: dict[str, Any] = {}
    for name in ("p1s_delta_01_progress", "p1s_delta_02_temps", "p1s_delta_03_tray_change"):
        merged.update(orjson.loads(load_report(name))["print"])
    merged["hms"] = orjson.loads(load_report("p1s_delta_05_hms"))["print"]["hms"]
    return orjson.dumps({"print": merged})


def _full_payload() -> bytes:
    """The multi-AMS X1C full report, compact as printers send it (~4 KB)."""
    return orjson.dumps(orjson.loads(load_report("x1c_multi_ams_full")))


def bench_reports(rows: list[list[object]], results: dict[str, Any]) -> None:
    """Parse + merge against the orjson.loads floor."""
    base = merge(empty_state(SERIAL), parse_report(load_report("p1s_full")))
    for label, payload, budget in (
        ("delta", _delta_payload(), 20.0),
        ("full", _full_payload(), 100.0),
    ):
        floor = summary(time_calls(lambda p=payload: orjson.loads(p), rounds=2000, inner=20))
        ours = summary(
            time_calls(lambda p=payload: merge(base, parse_report(p)), rounds=2000, inner=20)
        )
        ratio = ours["median"] / floor["median"]
        rows.append(
            [f"parse+merge {label} ({len(payload)} B)", ours["median"], ours["p99"], budget, ratio]
        )
        rows.append([f"orjson.loads {label} (floor)", floor["median"], floor["p99"], "-", 1.0])
        results[f"parse_merge_{label}"] = {**ours, "bytes": len(payload), "floor": floor}


def bench_commands(rows: list[list[object]], results: dict[str, Any]) -> None:
    """Building the simplest and the richest command."""
    counter = commands.SequenceCounter(start=20000)
    model = model_by_name("P1S")
    cases = {
        "build pause": lambda: commands.pause(counter.next()),
        "build project_file": lambda: commands.project_file(
            counter.next(),
            model=model,
            file_name="benchy.gcode.3mf",
            plate=1,
            ams_mapping=[1, 0, commands.EXTERNAL_SPOOL],
            task_id=123456789,
        ),
    }
    for label, fn in cases.items():
        stats = summary(time_calls(fn, rounds=2000, inner=20))
        rows.append([label, stats["median"], stats["p99"], 10.0, "-"])
        results[label.replace(" ", "_")] = stats


def bench_threemf(rows: list[list[object]], results: dict[str, Any]) -> None:
    """Metadata of a 20 MB sliced file without reading its G-code."""
    # Padding G-code deflates about 3:1, so 60 MiB of it makes a ~20 MB archive.
    data = build_gcode_3mf(gcode_padding_bytes=60 * 1024 * 1024)
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        info = read_3mf(io.BytesIO(data))
        samples.append((time.perf_counter() - start) * 1000)
    assert info.plates, "benchmark file has no plates"
    stats = summary(samples)
    mb = len(data) / 1e6
    rows.append(
        [f"read_3mf metadata ({mb:.1f} MB file), ms", stats["median"], stats["p99"], 50.0, "-"]
    )
    results["read_3mf_ms"] = {**stats, "file_bytes": len(data)}


def main() -> None:
    """Run every case, print the table and write bench/results/protocol.json."""
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    bench_reports(rows, results)
    bench_commands(rows, results)
    bench_threemf(rows, results)
    print_table(
        "protocol codecs (µs unless noted)",
        ["case", "median", "p99", "budget", "x orjson floor"],
        rows,
    )
    path = write_json("protocol", results)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
