"""Jobs and plates live, on SQLite and PostgreSQL: the WebSocket's `jobs` topic carries each job
change (queued through the API, started and finished by the dispatcher on a simulated printer,
completed by a plate clear) and each plate change; `GET /api/v1/plates` gives every printer's
plate in one read, filtered by cleared.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bambufarm.api.queue_schemas import JobOut, PlateOutState
from bambufarm.auth.roles import Role
from tests.support.farm import FarmApi
from tests.support.queue_api import queue_farm_api, sliced, uploaded

pytest_plugins = ["tests.support.postgres"]

WAIT = 60.0  # prints take ~2 s at the simulator's time scale; a loaded machine is slower


@pytest.fixture
async def farm(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """Two P1S printers behind the served API, online and reporting."""
    async with queue_farm_api(database_url, tmp_path, models=("P1S", "P1S")) as farm_api:
        yield farm_api


async def _socket(farm_api: FarmApi, topics: list[str]) -> ClientConnection:
    url = farm_api.api.url.replace("http://", "ws://") + "/api/v1/ws"
    socket = await connect(url, proxy=None, compression=None)
    await socket.send(orjson.dumps({"type": "auth", "api_key": farm_api.admin_key}).decode())
    await socket.send(orjson.dumps({"type": "subscribe", "topics": topics}).decode())
    async with asyncio.timeout(WAIT):
        while (frame := orjson.loads(await socket.recv()))["type"] != "subscribed":
            pass
    assert frame["topics"] == topics
    return socket


class JobFrames:
    """The latest job and plate states seen in `jobs` frames."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.jobs: dict[int, JobOut] = {}
        self.plates: dict[str, PlateOutState] = {}
        self.frames = 0

    async def until(self, test: Callable[["JobFrames"], bool], what: str) -> None:
        """Read frames until `test` holds (fails the test after WAIT seconds)."""
        try:
            async with asyncio.timeout(WAIT):
                while not test(self):
                    frame = orjson.loads(await self.socket.recv())
                    if frame["type"] != "jobs":
                        continue
                    self.frames += 1
                    for item in frame["jobs"]:
                        job = JobOut.model_validate(item)
                        self.jobs[job.id] = job
                    for item in frame["plates"]:
                        plate = PlateOutState.model_validate(item)
                        self.plates[plate.printer] = plate
        except TimeoutError:
            pytest.fail(f"no {what} on the WebSocket within {WAIT:g} s: {self.jobs}")

    def state(self, job_id: int) -> str | None:
        """The job's last state seen, if any."""
        job = self.jobs.get(job_id)
        return None if job is None else job.state.value


async def test_jobs_topic_follows_a_job_from_queue_to_done(farm: FarmApi) -> None:
    client = farm.admin()
    serial = farm.printer(0).serial
    socket = await _socket(farm, ["jobs"])
    try:
        live = JobFrames(socket)
        file = await uploaded(client, sliced(), "clip.gcode.3mf")
        created = await client.post(
            "/api/v1/jobs", json={"file_id": file["id"], "target": {"printer": serial}}
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["jobs"][0]["id"]
        # Queued through the API: the frame comes at once, not at the next tick.
        await live.until(lambda f: job_id in f.jobs, "new job")
        await live.until(lambda f: f.state(job_id) == "awaiting_clear", "finished print")
        assert live.jobs[job_id].printer == serial
        await live.until(
            lambda f: serial in f.plates and not f.plates[serial].cleared, "closed plate gate"
        )
        assert live.plates[serial].last_job_id == job_id

        waiting = (await client.get("/api/v1/plates", params={"cleared": "false"})).json()
        assert [p["printer"] for p in waiting["items"]] == [serial]
        assert waiting["total"] == 1

        cleared = await client.post(f"/api/v1/printers/{serial}/plate/clear")
        assert cleared.status_code == 200, cleared.text
        await live.until(
            lambda f: f.state(job_id) == "done" and f.plates[serial].cleared, "cleared plate"
        )
        assert live.plates[serial].changed_by is not None

        # Unsubscribed, the client hears of no more jobs.
        await socket.send(orjson.dumps({"type": "unsubscribe", "topics": ["jobs"]}).decode())
        async with asyncio.timeout(WAIT):
            while (frame := orjson.loads(await socket.recv()))["type"] != "unsubscribed":
                pass
        assert frame["topics"] == []
        frames_before = live.frames
        again = await client.post(f"/api/v1/jobs/{job_id}/duplicate")
        assert again.status_code == 201, again.text
        extra: list[Any] = []
        try:
            # Two of the feed's 1 s ticks: long enough for a frame that should not come.
            async with asyncio.timeout(2.5):
                extra.append(orjson.loads(await socket.recv()))
        except TimeoutError:
            extra = []
        assert [f for f in extra if f["type"] == "jobs"] == []
        assert live.frames == frames_before
    finally:
        await socket.close()


async def test_plates_list_every_printer_for_viewers(farm: FarmApi) -> None:
    await farm.api.add_user("vera", Role.VIEWER)
    viewer = farm.api.key_client(await farm.api.add_key("vera", ["read"]))
    serials = sorted(farm.printer(i).serial for i in range(2))
    everything = await viewer.get("/api/v1/plates")
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert [p["printer"] for p in body["items"]] == serials
    assert all(p["cleared"] and p["last_outcome"] is None for p in body["items"])
    assert (body["total"], body["offset"]) == (2, 0)
    paged = (await viewer.get("/api/v1/plates", params={"offset": 1, "limit": 1})).json()
    assert [p["printer"] for p in paged["items"]] == serials[1:]
    none = (await viewer.get("/api/v1/plates", params={"cleared": "false"})).json()
    assert none == {"items": [], "total": 0, "offset": 0, "limit": 100}
    refused = await viewer.post(f"/api/v1/printers/{serials[0]}/plate/clear")
    assert refused.status_code == 403
    anonymous = await farm.api.client().get("/api/v1/plates")
    assert anonymous.status_code == 401
