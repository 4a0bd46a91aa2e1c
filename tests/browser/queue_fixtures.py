"""What the queue's browser tests share: the served farm with simulated P1S printers, its users,
and sliced files queued through the API like any client.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bambufarm.auth.roles import Role
from tests.browser.conftest import ADMIN, OPERATOR, VIEWER
from tests.support.farm import FarmApi
from tests.support.queue_api import queue_farm_api, sliced, uploaded

# At 60x a 60 s slice prints in about a second and a 2 h one stays printing for two minutes,
# far past any test: short files finish on cue, long ones are reliably seen printing.
TIME_SCALE = 60.0
SHORT_S = 60
LONG_S = 7200
WAIT = 60.0  # a job's life through the dispatcher on a loaded 2-core machine


@dataclass
class QueueFarm:
    """The served farm and an admin client of its API."""

    farm: FarmApi
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.farm.api.url

    def serial(self, index: int = 0) -> str:
        """The serial of the farm's printer `index`."""
        return self.farm.printer(index).serial

    async def file(self, name: str, **kwargs: Any) -> Any:
        """A sliced file uploaded to the library (its JSON)."""
        return await uploaded(self.client, sliced(**kwargs), name)

    async def queue(self, file: Any, **body: Any) -> list[Any]:
        """Queue the file; the created jobs."""
        response = await self.client.post("/api/v1/jobs", json={"file_id": file["id"], **body})
        assert response.status_code == 201, response.text
        return response.json()["jobs"]  # type: ignore[no-any-return]

    async def job(self, job_id: int) -> Any:
        """A job's detail as the API gives it."""
        response = await self.client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def until_job(self, job_id: int, test: Callable[[Any], bool], what: str) -> Any:
        """The job once `test` holds for it (fails after WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            while not test(job := await self.job(job_id)):  # noqa: ASYNC110
                # The dispatcher works on its own; its changes are read back 5 times a second.
                await asyncio.sleep(0.2)
        assert test(job), what
        return job


@pytest.fixture
async def queue_farm(tmp_path: Path) -> AsyncIterator[QueueFarm]:
    """One P1S, loaded with white PLA, behind the served API; an admin, operator and viewer."""
    async with queue_farm_api(
        f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}",
        tmp_path,
        models=("P1S",),
        time_scale=TIME_SCALE,
    ) as farm:
        for name, role in ((ADMIN, Role.ADMIN), (OPERATOR, Role.OPERATOR), (VIEWER, Role.VIEWER)):
            await farm.api.add_user(name, role)
        yield QueueFarm(farm, farm.admin())
