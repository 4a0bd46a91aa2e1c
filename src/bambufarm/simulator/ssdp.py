"""A simulated printer's SSDP announcer: NOTIFY to explicit targets, answers to M-SEARCH.

Real printers broadcast to 255.255.255.255:2021 every ~5 s (protocol.md §4.1). The simulator
never broadcasts or multicasts (design.md §5): it sends unicast NOTIFYs to the targets it is
given (by default the caller passes 127.0.0.1:2021, where a manager on the same host listens),
from its own UDP socket, which also answers M-SEARCH with a unicast search reply.
"""

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Sequence

from bambufarm.protocol.errors import SsdpError
from bambufarm.protocol.ssdp import (
    SsdpNotify,
    SsdpSearch,
    format_notify,
    format_search_response,
    parse_datagram,
)

logger = logging.getLogger(__name__)

DEFAULT_TARGETS = (("127.0.0.1", 2021),)
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class SsdpAnnouncer:
    """Announces one printer every `interval` seconds and answers searches, from one socket."""

    def __init__(
        self,
        notify: Callable[[], SsdpNotify],
        targets: Sequence[tuple[str, int]],
        *,
        interval: float = 5.0,
    ) -> None:
        """`notify` gives the current announcement; `targets` are unicast (IP, port) pairs."""
        if interval <= 0:
            raise ValueError(f"announce interval must be positive, not {interval!r}")
        self._notify = notify
        self._targets = tuple(_unicast(host, port) for host, port in targets)
        self._interval = interval
        self._transport: asyncio.DatagramTransport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind the UDP socket (port 0 = ephemeral), send the first NOTIFY, return the port."""
        if self._transport is not None:
            raise RuntimeError("SSDP announcer already started")
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_datagram, self._closed), local_addr=(host, port)
        )
        self._transport = transport
        self._task = asyncio.create_task(self._announce(), name=f"ssdp-announce-{host}:{port}")
        bound: int = transport.get_extra_info("sockname")[1]
        return bound

    async def close(self) -> None:
        """Stop announcing, send `ssdp:byebye` to every target and close the socket."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        try:
            byebye = format_notify(dataclasses.replace(self._notify(), alive=False))
            for target in self._targets:
                transport.sendto(byebye, target)
        except SsdpError:
            logger.exception("SSDP byebye could not be built")
        finally:
            transport.close()
            if self._closed is not None:
                await self._closed

    async def _announce(self) -> None:
        while True:
            transport = self._transport
            if transport is None:
                return
            try:
                datagram = format_notify(self._notify())
            except Exception:  # task boundary: a bad announcement must not stop the loop
                logger.exception("SSDP NOTIFY could not be built")
            else:
                for target in self._targets:
                    transport.sendto(datagram, target)
            await asyncio.sleep(self._interval)

    def _on_datagram(self, data: bytes, address: tuple[str, int]) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            message = parse_datagram(data, address[0])
        except SsdpError as err:
            logger.debug("ignoring datagram from %s:%d: %s", address[0], address[1], err)
            return
        if isinstance(message, SsdpSearch):
            try:
                reply = format_search_response(self._notify())
            except SsdpError:
                logger.exception("SSDP search reply could not be built")
                return
            transport.sendto(reply, address)


class _Endpoint(asyncio.DatagramProtocol):
    """Hands datagrams to the announcer and reports when the socket is closed."""

    def __init__(
        self,
        received: Callable[[bytes, tuple[str, int]], None],
        closed: asyncio.Future[None] | None,
    ) -> None:
        self._received = received
        self._closed = closed

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Pass one datagram on."""
        self._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier send (e.g. nobody listens on a target): not fatal."""
        logger.debug("SSDP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Resolve the announcer's close() wait."""
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)


def _unicast(host: str, port: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"SSDP target {host!r} must be an IP address") from None
    if address.is_multicast or address == _LIMITED_BROADCAST:
        raise ValueError(f"SSDP target {host} is broadcast/multicast; the simulator sends unicast")
    if not 0 < port < 65536:
        raise ValueError(f"SSDP target port {port} is out of range")
    return host, port
