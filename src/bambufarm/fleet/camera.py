"""Live camera for A1/P1 printers: one upstream TLS-6000 stream per printer, fanned out.

Printers serve few camera clients and every stream costs the printer CPU, so the hub opens ONE
upstream connection per printer, only while somebody watches: the first watcher opens it, and
when the last one leaves it stays open for a short linger (a page reload should not reconnect)
and then closes. Watchers see the latest frame: one that reads slowly skips frames instead of
queueing them, so it never holds memory or delays the others.

X1/H2/P2S printers stream RTSPS (H.264) instead; those are not supported yet.
"""

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from bambufarm.fleet.errors import CameraUnavailable, TlsVerificationFailed
from bambufarm.fleet.tls import PinStore, TlsPolicy, check_peer, client_context, handshake_failure
from bambufarm.protocol.camera import (
    CAMERA_USER,
    FRAME_HEADER_SIZE,
    decode_frame_header,
    encode_auth,
)
from bambufarm.protocol.errors import CameraError
from bambufarm.protocol.models import CameraKind, PrinterModel

logger = logging.getLogger(__name__)

CAMERA_PORT = 6000
# Long enough to survive a page reload or switching tabs, short enough that a printer is not
# streaming to nobody for long.
DEFAULT_LINGER = 5.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# Printers send a frame every 1-2 s (protocol.md §3.2); 20 s of silence means the stream is dead.
DEFAULT_FRAME_TIMEOUT = 20.0
# asyncio waits 30 s by default for the peer's close_notify; a printer that vanished would hold
# a shutdown that long.
_SSL_SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class CameraTarget:
    """Where a printer's camera is and how to log in (the access code stays out of reprs)."""

    serial: str
    host: str
    model: PrinterModel
    access_code: str = field(repr=False)
    port: int = CAMERA_PORT


class _Feed:
    """One printer's upstream stream and the latest frame it produced."""

    __slots__ = ("_changed", "error", "frame", "linger", "sequence", "target", "task", "viewers")

    def __init__(self, target: CameraTarget) -> None:
        self.target = target
        self.viewers = 0
        self.frame = b""
        self.sequence = 0  # frames received; a watcher remembers the last one it saw
        self.error: str | None = None  # set once the upstream has ended
        self.task: asyncio.Task[None] | None = None
        self.linger: asyncio.TimerHandle | None = None
        self._changed: asyncio.Future[None] | None = None

    def publish(self, frame: bytes) -> None:
        self.frame = frame
        self.sequence += 1
        self._wake()

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self._wake()

    async def changed(self) -> None:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        # Shielded: one watcher being cancelled must not cancel the wait of the others.
        await asyncio.shield(self._changed)

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)


class CameraHub:
    """Shares one upstream camera stream per printer among any number of watchers."""

    def __init__(
        self,
        policy: TlsPolicy,
        pins: PinStore | None = None,
        *,
        context: ssl.SSLContext | None = None,
        linger: float = DEFAULT_LINGER,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    ) -> None:
        """`context` defaults to `client_context(policy)`; pass the fleet's to share it."""
        self._policy = policy
        self._pins = pins
        self._context = context if context is not None else client_context(policy)
        self._linger = linger
        self._connect_timeout = connect_timeout
        self._frame_timeout = frame_timeout
        self._feeds: dict[str, _Feed] = {}
        self._closed = False
        self.connects = 0  # upstream connections opened, for metrics and tests

    @property
    def upstreams(self) -> int:
        """Printers whose camera stream is open (or opening) right now."""
        return sum(1 for feed in self._feeds.values() if feed.task is not None)

    def viewers(self, serial: str) -> int:
        """How many watchers the printer's camera has."""
        feed = self._feeds.get(serial)
        return 0 if feed is None else feed.viewers

    async def watch(self, target: CameraTarget) -> AsyncGenerator[bytes, None]:
        """JPEG frames from the printer's camera, latest first; raises CameraUnavailable.

        Leaving the loop releases the stream; wrap in `contextlib.aclosing` to release it at
        once rather than when the event loop finalises the generator.
        """
        _check_supported(target)
        feed = self._join(target)
        try:
            seen = 0
            while True:
                if feed.sequence > seen:
                    seen = feed.sequence
                    yield feed.frame
                    continue
                if feed.error is not None:
                    raise CameraUnavailable(feed.error, serial=target.serial)
                await feed.changed()
        finally:
            self._leave(feed)

    async def close(self) -> None:
        """Close every upstream stream; watchers get CameraUnavailable."""
        self._closed = True
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            self._stop(feed, "camera: the server is shutting down")
        tasks = [feed.task for feed in feeds if feed.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _join(self, target: CameraTarget) -> _Feed:
        if self._closed:
            raise CameraUnavailable("camera: the server is shutting down", serial=target.serial)
        feed = self._feeds.get(target.serial)
        if feed is None:
            feed = _Feed(target)
            self._feeds[target.serial] = feed
            feed.task = asyncio.create_task(self._run(feed), name=f"camera-{target.serial}")
            self.connects += 1
        feed.viewers += 1
        if feed.linger is not None:
            feed.linger.cancel()
            feed.linger = None
        return feed

    def _leave(self, feed: _Feed) -> None:
        feed.viewers -= 1
        if feed.viewers > 0 or feed.task is None:
            return
        if feed.error is not None or self._linger <= 0:
            self._retire(feed)
            return
        loop = asyncio.get_running_loop()
        feed.linger = loop.call_later(self._linger, self._retire_if_idle, feed)

    def _retire_if_idle(self, feed: _Feed) -> None:
        feed.linger = None
        if feed.viewers == 0:
            self._retire(feed)

    def _retire(self, feed: _Feed) -> None:
        if self._feeds.get(feed.target.serial) is feed:
            del self._feeds[feed.target.serial]
        self._stop(feed, "camera: stream closed")

    def _stop(self, feed: _Feed, reason: str) -> None:
        if feed.linger is not None:
            feed.linger.cancel()
            feed.linger = None
        feed.fail(reason)
        if feed.task is not None and not feed.task.done():
            feed.task.cancel()

    async def _run(self, feed: _Feed) -> None:
        target = feed.target
        try:
            await self._stream(feed)
        except CameraUnavailable as err:
            logger.info("%s", err)
            feed.fail(str(err))
        except asyncio.CancelledError:
            feed.fail("camera: stream closed")
            raise
        except Exception:  # task boundary: say why the picture stopped, then let watchers know
            logger.exception("camera stream of %s crashed", target.serial)
            feed.fail(f"camera of {target.serial}: internal error, see the server log")
        finally:
            # A failed stream leaves the table so the next watcher starts a fresh one.
            if self._feeds.get(target.serial) is feed and feed.error is not None:
                del self._feeds[target.serial]

    async def _stream(self, feed: _Feed) -> None:
        target = feed.target
        where = f"camera of {target.serial} at {target.host}:{target.port}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=self._context,
                    ssl_shutdown_timeout=_SSL_SHUTDOWN_TIMEOUT,
                )
        except TimeoutError:
            raise CameraUnavailable(
                f"{where}: no answer within {self._connect_timeout:g} s; is the printer on?",
                serial=target.serial,
            ) from None
        except ssl.SSLError as err:
            raise _from_tls(target, handshake_failure(target.serial, err, self._policy)) from err
        except OSError as err:
            raise CameraUnavailable(
                f"{where}: cannot connect ({err.strerror or err}); is the printer on and "
                "is LAN-mode liveview enabled?",
                serial=target.serial,
            ) from err
        try:
            await self._read_frames(feed, reader, writer, where)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await writer.wait_closed()

    async def _read_frames(
        self,
        feed: _Feed,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        where: str,
    ) -> None:
        target = feed.target
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            check_peer(
                target.serial, ssl_object, self._policy, self._pins, pin_name=_pin_name(target)
            )
        except TlsVerificationFailed as err:
            raise _from_tls(target, err) from err
        logger.debug("camera of %s: connected, waiting for frames", target.serial)
        try:
            writer.write(encode_auth(CAMERA_USER, target.access_code))
            await writer.drain()
            while True:
                async with asyncio.timeout(self._frame_timeout):
                    header = decode_frame_header(await reader.readexactly(FRAME_HEADER_SIZE))
                    frame = await reader.readexactly(header.size)
                feed.publish(frame)
        except asyncio.IncompleteReadError as err:
            if feed.sequence == 0 and not err.partial:
                # Firmware closes right after a wrong access code (protocol.md §3.2 item 5).
                raise CameraUnavailable(
                    f"{where}: the printer closed the stream right after login; check the "
                    "access code (printer screen: Settings > LAN Only Mode)",
                    serial=target.serial,
                ) from err
            raise CameraUnavailable(
                f"{where}: the printer closed the stream", serial=target.serial
            ) from err
        except TimeoutError:
            raise CameraUnavailable(
                f"{where}: no frame for {self._frame_timeout:g} s", serial=target.serial
            ) from None
        except CameraError as err:
            raise CameraUnavailable(
                f"{where}: the printer sent a malformed frame ({err})", serial=target.serial
            ) from err
        except (ConnectionError, ssl.SSLError) as err:
            raise CameraUnavailable(
                f"{where}: connection lost ({err})", serial=target.serial
            ) from err


def _check_supported(target: CameraTarget) -> None:
    kind = target.model.camera
    if kind is CameraKind.RTSPS:
        raise CameraUnavailable(
            f"camera: unsupported for X1/H2 (RTSPS) yet; {target.serial} is a "
            f"{target.model.name}, whose camera streams RTSPS",
            serial=target.serial,
        )
    if kind is not CameraKind.JPEG:
        raise CameraUnavailable(
            f"camera: {target.serial} ({target.model.name}) has no camera", serial=target.serial
        )


def _pin_name(target: CameraTarget) -> str:
    # The camera may present another certificate than MQTT: keep its pin apart.
    return f"{target.serial}/camera"


def _from_tls(target: CameraTarget, err: TlsVerificationFailed) -> CameraUnavailable:
    return CameraUnavailable(f"camera: {err}", serial=target.serial)
