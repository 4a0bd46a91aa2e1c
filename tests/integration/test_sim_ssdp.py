"""The simulator's SSDP announcer over real loopback UDP sockets (unicast only)."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from bambufarm.protocol.ssdp import (
    BindState,
    ConnectType,
    SsdpNotify,
    format_search,
    parse_datagram,
)
from bambufarm.simulator.ssdp import SsdpAnnouncer

NOTIFY = SsdpNotify(
    serial="01P00A123456789",
    model_code="C12",
    name="Sim P1S",
    location="127.0.0.1",
    connect=ConnectType.LAN,
    bind=BindState.FREE,
    version="01.08.00.00",
    signal=-44,
    sec_link="secure",
    interface="wlan0",
    dev_cap=1,
)
TIMEOUT = 5.0


class Listener(asyncio.DatagramProtocol):
    """A UDP socket that queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))

    async def next(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, asyncio.DatagramTransport, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Listener, local_addr=("127.0.0.1", 0))
    yield protocol, transport, transport.get_extra_info("sockname")[1]
    transport.close()


async def test_notify_reaches_an_explicit_target_and_repeats(
    listener: tuple[Listener, asyncio.DatagramTransport, int],
) -> None:
    protocol, _, port = listener
    announcer = SsdpAnnouncer(lambda: NOTIFY, [("127.0.0.1", port)], interval=0.05)
    announcer_port = await announcer.start("127.0.0.1", 0)
    try:
        data, source = await protocol.next()
        assert source == ("127.0.0.1", announcer_port)
        assert data.startswith(b"NOTIFY * HTTP/1.1\r\n")
        assert parse_datagram(data, source[0]) == NOTIFY
        again, _ = await protocol.next()  # the next interval's announcement
        assert parse_datagram(again, source[0]) == NOTIFY
    finally:
        await announcer.close()


async def test_each_notify_reflects_the_current_state(
    listener: tuple[Listener, asyncio.DatagramTransport, int],
) -> None:
    protocol, _, port = listener
    names = iter(f"printer {n}" for n in range(1000))
    announcer = SsdpAnnouncer(
        lambda: dataclasses.replace(NOTIFY, name=next(names)), [("127.0.0.1", port)], interval=0.05
    )
    await announcer.start("127.0.0.1", 0)
    try:
        first = parse_datagram((await protocol.next())[0], "127.0.0.1")
        second = parse_datagram((await protocol.next())[0], "127.0.0.1")
        assert isinstance(first, SsdpNotify)
        assert isinstance(second, SsdpNotify)
        assert (first.name, second.name) == ("printer 0", "printer 1")
    finally:
        await announcer.close()


async def test_close_sends_byebye(
    listener: tuple[Listener, asyncio.DatagramTransport, int],
) -> None:
    protocol, _, port = listener
    announcer = SsdpAnnouncer(lambda: NOTIFY, [("127.0.0.1", port)], interval=60)
    await announcer.start("127.0.0.1", 0)
    alive = parse_datagram((await protocol.next())[0], "127.0.0.1")
    await announcer.close()
    byebye = parse_datagram((await protocol.next())[0], "127.0.0.1")
    assert alive == NOTIFY
    assert byebye == dataclasses.replace(NOTIFY, alive=False)


async def test_m_search_gets_a_unicast_reply(
    listener: tuple[Listener, asyncio.DatagramTransport, int],
) -> None:
    protocol, transport, _ = listener
    announcer = SsdpAnnouncer(lambda: NOTIFY, [], interval=60)
    announcer_port = await announcer.start("127.0.0.1", 0)
    try:
        # Foreign SSDP and junk are ignored; the announcer keeps answering afterwards.
        transport.sendto(
            b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n", ("127.0.0.1", announcer_port)
        )
        transport.sendto(b"\xff" * 100, ("127.0.0.1", announcer_port))
        transport.sendto(format_search(), ("127.0.0.1", announcer_port))
        data, source = await protocol.next()
        assert source == ("127.0.0.1", announcer_port)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"NTS:" not in data
        assert parse_datagram(data, source[0]) == NOTIFY
        assert protocol.received.empty()
    finally:
        await announcer.close()


@pytest.mark.parametrize(
    "target",
    [("255.255.255.255", 2021), ("239.255.255.250", 1990), ("ff02::c", 2021), ("printer", 2021)],
)
def test_broadcast_multicast_and_names_are_refused(target: tuple[str, int]) -> None:
    with pytest.raises(ValueError, match=r"broadcast|IP address"):
        SsdpAnnouncer(lambda: NOTIFY, [target])
