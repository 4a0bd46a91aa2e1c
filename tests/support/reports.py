"""Loader for the hand-written report payloads in tests/fixtures/reports (protocol.md §1.5)."""

from pathlib import Path

REPORTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "reports"

# The P1S delta sequence that follows p1s_full, in the order a printer would send it.
P1S_DELTAS = (
    "p1s_delta_01_progress",
    "p1s_delta_02_temps",
    "p1s_delta_03_tray_change",
    "p1s_delta_04_tray_cleared",
    "p1s_delta_05_hms",
    "p1s_delta_06_hms_cleared",
)


def report_path(name: str) -> Path:
    """The fixture file for `name` ("p1s_full" or "p1s_full.json")."""
    file_name = name if name.endswith(".json") else f"{name}.json"
    path = REPORTS_DIR / file_name
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in REPORTS_DIR.glob("*.json")))
        raise FileNotFoundError(f"no report fixture {name!r}; known: {known}")
    return path


def load_report(name: str) -> bytes:
    """The raw payload bytes of a report fixture, exactly as a printer would publish them."""
    return report_path(name).read_bytes()


def report_names() -> tuple[str, ...]:
    """Every report fixture name (without .json), sorted."""
    return tuple(sorted(p.stem for p in REPORTS_DIR.glob("*.json")))
