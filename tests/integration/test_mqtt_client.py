"""protocol.mqtt (the fleet's MQTT/TLS client) against the simulator's broker and scripted peers."""

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bambufarm.protocol.errors import MqttPacketError, ProtocolError
from bambufarm.protocol.mqtt import (
    MqttClient,
    MqttConnectError,
    MqttConnectionError,
    MqttSubscribeError,
    MqttTlsError,
    connect,
)
from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Suback,
    encode,
    encode_remaining_length,
)
from bambufarm.simulator.broker import MqttBroker
from bambufarm.simulator.tls import SimulatorCA, server_context

SERIAL = "01P00A000000001"
CODE = "12345678"
TOPIC = f"device/{SERIAL}/report"
WAIT = 5.0


class Behaviour:
    """A broker behaviour that checks the login and records published requests."""

    def __init__(self, refuse_subscribe: bool = False) -> None:
        self.refuse_subscribe = refuse_subscribe
        self.published: list[tuple[str, bytes]] = []
        self.logins: list[tuple[str | None, bytes | None]] = []

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        self.logins.append((username, password))
        return username == "bblp" and password == CODE.encode()

    def allow_subscribe(self, topic_filter: str) -> bool:
        return not self.refuse_subscribe

    def on_publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))

    def on_subscribed(self, topic_filter: str) -> None:
        """Nothing is sent on subscribe: each test publishes what it needs."""


class Collect:
    """A sink that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def ca(tmp_path: Path) -> SimulatorCA:
    return SimulatorCA.load_or_create(tmp_path / "ca")


def client_context(ca: SimulatorCA) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.check_hostname = False  # the leaf names the serial, not 127.0.0.1
    return context


@asynccontextmanager
async def broker(ca: SimulatorCA, behaviour: Behaviour) -> AsyncIterator[tuple[MqttBroker, int]]:
    server = MqttBroker(behaviour, server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"])))
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.close()


async def login(ca: SimulatorCA, port: int, **kwargs: object) -> MqttClient:
    options: dict[str, object] = {
        "ssl_context": client_context(ca),
        "server_hostname": SERIAL,
        "username": "bblp",
        "password": CODE,
        "client_id": "test-client",
        "timeout": WAIT,
    }
    options.update(kwargs)
    return await connect("127.0.0.1", port, **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- happy path


async def test_subscribe_receive_publish_and_close(ca: SimulatorCA) -> None:
    behaviour = Behaviour()
    async with broker(ca, behaviour) as (server, port):
        client = await login(ca, port)
        sink = Collect()
        client.sink = sink
        assert await client.subscribe(TOPIC) == 0
        assert client.peer_certificate is not None
        payloads = [b'{"print":{"n":%d}}' % i for i in range(50)]
        for payload in payloads:
            server.publish(TOPIC, payload)
        await sink.wait_for(len(payloads))
        assert sink.messages == [(TOPIC, p) for p in payloads]

        await client.publish(f"device/{SERIAL}/request", b'{"a":1}')
        # QoS 1 waits for PUBACK; the broker handles a connection's packets in order, so the
        # QoS 0 message before it has arrived too.
        await client.publish(f"device/{SERIAL}/request", b'{"b":2}', qos=1)
        assert behaviour.published == [
            (f"device/{SERIAL}/request", b'{"a":1}'),
            (f"device/{SERIAL}/request", b'{"b":2}'),
        ]
        await client.close()
        assert client.is_closed
        assert await client.closed is None
        assert behaviour.logins == [("bblp", CODE.encode())]


async def test_large_payloads_across_many_reads_arrive_whole(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour()) as (server, port):
        client = await login(ca, port)
        sink = Collect()
        client.sink = sink
        await client.subscribe(TOPIC)
        big = bytes(range(256)) * 1024  # 256 KiB: many TLS records, many receive buffers
        small = b"{}"
        server.publish(TOPIC, big)
        server.publish(TOPIC, small)
        server.publish(TOPIC, big[:70_000])
        await sink.wait_for(3)
        await client.close()
    assert [p for _t, p in sink.messages] == [big, small, big[:70_000]]


async def test_messages_without_a_sink_are_counted_not_lost_silently(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour()) as (server, port):
        client = await login(ca, port)
        await client.subscribe(TOPIC)
        server.publish(TOPIC, b"{}")
        # A SUBACK comes after that message on the same stream: once it is back, the message
        # has been handled, without a sink.
        await client.subscribe(f"device/{SERIAL}/other")
        sink = Collect()
        client.sink = sink
        server.publish(TOPIC, b"[]")
        await sink.wait_for(1)
        await client.close()
    assert client.dropped == 1
    assert sink.messages == [(TOPIC, b"[]")]


# ----------------------------------------------------------------------------- refusals


async def test_wrong_password_is_connack_5_not_authorised(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour()) as (_server, port):
        with pytest.raises(MqttConnectError) as caught:
            await login(ca, port, password="wrong!!!")
    assert caught.value.code is ConnackCode.NOT_AUTHORIZED
    assert caught.value.not_authorised
    assert "access code" in str(caught.value)
    assert "wrong!!!" not in str(caught.value)
    assert isinstance(caught.value, ProtocolError)


async def test_server_unavailable_is_a_refusal_that_may_be_retried(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour()) as (server, port):
        server.max_clients = 1
        first = await login(ca, port)
        with pytest.raises(MqttConnectError) as caught:
            await login(ca, port, client_id="second")
        await first.close()
    assert caught.value.code is ConnackCode.SERVER_UNAVAILABLE
    assert not caught.value.not_authorised


async def test_suback_0x80_raises(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour(refuse_subscribe=True)) as (_server, port):
        client = await login(ca, port)
        with pytest.raises(MqttSubscribeError, match="refused the subscription"):
            await client.subscribe(TOPIC)
        await client.close()


async def test_untrusted_certificate_is_a_tls_error(ca: SimulatorCA, tmp_path: Path) -> None:
    other = SimulatorCA.load_or_create(tmp_path / "other-ca")
    async with broker(ca, Behaviour()) as (_server, port):
        with pytest.raises(MqttTlsError) as caught:
            await login(ca, port, ssl_context=client_context(other))
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_verify_peer_refusal_stops_before_the_password_is_sent(ca: SimulatorCA) -> None:
    behaviour = Behaviour()
    seen: list[object] = []

    def refuse(ssl_object: ssl.SSLObject) -> None:
        seen.append(ssl_object.getpeercert())
        raise ValueError("not the printer we expected")

    async with broker(ca, behaviour) as (_server, port):
        with pytest.raises(ValueError, match="not the printer"):
            await login(ca, port, verify_peer=refuse)
        await asyncio.sleep(0.1)  # give a (wrongly) sent CONNECT time to reach the broker
    assert len(seen) == 1
    assert behaviour.logins == []


async def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MqttConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
        await connect(
            "127.0.0.1",
            port,
            ssl_context=ssl.create_default_context(),
            server_hostname=SERIAL,
            username="bblp",
            password=CODE,
            client_id="x",
        )


# ----------------------------------------------------------------------------- scripted peers

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def scripted(ca: SimulatorCA, script: Script, *, tls: bool = True) -> AsyncIterator[int]:
    """A one-off server on loopback that runs `script` for each connection."""
    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"])) if tls else None
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await script(reader, writer)
        except (ConnectionError, ssl.SSLError):
            return  # the client hung up mid-script: that is what some tests provoke

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def accept_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read one CONNECT and accept it."""
    await reader.read(1024)
    writer.write(encode(Connack(ConnackCode.ACCEPTED)))
    await writer.drain()


async def test_silent_peer_times_out_naming_the_stage(ca: SimulatorCA) -> None:
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the ClientHello

    async with scripted(ca, silent, tls=False) as port:
        with pytest.raises(MqttConnectionError, match=r"timed out after 0.3 s .* TLS handshake"):
            await login(ca, port, timeout=0.3)


async def test_garbage_from_the_peer_closes_with_the_packet_error(ca: SimulatorCA) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_login(reader, writer)
        await reader.read(1024)  # SUBSCRIBE
        writer.write(encode(Suback(1, (0,))))
        writer.write(b"\xf0\x00")  # packet type 15 is reserved
        await writer.drain()
        await reader.read()

    async with scripted(ca, garbage) as port:
        client = await login(ca, port)
        await client.subscribe(TOPIC)
        reason = await asyncio.wait_for(client.closed, WAIT)
    assert isinstance(reason, MqttConnectionError)
    assert "malformed" in str(reason)
    assert isinstance(reason.__cause__, MqttPacketError)


async def test_truncated_topic_is_a_packet_error(ca: SimulatorCA) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_login(reader, writer)
        writer.write(b"\x30\x03\x00\x09a")  # topic length 9 in a 3-byte body
        await writer.drain()
        await reader.read()

    async with scripted(ca, truncated) as port:
        client = await login(ca, port)
        reason = await asyncio.wait_for(client.closed, WAIT)
    assert isinstance(reason, MqttConnectionError)
    assert isinstance(reason.__cause__, MqttPacketError)


async def test_peer_dropping_the_link_resolves_closed_with_the_reason(ca: SimulatorCA) -> None:
    async with broker(ca, Behaviour()) as (server, port):
        client = await login(ca, port)
        await client.subscribe(TOPIC)
        server.drop_all_clients()
        reason = await asyncio.wait_for(client.closed, WAIT)
        assert isinstance(reason, MqttConnectionError)
        with pytest.raises(MqttConnectionError):
            await client.publish(f"device/{SERIAL}/request", b"{}")


async def test_unanswered_keepalive_ping_drops_the_link(ca: SimulatorCA) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_login(reader, writer)
        await reader.read()  # reads PINGREQs, answers nothing

    async with scripted(ca, mute) as port:
        client = await login(ca, port, keepalive=1)
        # keepalive 1 s: the first tick pings, the second finds no answer (~2 s in all).
        reason = await asyncio.wait_for(client.closed, WAIT)
    assert isinstance(reason, MqttConnectionError)
    assert "not even a ping" in str(reason)


async def test_a_failing_sink_ends_the_connection_and_is_logged(
    ca: SimulatorCA, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_message(self, topic: str, payload: bytes) -> None:
            raise RuntimeError("bug in the handler")

    async with broker(ca, Behaviour()) as (server, port):
        client = await login(ca, port)
        client.sink = Broken()
        await client.subscribe(TOPIC)
        with caplog.at_level(logging.ERROR, logger="bambufarm.protocol.mqtt"):
            server.publish(TOPIC, b"{}")
            reason = await asyncio.wait_for(client.closed, WAIT)
    assert isinstance(reason, MqttConnectionError)
    assert "message handler failed" in str(reason)
    assert any("message handler failed" in r.getMessage() for r in caplog.records)


async def test_qos1_publish_from_the_broker_is_acknowledged(ca: SimulatorCA) -> None:
    acked = asyncio.get_running_loop().create_future()

    async def qos1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_login(reader, writer)
        await reader.read(1024)  # SUBSCRIBE
        body = b"\x00\x05a/b/c\x12\x34payload"
        writer.write(encode(Suback(1, (1,))) + b"\x32" + bytes((len(body),)) + body)
        await writer.drain()
        acked.set_result(await reader.readexactly(4))
        await reader.read()

    async with scripted(ca, qos1) as port:
        client = await login(ca, port)
        sink = Collect()
        client.sink = sink
        await client.subscribe("a/b/c", qos=1)
        assert await asyncio.wait_for(acked, WAIT) == b"\x40\x02\x12\x34"  # PUBACK 0x1234
        await sink.wait_for(1)
        await client.close()
    assert sink.messages == [("a/b/c", b"payload")]


async def test_packets_split_at_every_byte_are_reassembled(ca: SimulatorCA) -> None:
    topic = b"a/b"
    payloads = [b"x" * 200, b"{}", b"y" * 20_000]  # 2- and 3-byte remaining lengths
    stream = b"".join(
        b"\x30" + encode_remaining_length(2 + len(topic) + len(p)) + b"\x00\x03" + topic + p
        for p in payloads
    )

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_login(reader, writer)
        await reader.read(1024)  # SUBSCRIBE
        writer.write(encode(Suback(1, (0,))))
        for index in range(len(stream)):
            writer.write(stream[index : index + 1])  # one TLS record per byte
        await writer.drain()
        await reader.read()

    async with scripted(ca, dribble) as port:
        client = await login(ca, port)
        sink = Collect()
        client.sink = sink
        await client.subscribe("a/b")
        await sink.wait_for(len(payloads))
        await client.close()
    assert sink.messages == [("a/b", p) for p in payloads]
