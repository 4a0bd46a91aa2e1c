"""Find printers on the LAN from their SSDP NOTIFY datagrams (protocol.md §4).

Printers announce themselves about every 5 s to UDP 2021. The listener keeps the latest
announcement per serial, forgets printers that go quiet for ~3 intervals or say `ssdp:byebye`,
and never lets a bad datagram or a taken port stop the server: a port held by another SSDP
listener on this host (Bambu Studio, Bambuddy) is reported in `error`, and printers can still
be added by address.
"""

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bambufarm.fleet.errors import DiscoveryError
from bambufarm.protocol.errors import ModelError, SsdpError
from bambufarm.protocol.models import model_by_code
from bambufarm.protocol.ssdp import (
    SSDP_PORT,
    BindState,
    ConnectType,
    SsdpNotify,
    parse_datagram,
)

logger = logging.getLogger(__name__)

ANNOUNCE_INTERVAL = 5.0  # seconds between NOTIFYs of one printer (protocol.md §4.1)
# Three missed announcements: one lost Wi-Fi datagram must not make a printer flicker.
EXPIRY_INTERVALS = 3
# A LAN has tens to a few thousand printers; a flood of invented serials must not grow memory
# without bound, so serials beyond this many are ignored until others expire.
MAX_DISCOVERED = 4096


@dataclass(frozen=True, slots=True)
class DiscoveredPrinter:
    """A printer seen on the LAN: who it is, where it is, and when it last said so."""

    serial: str
    model_code: str  # DevModel, e.g. "C12"
    model_name: str  # e.g. "P1S"; "" for a model code this version does not know
    name: str  # the name given on the printer
    address: str  # IPv4 to connect to
    connect: ConnectType  # lan / cloud / farm
    bind: BindState
    firmware: str
    signal: int | None  # Wi-Fi RSSI in dBm, None on Ethernet
    last_seen: float  # the listener's clock


class DiscoveryListener:
    """Listens for SSDP NOTIFYs on UDP and keeps the printers they announce."""

    def __init__(
        self,
        *,
        port: int = SSDP_PORT,
        host: str = "0.0.0.0",  # noqa: S104 - printers broadcast to every interface
        clock: Callable[[], float] = time.monotonic,
        interval: float = ANNOUNCE_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"announce interval must be positive, not {interval!r}")
        self.host = host
        self.requested_port = port
        self._clock = clock
        self.expire_after = EXPIRY_INTERVALS * interval
        self._printers: dict[str, DiscoveredPrinter] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._changed: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self.error: DiscoveryError | None = None  # why the listener is not listening
        self.port: int | None = None  # the bound port once listening
        self.received = 0  # datagrams read
        self.malformed = 0  # datagrams that were not Bambu SSDP

    @property
    def listening(self) -> bool:
        """True while the socket is bound and open."""
        return self._transport is not None

    async def start(self) -> bool:
        """Bind and listen; on failure set `error` and return False instead of raising."""
        if self._transport is not None:
            return True
        try:
            sock = _bind(self.host, self.requested_port)
        except DiscoveryError as err:
            self.error = err
            logger.warning("%s", err)
            return False
        loop = asyncio.get_running_loop()
        closed = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_datagram, closed), sock=sock
        )
        self._closed = closed
        self._transport = transport
        self.error = None
        self.port = transport.get_extra_info("sockname")[1]
        logger.info("listening for printer SSDP announcements on %s:%d", self.host, self.port)
        return True

    async def close(self) -> None:
        """Stop listening (the printers seen so far are kept)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
            if self._closed is not None:
                await self._closed  # the socket is really closed once connection_lost ran
        self._wake()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def discovered(self, exclude: Collection[str] = ()) -> list[DiscoveredPrinter]:
        """Printers heard from recently, by serial, leaving out the serials in `exclude`."""
        self._expire()
        return [p for serial, p in sorted(self._printers.items()) if serial not in exclude]

    def forget(self, serial: str) -> None:
        """Drop a printer until it announces itself again."""
        self._printers.pop(serial, None)

    async def wait_datagram(self) -> None:
        """Wait until the next datagram has been handled, good or bad (or the listener closes)."""
        if self._transport is None:
            return
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    def _on_datagram(self, data: bytes, address: tuple[str, int]) -> None:
        self.received += 1
        try:
            self._handle(data, address)
        finally:
            self._wake()

    def _handle(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            message = parse_datagram(data, address[0])
        except SsdpError as err:
            self.malformed += 1
            logger.debug("ignoring datagram from %s:%d: %s", address[0], address[1], err)
            return
        if not isinstance(message, SsdpNotify):
            return  # an M-SEARCH from a slicer: printers answer those, we do not
        if not message.alive:
            self._printers.pop(message.serial, None)
            return
        if message.serial not in self._printers and len(self._printers) >= MAX_DISCOVERED:
            self._expire()
            if len(self._printers) >= MAX_DISCOVERED:
                logger.debug(
                    "ignoring %s: %d printers already discovered", message.serial, MAX_DISCOVERED
                )
                return
        self._printers[message.serial] = self._printer(message, address[0])

    def _printer(self, notify: SsdpNotify, source_ip: str) -> DiscoveredPrinter:
        try:
            model_name = model_by_code(notify.model_code).name
        except ModelError:
            model_name = ""  # a model newer than this table: still worth listing
        return DiscoveredPrinter(
            serial=notify.serial,
            model_code=notify.model_code,
            model_name=model_name,
            name=notify.name,
            address=_address(notify.location, source_ip),
            connect=notify.connect,
            bind=notify.bind,
            firmware=notify.version,
            signal=notify.signal,
            last_seen=self._clock(),
        )

    def _expire(self) -> None:
        oldest = self._clock() - self.expire_after
        stale = [serial for serial, p in self._printers.items() if p.last_seen < oldest]
        for serial in stale:
            del self._printers[serial]

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)


class _Endpoint(asyncio.DatagramProtocol):
    """Hands each datagram to the listener."""

    def __init__(
        self, received: Callable[[bytes, tuple[str, int]], None], closed: asyncio.Future[None]
    ) -> None:
        self._received = received
        self._closed = closed

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Pass one datagram on."""
        self._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error on the socket: nothing we sent, nothing to do."""
        logger.debug("SSDP listener socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Resolve the listener's close() wait."""
        if not self._closed.done():
            self._closed.set_result(None)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Share the port with other SSDP listeners that allow it (Studio sets SO_REUSEADDR);
        # receiving broadcasts needs no SO_BROADCAST, which only matters for sending.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise DiscoveryError(
                f"UDP port {port} is taken by another SSDP listener (Bambu Studio? Bambuddy?) "
                f"on this host, so printer discovery is off; close that program and restart, "
                "or add printers by IP address"
            ) from err
        raise DiscoveryError(
            f"cannot listen for printer announcements on {host}:{port}: {err.strerror}; "
            "printer discovery is off, add printers by IP address"
        ) from err
    return sock


def _address(location: str, source_ip: str) -> str:
    # Location is the printer's bare IPv4; anything else falls back to the sender's address.
    try:
        return str(ipaddress.IPv4Address(location))
    except ValueError:
        return source_ip
