"""`GET /api/v1/printers/{serial}/temperatures` over real HTTP, fed by a simulated P1S."""

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from bambufarm.auth.roles import Role
from bambufarm.farm.telemetry_history import CHANNELS
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """One simulated P1S, added and online."""
    async with running_farm_api(database_url, tmp_path, models=("P1S",)) as running:
        await running.add()
        await running.until_online()
        yield running


async def test_the_last_hour_is_served_in_columns_and_a_new_target_shows_at_once(
    farm_api: FarmApi,
) -> None:
    serial = farm_api.printer(0).serial
    history = farm_api.services.temperatures
    await farm_api.until(lambda: len(history.series(serial).times) >= 1, "a first sample")
    viewer = await farm_api.api.user_session("vera", Role.VIEWER)
    response = await viewer.client.get(f"/api/v1/printers/{serial}/temperatures")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serial"] == serial
    assert (body["interval_s"], body["window_s"]) == (10.0, 3600.0)
    assert list(body["series"]) == list(CHANNELS)
    assert all(len(values) == len(body["times"]) for values in body["series"].values())
    assert body["times"] == sorted(body["times"])
    assert isinstance(body["series"]["bed"][-1], float)
    # Unix seconds, no later than the server's own `now`, and within the last hour of it.
    now = datetime.fromisoformat(body["now"]).timestamp()
    assert now - 3600 <= body["times"][0] <= body["times"][-1] <= now

    # A new bed target is sampled when it is reported, not at the next 10 s tick.
    set_bed = await farm_api.admin().post(
        f"/api/v1/printers/{serial}/temperature", json={"heater": "bed", "target": 60}
    )
    assert set_bed.status_code == 200, set_bed.text
    await farm_api.until(
        lambda: history.series(serial).columns["bed_target"][-1:] == (60.0,), "the bed's step"
    )
    again = (await viewer.client.get(f"/api/v1/printers/{serial}/temperatures")).json()
    assert again["series"]["bed_target"][-1] == 60.0
    assert len(again["times"]) > len(body["times"])


async def test_unknown_printers_and_strangers_are_refused(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    missing = await farm_api.admin().get("/api/v1/printers/01P00A999999999/temperatures")
    assert missing.status_code == 404
    stranger = await farm_api.api.client().get(f"/api/v1/printers/{serial}/temperatures")
    assert stranger.status_code == 401
