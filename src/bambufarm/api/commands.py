"""`/api/v1/printers/{serial}/<command>`: control a printer and get the printer's answer.

Every command is sent, its acknowledgement awaited, and the outcome audited (who, what, which
printer, when, and what came back). The answer is honest about what happened:

* 200 with `status: ok` — the printer acknowledged it (or it expects no acknowledgement);
* 409 — nothing was done: the printer is offline (`printer-offline`), busy with a job
  (`printer-busy`), not in Developer Mode (`printer-read-only`), or it refused
  (`command-refused`, with the printer's reason);
* 504 `command-timeout` — it was sent but no answer came: check the status before repeating.

Values out of range (temperatures, speed levels, AMS slots, G-code) are 422 before anything is
sent. Raw G-code can move axes and heaters without any of the printer's own checks, so it is
for admins only (`manage_printers`); everything else needs `control`.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from bambufarm.api.deps import CanControl, CanManagePrinters, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN, CommandOutcome, command_outcome
from bambufarm.api.schemas import Problem, problem_responses
from bambufarm.app import Services
from bambufarm.auth.roles import Principal
from bambufarm.fleet.commands import CommandResult
from bambufarm.fleet.handle import PrinterHandle
from bambufarm.protocol.commands import GCODE_LINE_MAX, Fan, LightNode, SpeedLevel
from bambufarm.protocol.errors import CommandError

router = APIRouter(
    prefix="/api/v1/printers/{serial}",
    tags=["commands"],
    responses={
        200: {"model": CommandOutcome, "description": "The printer acknowledged the command."},
        **problem_responses(401, 403, 404, 409, 422, 503),
        504: {
            "model": Problem,
            "description": "Sent, but the printer did not answer in time; check its status.",
        },
    },
)

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
Send = Callable[[PrinterHandle], Awaitable[CommandResult]]
# Nozzles go to 350 °C (H2 high-temperature hot ends), beds to 120, chambers to 65; the
# printer's firmware clamps further. These bounds only keep nonsense from the wire.
MAX_NOZZLE_C = 350
MAX_BED_C = 130
MAX_CHAMBER_C = 70


class LightRequest(BaseModel):
    """Switch a light."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    node: LightNode = LightNode.CHAMBER


class SpeedRequest(BaseModel):
    """The print speed level."""

    model_config = ConfigDict(extra="forbid")

    level: SpeedLevel = Field(description="1 silent, 2 standard, 3 sport, 4 ludicrous.")


class TemperatureRequest(BaseModel):
    """A target temperature in °C (0 switches the heater off)."""

    model_config = ConfigDict(extra="forbid")

    heater: Literal["nozzle", "bed", "chamber"]
    target: int = Field(ge=0, le=MAX_NOZZLE_C)
    extruder: int | None = Field(
        default=None, ge=0, le=1, description="Dual-nozzle printers: 0 right, 1 left."
    )


class FanRequest(BaseModel):
    """A fan speed in percent."""

    model_config = ConfigDict(extra="forbid")

    fan: Fan = Field(description="1 part cooling, 2 auxiliary.")
    percent: float = Field(ge=0, le=100)


class GcodeRequest(BaseModel):
    """Raw G-code, one or more lines."""

    model_config = ConfigDict(extra="forbid")

    gcode: str = Field(min_length=1, max_length=GCODE_LINE_MAX, examples=["M104 S0\n"])


class AmsLoadRequest(BaseModel):
    """Load filament from an AMS slot (ams_id 254/255: the external spool)."""

    model_config = ConfigDict(extra="forbid")

    ams_id: int = Field(ge=0, le=255)
    slot_id: int = Field(ge=0, le=3)
    nozzle_temp: int | None = Field(default=None, ge=0, le=MAX_NOZZLE_C)


class AmsUnloadRequest(BaseModel):
    """Pull the loaded filament out of the nozzle."""

    model_config = ConfigDict(extra="forbid")

    nozzle_temp: int | None = Field(default=None, ge=0, le=MAX_NOZZLE_C)


async def _run(
    services: Services,
    principal: Principal,
    serial: str,
    name: str,
    send: Send,
    *,
    details: dict[str, Any] | None = None,
) -> Response:
    result = await services.farm.command(serial, name, send, actor=principal.actor, details=details)
    # A failed outcome becomes its fleet error, answered by the one mapping in errors.py.
    result.raise_for_status(serial)
    return Response(
        command_outcome(serial, name, result).model_dump_json(), media_type="application/json"
    )


@router.post("/pause", response_model=CommandOutcome, summary="Pause the print")
async def pause_route(serial: SerialPath, principal: CanControl, services: ServicesDep) -> Response:
    """Pause the running print."""
    return await _run(services, principal, serial, "pause", lambda h: h.pause())


@router.post("/resume", response_model=CommandOutcome, summary="Resume the print")
async def resume_route(
    serial: SerialPath, principal: CanControl, services: ServicesDep
) -> Response:
    """Resume a paused print."""
    return await _run(services, principal, serial, "resume", lambda h: h.resume())


@router.post("/stop", response_model=CommandOutcome, summary="Stop (cancel) the print")
async def stop_route(serial: SerialPath, principal: CanControl, services: ServicesDep) -> Response:
    """Cancel the running print; it cannot be resumed."""
    return await _run(services, principal, serial, "stop", lambda h: h.stop())


@router.post("/pushall", response_model=CommandOutcome, summary="Ask for a full report")
async def pushall_route(
    serial: SerialPath, principal: CanControl, services: ServicesDep
) -> Response:
    """Ask the printer for a full report (P1 printers: at most every few minutes)."""
    return await _run(services, principal, serial, "pushall", lambda h: h.pushall())


@router.post("/light", response_model=CommandOutcome, summary="Switch a light")
async def light_route(
    serial: SerialPath, body: LightRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Switch the chamber light (or another light the model has) on or off."""
    return await _run(
        services,
        principal,
        serial,
        "light",
        lambda h: h.set_light(body.on, body.node),
        details={"on": body.on, "node": body.node.value},
    )


@router.post("/speed", response_model=CommandOutcome, summary="Set the print speed")
async def speed_route(
    serial: SerialPath, body: SpeedRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Set the speed level of the running print."""
    return await _run(
        services,
        principal,
        serial,
        "speed",
        lambda h: h.set_speed(body.level),
        details={"level": int(body.level)},
    )


@router.post("/temperature", response_model=CommandOutcome, summary="Set a temperature")
async def temperature_route(
    serial: SerialPath, body: TemperatureRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Set the nozzle's, the bed's or the chamber's target temperature."""
    limits = {"nozzle": MAX_NOZZLE_C, "bed": MAX_BED_C, "chamber": MAX_CHAMBER_C}
    if body.target > limits[body.heater]:
        raise CommandError(
            f"{body.heater} target {body.target} °C is above {limits[body.heater]} °C"
        )
    details: dict[str, Any] = {"heater": body.heater, "target": body.target}
    if body.extruder is not None:
        details["extruder"] = body.extruder
    return await _run(services, principal, serial, "temperature", _heat(body), details=details)


def _heat(body: TemperatureRequest) -> Send:
    """The handle call that sets the requested heater's target."""
    if body.heater == "nozzle":
        return lambda h: h.set_nozzle_temp(body.target, body.extruder)
    if body.heater == "bed":
        return lambda h: h.set_bed_temp(body.target)
    return lambda h: h.set_chamber_temp(body.target)


@router.post("/fan", response_model=CommandOutcome, summary="Set a fan speed")
async def fan_route(
    serial: SerialPath, body: FanRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Set the part-cooling or auxiliary fan's speed."""
    return await _run(
        services,
        principal,
        serial,
        "fan",
        lambda h: h.set_fan(body.fan, body.percent),
        details={"fan": int(body.fan), "percent": body.percent},
    )


@router.post("/gcode", response_model=CommandOutcome, summary="Run G-code (admin)")
async def gcode_route(
    serial: SerialPath, body: GcodeRequest, principal: CanManagePrinters, services: ServicesDep
) -> Response:
    """Run raw G-code on the printer, with none of the printer's own checks: admins only."""
    return await _run(
        services,
        principal,
        serial,
        "gcode",
        lambda h: h.gcode_line(body.gcode),
        details={"gcode": body.gcode[:200]},
    )


@router.post("/ams/load", response_model=CommandOutcome, summary="Load filament")
async def ams_load_route(
    serial: SerialPath, body: AmsLoadRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Load filament from an AMS slot or the external spool."""
    return await _run(
        services,
        principal,
        serial,
        "ams_load",
        lambda h: h.ams_load(body.ams_id, body.slot_id, nozzle_temp=body.nozzle_temp),
        details={"ams_id": body.ams_id, "slot_id": body.slot_id},
    )


@router.post("/ams/unload", response_model=CommandOutcome, summary="Unload filament")
async def ams_unload_route(
    serial: SerialPath, body: AmsUnloadRequest, principal: CanControl, services: ServicesDep
) -> Response:
    """Pull the loaded filament back out of the nozzle."""
    return await _run(
        services,
        principal,
        serial,
        "ams_unload",
        lambda h: h.ams_unload(nozzle_temp=body.nozzle_temp),
    )
