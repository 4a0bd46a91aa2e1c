"""`GET /api/v1/printers/{serial}/temperatures`: the last hour of a printer's temperatures.

The samples are kept in memory by `farm.telemetry_history` (one per 10 s, and at each change of
a target); this route hands them out in columns: one list of times and one list per channel,
`null` where a value was unknown or the printer was offline (draw a gap there). Later readings
come over the WebSocket (`temperatures` parts of `updates`). Needs `view`.
"""

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from bambufarm.api.deps import CanView, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN
from bambufarm.api.schemas import problem_responses
from bambufarm.farm.telemetry_history import CHANNELS

router = APIRouter(tags=["printers"], responses=problem_responses(401, 403, 404, 422, 503))

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
JSON: Final = "application/json"


class TemperatureHistoryOut(BaseModel):
    """A printer's recent temperatures, in columns, oldest first."""

    serial: str
    now: datetime = Field(description="The server's time of this answer.")
    interval_s: float = Field(description="One sample per this many seconds while it changes.")
    window_s: float = Field(description="How far back samples are kept.")
    times: list[float] = Field(description="Unix seconds of each sample.")
    series: dict[str, list[float | None]] = Field(
        description=(
            "°C per channel, one value per time; null: unknown or offline (a gap). Channels: "
            + ", ".join(CHANNELS)
            + "; `nozzle` is the right nozzle of a dual-nozzle printer, `left_nozzle` its left."
        )
    )


@router.get(
    "/api/v1/printers/{serial}/temperatures",
    response_model=TemperatureHistoryOut,
    summary="A printer's temperatures, last hour",
)
async def temperatures_route(
    serial: SerialPath, principal: CanView, services: ServicesDep
) -> Response:
    """Nozzle(s), bed and chamber, actual and target, over the last hour."""
    farm = services.farm
    farm.printer(serial)
    history = services.temperatures
    fleet_now = history.clock()
    now = farm.wall_time(fleet_now)
    # One conversion for every sample: fleet seconds plus this offset are Unix seconds.
    offset = now.timestamp() - fleet_now
    series = history.series(serial, fleet_now)
    body = TemperatureHistoryOut(
        serial=serial,
        now=now,
        interval_s=history.interval_s,
        window_s=history.window_s,
        times=[round(at + offset, 1) for at in series.times],
        series={name: list(values) for name, values in series.columns.items()},
    )
    return Response(body.model_dump_json(), media_type=JSON)
