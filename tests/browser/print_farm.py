"""A small farm for the library and history pages: idle simulated printers in the server, its
queue running, users of each role, and helpers to upload, queue and wait through the API.

The demo fixture of conftest starts hour-long prints on its printers; these tests need idle
printers that take a queued job and a time scale chosen per test (fast enough for a print to
finish within a test, slow enough to see one printing).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bambufarm.simulator.fleet import SimFleet
from tests.browser.conftest import OPERATOR, sign_up_and_import
from tests.support.api import RunningApi, running_api
from tests.support.queue_api import uploaded
from tests.support.sim import running_fleet

# Jobs go through an FTPS upload and a simulated start on a loaded 2-core machine.
WAIT = 45.0


@dataclass
class PrintFarm:
    """The served farm, its simulated printers and an operator's API client."""

    api: RunningApi
    sim: SimFleet
    operator: httpx.AsyncClient

    def serial(self, index: int = 0) -> str:
        """The serial of simulated printer `index`."""
        return self.sim.nodes[index].spec.identity.serial

    def name(self, index: int = 0) -> str:
        """The name of simulated printer `index`."""
        return self.sim.nodes[index].spec.identity.name

    async def upload(self, data: bytes, name: str, **params: Any) -> Any:
        """Store a file in the library through the API; its JSON."""
        return await uploaded(self.operator, data, name, **params)

    async def queue(self, file_id: int, **body: Any) -> list[Any]:
        """Queue a plate of a library file through the API; the jobs."""
        response = await self.operator.post("/api/v1/jobs", json={"file_id": file_id, **body})
        assert response.status_code == 201, response.text
        jobs: list[Any] = response.json()["jobs"]
        return jobs

    async def get(self, path: str, **params: Any) -> Any:
        """GET an API path as the operator; its JSON."""
        response = await self.operator.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def until(
        self, read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], what: str
    ) -> Any:
        """Read until `check` holds; fail naming `what` and the last value otherwise."""
        value: Any = None
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    value = await read()
                    if check(value):
                        return value
                    # The API has no long poll: look again every 100 ms.
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {value!r}") from None


@contextlib.asynccontextmanager
async def print_farm(
    tmp_path: Path, *, models: Sequence[str] = ("P1S",), time_scale: float = 30.0
) -> AsyncIterator[PrintFarm]:
    """Idle simulated printers imported into the server, users of each role signed up."""
    async with (
        running_fleet(
            tmp_path / "sim", models=models, time_scale=time_scale, tick_interval=0.2
        ) as (sim, manifest),
        running_api(f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}", tmp_path / "data") as api,
    ):
        await sign_up_and_import(api, manifest)
        operator = api.key_client(await api.add_key(OPERATOR, ["queue"]))
        yield PrintFarm(api, sim, operator)
