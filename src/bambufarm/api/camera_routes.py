"""`/api/v1/printers/{serial}/camera`: a printer's live camera, as MJPEG or one JPEG.

* `GET .../camera` — `multipart/x-mixed-replace` (MJPEG): a browser's `<img>` shows it live.
  Frames come from the fleet's `CameraHub`, which keeps ONE upstream stream per printer however
  many people watch, and closes it a few seconds after the last one leaves.
* `GET .../camera/snapshot` — the latest frame as `image/jpeg`.

Both need `view`. A camera that cannot be watched answers 409 `camera-unavailable` before any
image byte, with why in `detail`: the printer is off or refused the access code, its camera
streams RTSPS (X1, P2S, H2: not relayed by this server yet), or it has none. A stream that
breaks after it started simply ends; the page offers to start it again.
"""

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Path, Response
from fastapi.responses import StreamingResponse

from bambufarm.api.deps import CanView, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN
from bambufarm.api.schemas import problem_responses
from bambufarm.app import Services
from bambufarm.fleet.camera import CAMERA_PORT, CameraTarget
from bambufarm.fleet.errors import CameraUnavailable

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/printers/{serial}/camera",
    tags=["camera"],
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
BOUNDARY: Final = "bambufarm-frame"
MJPEG_TYPE: Final = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
# A live picture must never be served from a cache, nor buffered by a proxy (nginx honours
# X-Accel-Buffering): each part should reach the viewer when it is made.
STREAM_HEADERS: Final = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def camera_target(services: Services, serial: str) -> CameraTarget:
    """Where the printer's camera is and how to log in (404 for an unknown printer)."""
    printer = services.farm.printer(serial)
    config = printer.snapshot.config
    return CameraTarget(
        serial=serial,
        host=config.host,
        model=services.farm.handle(serial).model(),
        access_code=config.access_code,
        port=printer.record.camera_port or CAMERA_PORT,
    )


async def _first_frame(frames: AsyncGenerator[bytes, None]) -> bytes:
    """The first frame, or the hub's CameraUnavailable (the generator closed then)."""
    try:
        return await anext(frames)
    except BaseException:
        await frames.aclose()
        raise


def _part(frame: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
    ).encode("ascii")
    return head + frame + b"\r\n"


async def _mjpeg(
    serial: str, first: bytes, frames: AsyncGenerator[bytes, None]
) -> AsyncIterator[bytes]:
    # aclosing: a viewer who leaves (the server cancels this stream) releases the upstream
    # at once instead of when the garbage collector finalises the generator.
    async with contextlib.aclosing(frames):
        yield _part(first)
        try:
            async for frame in frames:
                yield _part(frame)
        except CameraUnavailable as err:
            # The status line has gone out: ending the stream is the only way left to say it.
            logger.info("camera stream of %s ended: %s", serial, err)


@router.get(
    "",
    response_class=StreamingResponse,
    summary="Watch a printer's camera (MJPEG)",
    responses={
        200: {
            "content": {"multipart/x-mixed-replace": {}},
            "description": "JPEG frames, one part each, as the printer sends them (~1/s).",
        }
    },
)
async def camera_route(
    serial: SerialPath, principal: CanView, services: ServicesDep
) -> StreamingResponse:
    """The camera live, for an `<img>`; 409 with the reason when it cannot be watched."""
    frames = services.camera.watch(camera_target(services, serial))
    first = await _first_frame(frames)
    return StreamingResponse(
        _mjpeg(serial, first, frames), media_type=MJPEG_TYPE, headers=STREAM_HEADERS
    )


@router.get(
    "/snapshot",
    response_class=Response,
    summary="One frame of a printer's camera",
    responses={200: {"content": {"image/jpeg": {}}, "description": "The latest frame."}},
)
async def snapshot_route(serial: SerialPath, principal: CanView, services: ServicesDep) -> Response:
    """The camera's latest frame as a JPEG; 409 with the reason when there is none."""
    frames = services.camera.watch(camera_target(services, serial))
    frame = await _first_frame(frames)
    await frames.aclose()
    return Response(frame, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
