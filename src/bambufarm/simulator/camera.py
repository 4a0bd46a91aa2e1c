"""The JPEG camera stream of A1/P1 printers on TLS 6000 (protocol.md §3.2), simulated.

A client sends an 80-byte auth packet; with user `bblp` and the right access code it then gets
a frame every `interval` seconds (real printers: ~1 s): a 16-byte header as its own TLS write,
then the JPEG (protocol.md §12 rule 14: one client fails when both share a write). A wrong code
closes the connection at once, as firmware does.

Frames are drawn with Pillow from a `CameraScene` (who the printer is and how far the print is).
Each server renders once per interval and only while someone watches, so the cost grows with
viewers, not with printers: 1,000 simulated printers with nobody watching render nothing.
"""

import asyncio
import contextlib
import hmac
import io
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bambufarm.protocol.camera import (
    AUTH_SIZE,
    CAMERA_USER,
    decode_auth,
    encode_frame_header,
)
from bambufarm.protocol.errors import CameraError

logger = logging.getLogger(__name__)

# Clients read the auth reply within seconds; 10 s bounds a connection that never sends it.
DEFAULT_AUTH_TIMEOUT = 10.0
# 640x360 at quality 60 is ~8-15 KB and ~2 ms to draw and encode: cheap enough to render for
# many viewers on 2 cores, big enough to read the overlay.
FRAME_SIZE = (640, 360)
JPEG_QUALITY = 60
# A viewer that has not taken the last ~30 frames (~15 KB each) is too slow: skip frames for it
# instead of buffering without bound.
_MAX_BACKLOG = 512 * 1024
_READ_SIZE = 4096
_SSL_SHUTDOWN_TIMEOUT = 5.0

_BACKGROUND = (24, 26, 32)
_PLATE = (70, 74, 82)
_OBJECT = (0, 174, 66)  # Bambu green
_HEAD = (200, 200, 205)
_TEXT = (235, 235, 235)
_DIM = (150, 150, 160)


@dataclass(frozen=True, slots=True)
class CameraScene:
    """What the simulated camera shows: the printer and its job at one moment."""

    printer_name: str
    model_name: str
    gcode_state: str  # IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED
    progress: int  # percent, 0..100
    layer: int
    now: datetime
    total_layers: int = 0


def render_jpeg(scene: CameraScene) -> bytes:
    """One camera frame for `scene`: a small JPEG (starts FF D8, ends FF D9)."""
    width, height = FRAME_SIZE
    image = Image.new("RGB", FRAME_SIZE, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    big = ImageFont.load_default(size=24)
    small = ImageFont.load_default(size=16)
    progress = min(max(scene.progress, 0), 100)

    # The plate, the part growing with progress, and a toolhead that moves every second.
    plate_top = height - 70
    draw.rectangle((120, plate_top, width - 120, plate_top + 12), fill=_PLATE)
    part_height = int(160 * progress / 100)
    if part_height:
        draw.rectangle((260, plate_top - part_height, width - 260, plate_top), fill=_OBJECT)
    head_x = 200 + (scene.now.second % 10) * 24
    head_y = plate_top - part_height - 40
    draw.rectangle((head_x, head_y, head_x + 40, head_y + 30), fill=_HEAD)
    draw.line((0, head_y + 10, width, head_y + 10), fill=_DIM, width=2)

    draw.text((16, 12), scene.printer_name, font=big, fill=_TEXT)
    draw.text((16, 42), f"{scene.model_name} (simulated)", font=small, fill=_DIM)
    stamp = scene.now.strftime("%Y-%m-%d %H:%M:%S")
    draw.text((width - 16, 12), stamp, font=small, fill=_DIM, anchor="ra")
    layers = f"layer {scene.layer}/{scene.total_layers}" if scene.total_layers else ""
    status = f"{scene.gcode_state}  {progress}%  {layers}".rstrip()
    draw.text((16, height - 44), status, font=small, fill=_TEXT)
    bar_top = height - 20
    draw.rectangle((16, bar_top, width - 16, bar_top + 8), outline=_DIM)
    if progress:
        draw.rectangle(
            (16, bar_top, 16 + (width - 32) * progress // 100, bar_top + 8), fill=_OBJECT
        )

    output = io.BytesIO()
    image.save(output, format="JPEG", quality=JPEG_QUALITY)
    return output.getvalue()


class CameraServer:
    """A printer's TLS 6000 camera: checks the auth packet, then streams rendered frames."""

    def __init__(
        self,
        access_code: str,
        scene: Callable[[], CameraScene],
        ssl_context: ssl.SSLContext,
        *,
        interval: float = 1.0,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
    ) -> None:
        """Serve `scene()` every `interval` seconds to clients that know `access_code`."""
        if interval <= 0:
            raise ValueError(f"camera frame interval must be positive, not {interval!r}")
        self._access_code = access_code.encode()
        self._scene = scene
        self._ssl = ssl_context
        self._interval = interval
        self._auth_timeout = auth_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._viewers: set[asyncio.StreamWriter] = set()
        self._stream_task: asyncio.Task[None] | None = None
        self._last_frame: tuple[bytes, bytes] | None = None  # (header, JPEG) of this interval

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0 = ephemeral) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("camera server already started")
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=self._ssl, ssl_shutdown_timeout=_SSL_SHUTDOWN_TIMEOUT
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Stop listening, stop rendering and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._stream_task is not None:
            self._stream_task.cancel()
            await asyncio.wait([self._stream_task])
            self._stream_task = None
        for writer in list(self._connections):
            writer.transport.abort()
        tasks = list(self._connections.values())
        if tasks:
            await asyncio.wait(tasks)
        await server.wait_closed()

    @property
    def viewers(self) -> int:
        """How many authenticated clients are watching."""
        return len(self._viewers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[writer] = task
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self._auth_timeout):
                packet = await reader.readexactly(AUTH_SIZE)
            username, code = decode_auth(packet)
            if username != CAMERA_USER or not hmac.compare_digest(code.encode(), self._access_code):
                logger.info("camera: wrong credentials from %s, closing", peer)
                return
            self._watch(writer)
            while await reader.read(_READ_SIZE):
                continue  # anything a viewer sends after auth is ignored, as by firmware
        except CameraError as err:
            logger.info("camera: bad auth packet from %s: %s", peer, err)
        except TimeoutError:
            logger.debug("camera: no auth packet from %s within %.1f s", peer, self._auth_timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as err:
            logger.debug("camera connection from %s ended: %r", peer, err)
        except Exception:  # task boundary: one bad connection must not affect the others
            logger.exception("camera connection from %s crashed", peer)
        finally:
            self._viewers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self._connections.pop(writer, None)

    def _watch(self, writer: asyncio.StreamWriter) -> None:
        self._viewers.add(writer)
        if self._stream_task is None or self._stream_task.done():
            self._stream_task = asyncio.create_task(self._stream(), name="camera-stream")
        elif self._last_frame is not None:
            # The stream is mid-interval: a new viewer gets the current frame now, not later.
            _send(writer, *self._last_frame)

    async def _stream(self) -> None:
        try:
            while self._viewers:
                jpeg = render_jpeg(self._scene())
                frame = (encode_frame_header(len(jpeg)), jpeg)
                self._last_frame = frame
                for writer in list(self._viewers):
                    _send(writer, *frame)
                await asyncio.sleep(self._interval)
        except Exception:  # task boundary: log why the picture stopped
            logger.exception("camera stream stopped")
        finally:
            self._last_frame = None


def _send(writer: asyncio.StreamWriter, header: bytes, jpeg: bytes) -> None:
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size() > _MAX_BACKLOG:
        return  # gone, or too slow: drop this frame for this viewer only
    # Two writes, two TLS records: the header must arrive on its own (protocol.md §12 rule 14).
    writer.write(header)
    writer.write(jpeg)
