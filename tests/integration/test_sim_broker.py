"""The simulator's printer-side MQTT broker against real clients over loopback TLS 1.2.

paho-mqtt is the real third-party client (it runs its own network thread, so the tests wait on
futures it resolves through the event loop); a raw socket client built on our codec sends what
no polite client would. mosquitto_sub/mosquitto_pub are used when installed (make test
installs them; under CI=true their absence fails).
"""

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Connect,
    Packet,
    PacketReader,
    Pingreq,
    Pingresp,
    Publish,
    Suback,
    Subscribe,
    UnsupportedConnect,
    encode,
    encode_remaining_length,
)
from bambufarm.simulator.broker import LoginLimit, MqttBroker

SERIAL = "01P00A123456789"
CODE = "12345678"
REPORT = f"device/{SERIAL}/report"
REQUEST = f"device/{SERIAL}/request"
TIMEOUT = 5.0


# ----------------------------------------------------------------------------- fixtures


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway self-signed certificate with CN=serial, like a printer's leaf."""
    directory = tmp_path_factory.mktemp("broker-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def server_ctx(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls_files.cert, tls_files.key)
    return context


@pytest.fixture
def client_ctx(tls_files: TlsFiles) -> ssl.SSLContext:
    # Verify the chain like a careful client; the CN is the serial, not the address.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(tls_files.cert)
    context.check_hostname = False
    return context


@dataclass
class Printer:
    """A BrokerBehaviour recording what the broker told it."""

    refused_filters: frozenset[str] = frozenset()
    published: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    fail_on_publish: bool = False

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        return username == "bblp" and password == CODE.encode()

    def allow_subscribe(self, topic_filter: str) -> bool:
        return topic_filter not in self.refused_filters

    def on_publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))
        if self.fail_on_publish:
            raise RuntimeError("printer logic bug")

    def on_subscribed(self, topic_filter: str) -> None:
        self.subscribed.append(topic_filter)


class ManualTime:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def printer() -> Printer:
    return Printer()


@pytest.fixture
async def start_broker(
    printer: Printer, server_ctx: ssl.SSLContext
) -> AsyncIterator[Callable[..., Any]]:
    """Start brokers (TLS unless told otherwise); all are closed after the test."""
    brokers: list[MqttBroker] = []

    async def start(**kwargs: Any) -> tuple[MqttBroker, int]:
        context = kwargs.pop("ssl_context", server_ctx)
        broker = MqttBroker(printer, context, **kwargs)
        brokers.append(broker)
        return broker, await broker.start("127.0.0.1", 0)

    yield start
    for broker in brokers:
        await broker.close()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition the broker reaches on its own (paho works on its own thread)."""
    async with asyncio.timeout(TIMEOUT):
        # Polling, not an Event: paho changes this state on its own thread.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert condition(), what


# ----------------------------------------------------------------------------- raw client


class RawClient:
    """A byte-level MQTT client on asyncio streams: sends anything, reads packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.packets = PacketReader(1 << 24)
        self.pending: list[Packet] = []

    @classmethod
    async def open(
        cls, port: int, ctx: ssl.SSLContext | None, *, source: str = "127.0.0.1"
    ) -> "RawClient":
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, local_addr=(source, 0)
        )
        return cls(reader, writer)

    async def send(self, data: bytes | Packet) -> None:
        self.writer.write(data if isinstance(data, bytes) else encode(data))
        await self.writer.drain()

    async def recv(self) -> Packet:
        async with asyncio.timeout(TIMEOUT):
            while not self.pending:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("closed by the broker")
                self.pending += self.packets.feed(chunk)
        return self.pending.pop(0)

    async def connect(self, code: str = CODE, client_id: str = "", keepalive: int = 60) -> Connack:
        await self.send(
            Connect(client_id, keepalive=keepalive, username="bblp", password=code.encode())
        )
        packet = await self.recv()
        assert isinstance(packet, Connack)
        return packet

    async def closed_by_broker(self) -> bool:
        """True once the broker has closed the connection (EOF or reset)."""
        async with asyncio.timeout(TIMEOUT):
            try:
                while await self.reader.read(65536):
                    continue
            except (ConnectionError, ssl.SSLError):
                return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await self.writer.wait_closed()


@pytest.fixture
async def raw_clients() -> AsyncIterator[list[RawClient]]:
    clients: list[RawClient] = []
    yield clients
    for client in clients:
        await client.close()


# ----------------------------------------------------------------------------- paho client


class PahoClient:
    """paho-mqtt driven from asyncio: its callbacks resolve futures on our loop."""

    def __init__(self, port: int, ctx: ssl.SSLContext, client_id: str = "") -> None:
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        self.client.tls_set_context(ctx)
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.connected: asyncio.Future[Any] = self.loop.create_future()
        self.disconnected: asyncio.Future[Any] = self.loop.create_future()
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_ack
        self.client.on_unsubscribe = self._on_ack

    def _resolve(self, future: asyncio.Future[Any], value: Any) -> None:
        def settle() -> None:
            if not future.done():
                future.set_result(value)

        self.loop.call_soon_threadsafe(settle)

    def _ack_future(self, mid: int) -> asyncio.Future[Any]:
        return self.acks.setdefault(mid, self.loop.create_future())

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._resolve(self.connected, reason)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._resolve(self.disconnected, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.loop.call_soon_threadsafe(
            self.messages.put_nowait, (message.topic, bytes(message.payload))
        )

    def _on_ack(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.loop.call_soon_threadsafe(
            lambda: (f := self._ack_future(mid)).done() or f.set_result(codes)
        )

    async def connect(self, code: str = CODE) -> Any:
        """Log in as bblp and return paho's reason code for the CONNACK."""
        self.client.username_pw_set("bblp", code)
        self.client.connect_async("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return await asyncio.wait_for(self.connected, TIMEOUT)

    async def subscribe(self, topic_filter: str) -> list[Any]:
        _, mid = self.client.subscribe(topic_filter, qos=0)
        return list(await asyncio.wait_for(self._ack_future(mid), TIMEOUT))

    async def unsubscribe(self, topic_filter: str) -> None:
        _, mid = self.client.unsubscribe(topic_filter)
        await asyncio.wait_for(self._ack_future(mid), TIMEOUT)

    async def publish_qos1(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        # is_published() turns true when the PUBACK has arrived.
        await wait_until(info.is_published, "PUBACK for a QoS 1 publish")

    async def message(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def stop(self) -> None:
        self.client.disconnect()
        # loop_stop joins paho's network thread; do not block our loop while it winds down.
        await asyncio.to_thread(self.client.loop_stop)


@pytest.fixture
async def paho_clients() -> AsyncIterator[list[PahoClient]]:
    clients: list[PahoClient] = []
    yield clients
    for client in clients:
        await client.stop()


@pytest.fixture
def new_paho(
    paho_clients: list[PahoClient], client_ctx: ssl.SSLContext
) -> Callable[..., PahoClient]:
    def make(port: int, client_id: str = "") -> PahoClient:
        client = PahoClient(port, client_ctx, client_id)
        paho_clients.append(client)
        return client

    return make


# ----------------------------------------------------------------------------- paho: happy path


async def test_paho_logs_in_over_tls12_subscribes_and_receives_reports(
    start_broker: Any, new_paho: Callable[..., PahoClient], printer: Printer
) -> None:
    broker, port = await start_broker()
    client = new_paho(port)
    reason = await client.connect()
    assert not reason.is_failure
    sock = client.client.socket()
    assert sock is not None
    assert sock.version() == "TLSv1.2"
    assert await client.subscribe(REPORT) == [0]
    assert printer.subscribed == [REPORT]
    assert broker.client_count == 1

    assert broker.publish(REPORT, b'{"print":{"msg":0}}') == 1
    assert await client.message() == (REPORT, b'{"print":{"msg":0}}')
    assert broker.publish(f"device/{SERIAL}/other", b"{}") == 0


async def test_paho_qos0_and_qos1_commands_reach_the_printer_and_qos1_is_acked(
    start_broker: Any, new_paho: Callable[..., PahoClient], printer: Printer
) -> None:
    _, port = await start_broker()
    client = new_paho(port)
    await client.connect()
    client.client.publish(REQUEST, b'{"pushing":{"command":"pushall"}}', qos=0)
    await client.publish_qos1(REQUEST, b'{"print":{"command":"stop"}}')
    assert printer.published == [
        (REQUEST, b'{"pushing":{"command":"pushall"}}'),
        (REQUEST, b'{"print":{"command":"stop"}}'),
    ]


async def test_paho_unsubscribe_stops_delivery(
    start_broker: Any, new_paho: Callable[..., PahoClient]
) -> None:
    broker, port = await start_broker()
    client = new_paho(port)
    await client.connect()
    await client.subscribe("device/+/report")
    assert broker.publish(REPORT, b"1") == 1
    assert await client.message() == (REPORT, b"1")
    await client.unsubscribe("device/+/report")
    assert broker.publish(REPORT, b"2") == 0


async def test_paho_wrong_access_code_is_not_authorised(
    start_broker: Any, new_paho: Callable[..., PahoClient]
) -> None:
    broker, port = await start_broker()
    client = new_paho(port)
    reason = await client.connect(code="00000000")
    assert reason.is_failure
    assert reason == paho.ReasonCode(paho.PacketTypes.CONNACK, "Not authorized")
    await asyncio.wait_for(client.disconnected, TIMEOUT)
    assert broker.client_count == 0


async def test_two_empty_client_ids_are_two_sessions(
    start_broker: Any, new_paho: Callable[..., PahoClient]
) -> None:
    broker, port = await start_broker()
    first, second = new_paho(port), new_paho(port)
    for client in (first, second):
        await client.connect()
        await client.subscribe(REPORT)
    assert broker.client_count == 2
    assert broker.publish(REPORT, b"both") == 2
    assert await first.message() == (REPORT, b"both")
    assert await second.message() == (REPORT, b"both")


async def test_max_clients_refuses_the_extra_client_with_server_unavailable(
    start_broker: Any, new_paho: Callable[..., PahoClient]
) -> None:
    broker, port = await start_broker(max_clients=2)
    first, second, third = new_paho(port), new_paho(port), new_paho(port)
    assert not (await first.connect()).is_failure
    assert not (await second.connect()).is_failure
    reason = await third.connect()
    assert reason == paho.ReasonCode(paho.PacketTypes.CONNACK, "Server unavailable")
    assert broker.client_count == 2

    await first.stop()
    await wait_until(lambda: broker.client_count == 1, "first client gone")
    fourth = new_paho(port)
    assert not (await fourth.connect()).is_failure


async def test_refused_subscription_gets_0x80_and_others_in_the_packet_are_granted(
    start_broker: Any, new_paho: Callable[..., PahoClient], printer: Printer
) -> None:
    printer.refused_filters = frozenset({"#"})
    broker, port = await start_broker()
    client = new_paho(port)
    await client.connect()
    _, mid = client.client.subscribe([("#", 0), (REPORT, 1)])
    codes = await asyncio.wait_for(client._ack_future(mid), TIMEOUT)
    assert [code.is_failure for code in codes] == [True, False]
    assert printer.subscribed == [REPORT]
    assert broker.publish(REPORT, b"x") == 1


async def test_drop_all_clients_disconnects_everyone_and_the_broker_keeps_serving(
    start_broker: Any, new_paho: Callable[..., PahoClient]
) -> None:
    broker, port = await start_broker()
    first, second = new_paho(port), new_paho(port)
    await first.connect()
    await second.connect()
    broker.drop_all_clients()
    await asyncio.wait_for(first.disconnected, TIMEOUT)
    await asyncio.wait_for(second.disconnected, TIMEOUT)
    assert broker.client_count == 0
    third = new_paho(port)
    assert not (await third.connect()).is_failure


async def test_a_failing_printer_behaviour_does_not_cost_the_client_its_session(
    start_broker: Any,
    new_paho: Callable[..., PahoClient],
    printer: Printer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    printer.fail_on_publish = True
    broker, port = await start_broker()
    client = new_paho(port)
    await client.connect()
    await client.publish_qos1(REQUEST, b"{}")
    assert "printer behaviour failed" in caplog.text
    assert broker.client_count == 1


# ----------------------------------------------------------------------------- raw: hostile input


async def test_malformed_bytes_close_only_that_client(
    start_broker: Any,
    new_paho: Callable[..., PahoClient],
    raw_clients: list[RawClient],
    client_ctx: ssl.SSLContext,
) -> None:
    broker, port = await start_broker()
    good = new_paho(port)
    await good.connect()
    await good.subscribe(REPORT)
    hostile_inputs = [
        b"\x00\x00garbage",  # reserved packet type before CONNECT
        b"GET / HTTP/1.1\r\nHost: printer\r\n\r\n",  # not MQTT at all
        b"\x30\xff\xff\xff\xff\x01",  # remaining length with a fifth byte
        b"\x82\x05\x00\x01\x00\x01",  # SUBSCRIBE before CONNECT
        b"\x10\x03\x00\x04MQ",  # CONNECT whose protocol name runs past the packet
        b"\x10\x0c\x00\x04MQTT\x04\x01\x00\x3c\x00\x00",  # CONNECT reserved flag set
    ]
    for data in hostile_inputs:
        raw = await RawClient.open(port, client_ctx)
        raw_clients.append(raw)
        await raw.send(data)
        assert await raw.closed_by_broker(), data
    # MQTT without TLS on the TLS port fails the handshake, not the broker.
    plain = await RawClient.open(port, None)
    raw_clients.append(plain)
    await plain.send(Connect("", username="bblp", password=CODE.encode()))
    assert await plain.closed_by_broker()
    # Malformed after a successful login, too.
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    assert (await raw.connect()).return_code == ConnackCode.ACCEPTED
    await raw.send(b"\x82\x04\x00\x01\x00\x05")  # filter length runs past the packet
    assert await raw.closed_by_broker()

    assert broker.client_count == 1
    assert broker.publish(REPORT, b"still here") == 1
    assert await good.message() == (REPORT, b"still here")


async def test_oversized_packet_closes_the_client_without_waiting_for_its_body(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    broker, port = await start_broker(max_packet_size=64 * 1024)
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    await raw.connect()
    topic = b"\x00\x01t"
    await raw.send(b"\x30" + encode_remaining_length(10 * 1024 * 1024) + topic)
    assert await raw.closed_by_broker()
    assert broker.client_count == 0


async def test_four_byte_remaining_length_within_the_limit_is_accepted(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext, printer: Printer
) -> None:
    _, port = await start_broker(max_packet_size=3 * 1024 * 1024)
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    await raw.connect()
    payload = b"x" * 2_200_000  # needs a four-byte remaining length
    await raw.send(Publish(REQUEST, payload, qos=1, packet_id=7))
    ack = await raw.recv()
    assert encode(ack) == b"\x40\x02\x00\x07"
    assert printer.published == [(REQUEST, payload)]


async def test_other_protocol_levels_get_connack_1(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    _, port = await start_broker()
    for level, name in ((3, "MQIsdp"), (5, "MQTT")):
        raw = await RawClient.open(port, client_ctx)
        raw_clients.append(raw)
        await raw.send(UnsupportedConnect(name, level))
        connack = await raw.recv()
        assert connack == Connack(ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)
        assert await raw.closed_by_broker()


async def test_wrong_code_gets_connack_5_bytes_then_close(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    _, port = await start_broker()
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    await raw.send(Connect("", username="bblp", password=b"wrong"))
    data = await asyncio.wait_for(raw.reader.read(100), TIMEOUT)
    assert data == b"\x20\x02\x00\x05"
    assert await raw.closed_by_broker()


async def test_same_client_id_takes_over_the_older_session(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    broker, port = await start_broker()
    older = await RawClient.open(port, client_ctx)
    newer = await RawClient.open(port, client_ctx)
    raw_clients += [older, newer]
    assert (await older.connect(client_id="ha-bambulab-1")).return_code == ConnackCode.ACCEPTED
    assert (await newer.connect(client_id="ha-bambulab-1")).return_code == ConnackCode.ACCEPTED
    assert await older.closed_by_broker()
    assert broker.client_count == 1
    await newer.send(Pingreq())
    assert await newer.recv() == Pingresp()


async def test_empty_client_id_without_clean_session_is_rejected(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    _, port = await start_broker()
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    await raw.send(Connect("", clean_session=False, username="bblp", password=CODE.encode()))
    assert await raw.recv() == Connack(ConnackCode.IDENTIFIER_REJECTED)


async def test_repeated_wrong_codes_lock_the_address_out_for_a_cooldown(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    clock = ManualTime()
    _, port = await start_broker(
        login_limit=LoginLimit(failures=5, window=60, cooldown=30), clock=clock
    )

    async def attempt(code: str, source: str = "127.0.0.1") -> ConnackCode:
        raw = await RawClient.open(port, client_ctx, source=source)
        raw_clients.append(raw)
        return (await raw.connect(code=code)).return_code

    for _ in range(5):
        assert await attempt("guess") == ConnackCode.NOT_AUTHORIZED
        clock.now += 1
    # Locked: even the right code is refused without being checked.
    assert await attempt(CODE) == ConnackCode.NOT_AUTHORIZED
    # Another source address is not affected.
    assert await attempt(CODE, source="127.0.0.2") == ConnackCode.ACCEPTED
    clock.now += 31
    assert await attempt(CODE) == ConnackCode.ACCEPTED


async def test_failures_spread_beyond_the_window_do_not_lock_out(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    clock = ManualTime()
    _, port = await start_broker(login_limit=LoginLimit(failures=3, window=10), clock=clock)
    for _ in range(6):
        raw = await RawClient.open(port, client_ctx)
        raw_clients.append(raw)
        assert (await raw.connect(code="guess")).return_code == ConnackCode.NOT_AUTHORIZED
        clock.now += 6  # two failures per 10 s window at most
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    assert (await raw.connect()).return_code == ConnackCode.ACCEPTED


async def test_silent_client_is_dropped_after_one_and_a_half_keepalives(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    broker, port = await start_broker()
    raw = await RawClient.open(port, client_ctx)
    raw_clients.append(raw)
    started = asyncio.get_running_loop().time()
    await raw.connect(keepalive=1)
    # Real time: the keepalive runs on the event loop's clock (1 s keepalive -> 1.5 s).
    assert await raw.closed_by_broker()
    assert asyncio.get_running_loop().time() - started >= 1.4
    assert broker.client_count == 0


async def test_a_client_that_stops_reading_misses_reports_but_keeps_its_session(
    start_broker: Any, raw_clients: list[RawClient]
) -> None:
    # Plain TCP: filling socket buffers takes less work without TLS.
    broker, port = await start_broker(ssl_context=None)
    raw = await RawClient.open(port, None)
    raw_clients.append(raw)
    await raw.connect()
    await raw.send(Subscribe(1, ((REPORT, 0),)))
    assert isinstance(await raw.recv(), Suback)
    raw.writer.transport.pause_reading()
    payload = b"r" * 256 * 1024
    for _ in range(400):  # up to 100 MB: far beyond any loopback socket buffer
        if broker.publish(REPORT, payload) == 0:
            break
        await asyncio.sleep(0)  # let the transport try to flush
    else:
        pytest.fail("the broker never stopped writing to a client that does not read")
    assert broker.client_count == 1
    assert broker.publish(REPORT, payload) == 0
    raw.writer.transport.resume_reading()
    received = 0
    while True:
        packet = await raw.recv()
        assert isinstance(packet, Publish)
        received += 1
        if broker.publish(REPORT, b"small") == 1:
            break
    assert received > 0


async def test_close_drops_every_client_and_stops_listening(
    start_broker: Any, raw_clients: list[RawClient], client_ctx: ssl.SSLContext
) -> None:
    broker, port = await start_broker()
    connected = await RawClient.open(port, client_ctx)
    half_open = await RawClient.open(port, client_ctx)  # never sends CONNECT
    raw_clients += [connected, half_open]
    await connected.connect()
    await broker.close()
    assert await connected.closed_by_broker()
    assert await half_open.closed_by_broker()
    assert broker.client_count == 0
    with pytest.raises(ConnectionRefusedError):
        await RawClient.open(port, client_ctx)


# ----------------------------------------------------------------------------- mosquitto clients


def _mosquitto_tools() -> tuple[str, str]:
    sub, pub = shutil.which("mosquitto_sub"), shutil.which("mosquitto_pub")
    if sub is None or pub is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto_sub/mosquitto_pub missing: make test installs mosquitto-clients")
        pytest.skip("mosquitto-clients not installed (make test installs them)")
    return sub, pub


@pytest.mark.system
async def test_mosquitto_clients_subscribe_and_publish_over_tls(
    start_broker: Any, tls_files: TlsFiles, printer: Printer
) -> None:
    sub_bin, pub_bin = _mosquitto_tools()
    broker, port = await start_broker()
    common = [
        "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv311", "-u", "bblp",
        "--cafile", str(tls_files.cert), "--insecure", "--tls-version", "tlsv1.2",
    ]  # fmt: skip
    sub = await asyncio.create_subprocess_exec(
        sub_bin, *common, "-P", CODE, "-t", REPORT, "-C", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_until(lambda: REPORT in printer.subscribed, "mosquitto_sub subscribed")
        assert broker.publish(REPORT, b'{"print":{"command":"push_status"}}') == 1
        out, err = await asyncio.wait_for(sub.communicate(), TIMEOUT)
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    assert sub.returncode == 0, err
    assert out.strip() == b'{"print":{"command":"push_status"}}'

    pub = await asyncio.create_subprocess_exec(
        pub_bin, *common, "-P", CODE, "-t", REQUEST, "-q", "1", "-m", "{}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(pub.communicate(), TIMEOUT)
    assert pub.returncode == 0, err
    assert printer.published == [(REQUEST, b"{}")]

    wrong = await asyncio.create_subprocess_exec(
        pub_bin, *common, "-P", "wrong", "-t", REQUEST, "-m", "{}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(wrong.communicate(), TIMEOUT)
    assert wrong.returncode != 0
    assert b"not authori" in err.lower()
