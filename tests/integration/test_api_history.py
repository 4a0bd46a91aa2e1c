"""The history and statistics API over real HTTP on SQLite and PostgreSQL: prints newest first
with cursors and filters, filament used per outcome, and per-printer and farm statistics
(success rate, print hours, grams by material) over a time window.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bambufarm.auth.roles import Role
from bambufarm.jobs.history import PrintOutcome, finish_print, start_print
from bambufarm.protocol.threemf import PlateFilament
from tests.support.api import RunningApi

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
A, B = "01P00A000000001", "00M00A000000002"
PLA = PlateFilament(1, "GFA00", "PLA", "#FFFFFF", 10.0, 3.3)
PETG = PlateFilament(2, "GFG00", "PETG", "#000000", 4.0, 1.2)


async def _print(
    api: RunningApi,
    serial: str,
    *,
    start_h: float,
    hours: float | None,
    outcome: PrintOutcome = PrintOutcome.DONE,
    progress: int = 100,
    filaments: tuple[PlateFilament, ...] = (PLA,),
    name: str = "part.gcode.3mf",
) -> int:
    """Record a print that started `start_h` hours after T0 and ran `hours` (None: running)."""
    started = T0 + timedelta(hours=start_h)
    async with api.services.database.session() as session:
        record = await start_print(
            session, printer_serial=serial, file_name=name, plate=1,
            filaments=filaments, started_at=started,
        )  # fmt: skip
        if hours is not None:
            record = await finish_print(
                session, record.id, outcome=outcome, progress=progress,
                ended_at=started + timedelta(hours=hours),
                reason=None if outcome is PrintOutcome.DONE else "spaghetti",
            )  # fmt: skip
    return record.id


@pytest.fixture
async def viewer(api: RunningApi) -> httpx.AsyncClient:
    """A viewer's read-only key: history is for everyone who may see the farm."""
    await api.add_user("vic", Role.VIEWER)
    return api.key_client(await api.add_key("vic", ["read"]))


@pytest.fixture
async def farm_history(api: RunningApi) -> dict[str, int]:
    """Five prints on two printers: done, failed at 40 %, cancelled, done (PETG too), running."""
    return {
        "a_done": await _print(api, A, start_h=0, hours=2),
        "a_failed": await _print(
            api, A, start_h=3, hours=1, outcome=PrintOutcome.FAILED, progress=40
        ),
        "b_cancelled": await _print(
            api, B, start_h=4, hours=0.5, outcome=PrintOutcome.CANCELLED, progress=10
        ),
        "b_done": await _print(api, B, start_h=5, hours=3, filaments=(PLA, PETG)),
        "a_running": await _print(api, A, start_h=9, hours=None),
    }


async def test_prints_newest_first_with_outcome_duration_and_filament(
    viewer: httpx.AsyncClient, farm_history: dict[str, int]
) -> None:
    response = await viewer.get("/api/v1/history/prints")
    assert response.status_code == 200, response.text
    body = response.json()
    ids = [p["id"] for p in body["items"]]
    assert ids == [
        farm_history[k] for k in ("a_running", "b_done", "b_cancelled", "a_failed", "a_done")
    ]
    assert body["next_cursor"] is None
    by_id = {p["id"]: p for p in body["items"]}
    done = by_id[farm_history["a_done"]]
    assert (done["printer"], done["outcome"], done["duration_s"]) == (A, "done", 7200)
    assert done["started_at"].startswith("2025-05-01T08:00:00")
    assert done["filament"] == [
        {"slot": 1, "material": "PLA", "color": "#FFFFFF", "planned_g": 10.0, "used_g": 10.0}
    ]
    failed = by_id[farm_history["a_failed"]]
    assert (failed["outcome"], failed["progress"], failed["reason"]) == ("failed", 40, "spaghetti")
    # A failed print used filament in proportion to how far it got.
    assert failed["filament"][0]["used_g"] == pytest.approx(4.0)
    running = by_id[farm_history["a_running"]]
    assert (running["outcome"], running["ended_at"], running["duration_s"]) == (
        "running",
        None,
        None,
    )
    assert running["filament"][0]["used_g"] is None
    one = await viewer.get(f"/api/v1/history/prints/{farm_history['b_done']}")
    assert one.json() == by_id[farm_history["b_done"]]
    assert (await viewer.get("/api/v1/history/prints/999999")).status_code == 404


async def test_pages_follow_the_cursor_and_filters_narrow(
    viewer: httpx.AsyncClient, farm_history: dict[str, int]
) -> None:
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await viewer.get("/api/v1/history/prints", params=params)).json()
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(farm_history.values(), reverse=True)
    assert cursor is None

    async def ids(**params: Any) -> list[int]:
        response = await viewer.get("/api/v1/history/prints", params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await ids(printer=B) == [farm_history["b_done"], farm_history["b_cancelled"]]
    assert await ids(outcome=["failed", "cancelled"]) == [
        farm_history["b_cancelled"], farm_history["a_failed"],
    ]  # fmt: skip
    assert await ids(since="2025-05-01T12:00:00Z", until="2025-05-01T14:00:00+01:00") == [
        farm_history["b_cancelled"]
    ]
    bad_cursor = await viewer.get("/api/v1/history/prints", params={"cursor": "bm9wZQ"})
    assert bad_cursor.status_code == 422
    assert "not one this server issued" in bad_cursor.json()["detail"]
    naive = await viewer.get("/api/v1/history/prints", params={"since": "2025-05-01T08:00:00"})
    assert naive.status_code == 422
    assert (
        await viewer.get("/api/v1/history/prints", params={"outcome": "meh"})
    ).status_code == 422


async def test_statistics_for_the_farm_and_each_printer(
    viewer: httpx.AsyncClient, farm_history: dict[str, int]
) -> None:
    response = await viewer.get("/api/v1/statistics")
    assert response.status_code == 200, response.text
    body = response.json()
    fleet = body["fleet"]
    counts = [fleet[k] for k in ("prints", "done", "failed", "cancelled", "running")]
    assert counts == [5, 2, 1, 1, 1]
    # Two done, one failed; the cancel counts in neither.
    assert fleet["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert fleet["print_hours"] == pytest.approx(2 + 1 + 0.5 + 3)
    assert fleet["filament_g"] == {"PETG": pytest.approx(4.0), "PLA": pytest.approx(25.0)}
    per = {p["printer"]: p for p in body["printers"]}
    assert set(per) == {A, B}
    assert (per[A]["done"], per[A]["failed"], per[A]["running"]) == (1, 1, 1)
    assert per[A]["success_rate"] == 0.5
    assert per[A]["filament_g"] == {"PLA": pytest.approx(14.0)}
    # PLA 10 g used by the done print and 1 g (10 %) by the cancelled one.
    assert per[B]["filament_g"] == {"PETG": pytest.approx(4.0), "PLA": pytest.approx(11.0)}

    one = (await viewer.get(f"/api/v1/statistics/printers/{B}")).json()
    assert one == per[B]
    window = (
        await viewer.get(
            "/api/v1/statistics",
            params={"since": "2025-05-01T11:00:00Z", "until": "2025-05-01T16:00:00Z"},
        )
    ).json()
    assert window["fleet"]["prints"] == 3
    assert window["since"].startswith("2025-05-01T11:00:00")
    idle = (await viewer.get("/api/v1/statistics/printers/01P00A999999999")).json()
    assert (idle["prints"], idle["success_rate"], idle["filament_g"]) == (0, None, {})
    empty = await viewer.get("/api/v1/statistics", params={"until": "2020-01-01T00:00:00Z"})
    assert empty.json()["fleet"]["prints"] == 0
    assert empty.json()["printers"] == []
