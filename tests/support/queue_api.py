"""The print queue behind the served API: simulated printers in the farm, sliced files.

`queue_farm_api(...)` serves the API in front of simulated printers, adds them to the farm and
waits until each has reported, so the dispatcher (started with the services) sees them all.
Helpers build small sliced files and upload them through the API like any client.
"""

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bambufarm.simulator.sample_files import FilamentSpec, PlateSpec, build_gcode_3mf
from tests.support.farm import FarmApi, running_farm_api

P1S = "C12"
X1C = "BL-P001"


@contextlib.asynccontextmanager
async def queue_farm_api(
    database_url: str,
    tmp: Path,
    *,
    models: Sequence[str] = ("P1S", "X1C"),
    time_scale: float = 400.0,
    quirks: Mapping[str, Any] | None = None,
) -> AsyncIterator[FarmApi]:
    """Simulated printers, added to a served farm whose queue runs behind the API."""
    async with running_farm_api(
        database_url, tmp, models=models, time_scale=time_scale, quirks=quirks
    ) as farm_api:
        await farm_api.add()
        await farm_api.until_online()
        await farm_api.until(
            lambda: all(p.snapshot.state.report_count > 0 for p in farm_api.farm.printers()),
            "a first report from every printer",
        )
        yield farm_api


def sliced(
    *,
    model: str = P1S,
    color: str = "#FFFFFF",
    material: str = "PLA",
    plates: int = 1,
    grams: float = 12.0,
    prediction_s: int = 600,
    thumbnail: bool = True,
    padding: int = 0,
) -> bytes:
    """A small sliced file with `plates` plates of one filament each."""
    spec = PlateSpec(
        prediction_s=prediction_s,
        weight_g=grams,
        layers=40,
        thumbnail=thumbnail,
        filaments=(FilamentSpec(slot=1, type=material, color=color, used_g=grams),),
    )
    return build_gcode_3mf(
        plates=[spec] * plates, printer_model_id=model, gcode_padding_bytes=padding
    )


async def upload(
    client: httpx.AsyncClient, data: bytes, name: str, **params: Any
) -> httpx.Response:
    """POST a file's bytes as the raw body."""
    return await client.post(
        "/api/v1/library/files",
        params={"name": name, **params},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


async def uploaded(client: httpx.AsyncClient, data: bytes, name: str, **params: Any) -> Any:
    """Upload, failing the test unless it was stored; the stored file's JSON."""
    response = await upload(client, data, name, **params)
    assert response.status_code == 201, response.text
    return response.json()
