"""The fleet's SSDP listener on loopback, fed by the simulator's announcer (unicast only)."""

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from bambufarm.fleet.discovery import MAX_DISCOVERED, DiscoveredPrinter, DiscoveryListener
from bambufarm.protocol.ssdp import (
    BindState,
    ConnectType,
    SsdpNotify,
    format_notify,
    format_search,
)
from bambufarm.simulator.ssdp import SsdpAnnouncer

TIMEOUT = 5.0
P1S = SsdpNotify(
    serial="01P00A000000001",
    model_code="C12",
    name="Shop P1S",
    location="127.0.0.1",
    connect=ConnectType.LAN,
    bind=BindState.FREE,
    version="01.08.00.00",
    signal=-44,
    sec_link="secure",
    interface="wlan0",
    dev_cap=1,
)
A1 = dataclasses.replace(P1S, serial="03900A000000002", model_code="N2S", name="Bench A1")


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def listener() -> AsyncIterator[DiscoveryListener]:
    async with DiscoveryListener(host="127.0.0.1", port=0, clock=FakeClock()) as listening:
        assert listening.listening, listening.error
        yield listening


@pytest.fixture
async def sender() -> AsyncIterator[asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    yield transport
    transport.close()


async def until(listener: DiscoveryListener, ready: Callable[[], bool]) -> None:
    """Wait for announcements until `ready()` holds."""
    async with asyncio.timeout(TIMEOUT):
        while not ready():
            await listener.wait_datagram()


async def until_received(listener: DiscoveryListener, count: int) -> None:
    """Wait until the listener has read `count` datagrams."""
    await until(listener, lambda: listener.received >= count)


def serials(listener: DiscoveryListener, exclude: frozenset[str] = frozenset()) -> list[str]:
    return [p.serial for p in listener.discovered(exclude)]


async def test_the_simulators_announcer_is_discovered(listener: DiscoveryListener) -> None:
    assert listener.port is not None
    announcer = SsdpAnnouncer(lambda: P1S, [("127.0.0.1", listener.port)], interval=0.05)
    await announcer.start("127.0.0.1", 0)
    try:
        await until(listener, lambda: bool(listener.discovered()))
        assert listener.discovered() == [
            DiscoveredPrinter(
                serial="01P00A000000001",
                model_code="C12",
                model_name="P1S",
                name="Shop P1S",
                address="127.0.0.1",
                connect=ConnectType.LAN,
                bind=BindState.FREE,
                firmware="01.08.00.00",
                signal=-44,
                last_seen=1000.0,
            )
        ]
        # Repeated announcements keep one entry per serial.
        await until_received(listener, 3)
        assert serials(listener) == ["01P00A000000001"]
    finally:
        await announcer.close()
    # The announcer's close sends ssdp:byebye: the printer leaves the list at once.
    await until(listener, lambda: not listener.discovered())
    assert listener.malformed == 0


async def test_printers_already_added_are_left_out(listener: DiscoveryListener) -> None:
    assert listener.port is not None
    announcers = [
        SsdpAnnouncer(lambda n=n: n, [("127.0.0.1", listener.port)], interval=0.05)
        for n in (P1S, A1)
    ]
    for announcer in announcers:
        await announcer.start("127.0.0.1", 0)
    try:
        await until(listener, lambda: len(listener.discovered()) == 2)
        assert serials(listener) == ["01P00A000000001", "03900A000000002"]
        assert serials(listener, frozenset({"01P00A000000001"})) == ["03900A000000002"]
        assert [p.model_name for p in listener.discovered()] == ["P1S", "A1"]
    finally:
        for announcer in announcers:
            await announcer.close()


async def test_a_later_announcement_updates_the_entry(
    listener: DiscoveryListener, sender: asyncio.DatagramTransport
) -> None:
    assert listener.port is not None
    target = ("127.0.0.1", listener.port)
    sender.sendto(format_notify(P1S), target)
    await until(listener, lambda: bool(listener.discovered()))
    renamed = dataclasses.replace(P1S, name="Renamed", version="01.09.00.00", location="127.0.0.5")
    sender.sendto(format_notify(renamed), target)
    await until(listener, lambda: listener.discovered()[0].name == "Renamed")
    (printer,) = listener.discovered()
    assert (printer.firmware, printer.address) == ("01.09.00.00", "127.0.0.5")


async def test_quiet_printers_expire_after_three_intervals(
    sender: asyncio.DatagramTransport,
) -> None:
    clock = FakeClock()
    async with DiscoveryListener(host="127.0.0.1", port=0, clock=clock, interval=5) as listener:
        assert listener.port is not None
        assert listener.expire_after == 15
        sender.sendto(format_notify(P1S), ("127.0.0.1", listener.port))
        await until(listener, lambda: bool(listener.discovered()))
        clock.now += 14.9
        assert serials(listener) == ["01P00A000000001"]
        clock.now += 0.2
        assert listener.discovered() == []


async def test_malformed_datagrams_are_counted_and_never_fatal(
    listener: DiscoveryListener, sender: asyncio.DatagramTransport
) -> None:
    assert listener.port is not None
    target = ("127.0.0.1", listener.port)
    hostile = [
        b"\xff\xfe\x00garbage",
        b"NOTIFY * HTTP/1.1\r\nNT: urn:bambulab-com:device:3dprinter:1\r\n\r\n",  # no USN
        b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nUSN: x\r\n\r\n",  # not a printer
        b"X" * 5000,
    ]
    for datagram in hostile:
        sender.sendto(datagram, target)
    sender.sendto(format_search(), target)  # a slicer's M-SEARCH: not ours, not malformed
    await until_received(listener, len(hostile) + 1)
    assert listener.malformed == len(hostile)
    assert listener.discovered() == []
    sender.sendto(format_notify(P1S), target)
    await until(listener, lambda: bool(listener.discovered()))
    assert listener.listening


async def test_odd_location_and_unknown_model_still_list_the_printer(
    listener: DiscoveryListener, sender: asyncio.DatagramTransport
) -> None:
    assert listener.port is not None
    odd = dataclasses.replace(P1S, location="printer.local", model_code="Z99")
    sender.sendto(format_notify(odd), ("127.0.0.1", listener.port))
    await until(listener, lambda: bool(listener.discovered()))
    (printer,) = listener.discovered()
    assert printer.address == "127.0.0.1"  # the sender's address stands in
    assert (printer.model_code, printer.model_name) == ("Z99", "")


async def test_a_flood_of_invented_serials_is_capped(
    listener: DiscoveryListener, sender: asyncio.DatagramTransport
) -> None:
    assert listener.port is not None
    target = ("127.0.0.1", listener.port)
    total = MAX_DISCOVERED + 10
    # Batches small enough for the socket's receive buffer, so nothing is lost on the way.
    for start in range(0, total, 100):
        for n in range(start, min(start + 100, total)):
            sender.sendto(format_notify(dataclasses.replace(P1S, serial=f"01P00A{n:09d}")), target)
        await until_received(listener, min(start + 100, total))
    assert len(listener.discovered()) == MAX_DISCOVERED


async def test_a_taken_port_is_reported_not_raised() -> None:
    # Another SSDP listener that does not share its port, like a program without SO_REUSEPORT.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        listener = DiscoveryListener(host="127.0.0.1", port=port)
        assert not await listener.start()
        assert not listener.listening
        assert listener.port is None
        assert listener.error is not None
        message = str(listener.error)
        assert f"UDP port {port} is taken by another SSDP listener (Bambu Studio?" in message
        assert "add printers by IP address" in message
        assert listener.discovered() == []
        await listener.close()


async def test_an_address_not_on_this_host_is_reported() -> None:
    # 192.0.2.1 is TEST-NET-1: never a local address, so bind fails without any traffic.
    listener = DiscoveryListener(host="192.0.2.1", port=0)
    assert not await listener.start()
    assert listener.error is not None
    assert "cannot listen for printer announcements on 192.0.2.1:0" in str(listener.error)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        DiscoveryListener(interval=0)


async def test_close_releases_the_port_and_ends_waits() -> None:
    listener = DiscoveryListener(host="127.0.0.1", port=0)
    assert await listener.start()
    port = listener.port
    waiter = asyncio.create_task(listener.wait_datagram())
    await listener.close()
    await asyncio.wait_for(waiter, TIMEOUT)
    assert not listener.listening
    await asyncio.wait_for(listener.wait_datagram(), TIMEOUT)  # closed: returns at once
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # would raise EADDRINUSE if the socket were still open
