"""The simulator's bind/detect responder over loopback, plain (3000) and TLS (3002)."""

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bambufarm.protocol.bind import (
    DetectReply,
    FrameDecoder,
    detect_request,
    encode_frame,
)
from bambufarm.protocol.ssdp import BindState, ConnectType
from bambufarm.simulator.bind import BindServer
from bambufarm.simulator.tls import SimulatorCA, server_context

SERIAL = "01P00A123456789"
REPLY = DetectReply(
    serial=SERIAL,
    model_code="C12",
    name="Sim P1S",
    version="01.08.00.00",
    bind=BindState.FREE,
    connect=ConnectType.LAN,
    dev_cap=1,
    sequence_id=3021,
)
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SimulatorCA:
    # RSA key generation costs ~0.1 s per key: one CA for the whole module.
    return SimulatorCA.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def plain_port() -> AsyncIterator[int]:
    server = BindServer(lambda: REPLY, None)
    yield await server.start("127.0.0.1", 0)
    await server.close()


@pytest.fixture
async def tls_port(ca: SimulatorCA) -> AsyncIterator[int]:
    server = BindServer(lambda: REPLY, server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"])))
    yield await server.start("127.0.0.1", 0)
    await server.close()


async def _exchange(
    port: int, request: bytes, context: ssl.SSLContext | None = None
) -> list[dict[str, Any]]:
    """Send one request, read until the server closes, return the decoded frames."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    return FrameDecoder().feed(data)


async def test_detect_over_plain_tcp(plain_port: int) -> None:
    (message,) = await _exchange(plain_port, detect_request("20000"))
    assert DetectReply.from_message(message) == REPLY


async def test_detect_over_tls_verified_against_the_ca(tls_port: int, ca: SimulatorCA) -> None:
    context = ssl.create_default_context(cafile=ca.cert_path)
    (message,) = await _exchange(tls_port, detect_request("20000"), context)
    assert DetectReply.from_message(message) == REPLY


async def test_detect_split_across_writes(plain_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain_port)
    try:
        request = detect_request("1")
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    (message,) = FrameDecoder().feed(data)
    assert message["login"]["id"] == SERIAL


@pytest.mark.parametrize(("sequence", "expected"), [("20001", 20001), (7, 7), ("x", 0)])
async def test_login_is_refused(plain_port: int, sequence: object, expected: int) -> None:
    request = encode_frame({"login": {"command": "login", "sequence_id": sequence}})
    (message,) = await _exchange(plain_port, request)
    assert message == {
        "login": {
            "sequence_id": expected,
            "command": "login_report",
            "status": "FAILURE",
            "reason": "not supported",
        }
    }


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\xa5\xa5\x0c\x00not json\xa7\xa7",
        b"\xa5\xa5\xff\xff" + b"x" * 100,
        encode_frame({"login": {"command": "unbind"}}),
        encode_frame({"print": {"command": "pushall"}}),
    ],
)
async def test_bad_input_closes_only_that_connection(plain_port: int, request_bytes: bytes) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", plain_port)
    try:
        assert await _exchange(plain_port, request_bytes) == []
        # The other connection, opened before, still gets its answer.
        idle_writer.write(detect_request("2"))
        await idle_writer.drain()
        (message,) = FrameDecoder().feed(await asyncio.wait_for(idle_reader.read(), TIMEOUT))
        assert DetectReply.from_message(message) == REPLY
    finally:
        idle_writer.close()
        await idle_writer.wait_closed()


async def test_idle_connection_times_out() -> None:
    server = BindServer(lambda: REPLY, None, timeout=0.1)
    port = await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        await server.close()


@pytest.mark.parametrize("use_tls", [False, True])
async def test_close_drops_open_connections(ca: SimulatorCA, use_tls: bool) -> None:
    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"])) if use_tls else None
    server = BindServer(lambda: REPLY, context)
    port = await server.start("127.0.0.1", 0)
    client = ssl.create_default_context(cafile=ca.cert_path) if use_tls else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        writer.write(b"\xa5")  # half a frame head: the server is now mid-read
        await writer.drain()
        await asyncio.wait_for(server.close(), TIMEOUT)
        # close() aborts connections: the client sees EOF, or a reset when the server had not
        # yet read the byte above.
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
