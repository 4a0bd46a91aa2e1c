"""The MQTT 3.1.1 client session over TLS that talks to one printer (protocol.md §1.1-§1.3).

Chosen by measurement (bench/mqtt_client_choice.py, 2 cores, 1,000 TLS connections, one
report per second per printer, every payload parsed with orjson): our own client on
`mqtt_packets` costs less CPU per report than gmqtt 0.8.0 and far less than aiomqtt 2.5.1,
needs no dependency at runtime, and reports CONNACK codes exactly (a wrong access code is
CONNACK 5, which must stop the retry loop).

The TLS is done by the client itself (`mqtt_link.MqttLink`: `ssl.MemoryBIO` in an
`asyncio.BufferedProtocol` over a plain TCP transport), not by asyncio's SSL transport, which
keeps a 256 KiB read buffer per connection (~300 KB per connection measured at 1,000; ~68 KB
with the buffer lowered to 32 KiB through a process-wide class attribute). A 16 KiB receive
buffer of our own keeps a connection at ~47-51 KB for the same CPU (~34 µs per report at
1,000 connections).

Incoming PUBLISH payloads go to a `MessageSink` set on the client: one method call per
report, no queue, no task switch (the fleet's budget is ≤ 60 µs CPU per report all-in).

    client = await connect(host, 8883, ssl_context=ctx, server_hostname=serial,
                           username="bblp", password=access_code, client_id="bambufarm-1")
    client.sink = session          # has on_message(topic, payload)
    await client.subscribe(f"device/{serial}/report")
    await client.publish(f"device/{serial}/request", payload)
    reason = await client.closed   # None after close(), else why the link ended

Errors (defined in `mqtt_link`, importable from here):

    ProtocolError
    └── MqttError                 the MQTT session with a printer failed
        ├── MqttConnectError      CONNACK refused the login (`code`; `not_authorised`)
        ├── MqttSubscribeError    SUBACK refused a subscription (0x80)
        ├── MqttTlsError          the TLS handshake failed (the ssl error is the cause)
        └── MqttConnectionError   network: refused, reset, closed, timed out, or a peer that
                                  broke the protocol (the packet error is the cause)

A `verify_peer` callable given to `connect` runs after the handshake and before CONNECT (so
the access code never goes to an unverified peer); whatever it raises propagates unchanged.
"""

import asyncio
import logging
import ssl
from collections.abc import Callable

from bambufarm.protocol.mqtt_link import (
    DEFAULT_MAX_PACKET_SIZE,
    MessageSink,
    MqttConnectError,
    MqttConnectionError,
    MqttError,
    MqttLink,
    MqttSubscribeError,
    MqttTlsError,
    Waiter,
)
from bambufarm.protocol.mqtt_packets import (
    MAX_PACKET_ID,
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Pingreq,
    Publish,
    Suback,
    Subscribe,
    encode,
    encode_publish,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "MessageSink",
    "MqttClient",
    "MqttConnectError",
    "MqttConnectionError",
    "MqttError",
    "MqttSubscribeError",
    "MqttTlsError",
    "connect",
]

logger = logging.getLogger(__name__)

# After DISCONNECT and close_notify, how long close() waits for the peer before aborting.
_CLOSE_WAIT_S = 1.0


class MqttClient:
    """A connected, logged-in MQTT session; build it with `connect`."""

    def __init__(self, connection: MqttLink, keepalive: int, where: str) -> None:
        self._conn = connection
        self._loop = asyncio.get_running_loop()
        self._keepalive = keepalive
        self._where = where
        self._next_id = 0
        self._ping_timer: asyncio.TimerHandle | None = None
        if keepalive > 0:
            self._ping_timer = self._loop.call_later(keepalive, self._keepalive_tick)
        connection.closed.add_done_callback(self._on_closed)

    @property
    def sink(self) -> MessageSink | None:
        """Where incoming messages go; messages arriving while None are counted and dropped."""
        return self._conn.sink

    @sink.setter
    def sink(self, sink: MessageSink | None) -> None:
        self._conn.sink = sink

    @property
    def dropped(self) -> int:
        """Messages that arrived while no sink was set."""
        return self._conn.dropped

    @property
    def closed(self) -> "asyncio.Future[Exception | None]":
        """Resolves when the connection ends: None after `close()`, else the reason."""
        return self._conn.closed

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended."""
        return self._conn.closed.done()

    @property
    def peer_certificate(self) -> bytes | None:
        """The printer's certificate (DER), as presented in the handshake."""
        return self._conn.tls.getpeercert(binary_form=True)

    async def subscribe(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the error names the SUBACK it waited for
    ) -> int:
        """Subscribe and wait for SUBACK; returns the granted QoS, raises on 0x80."""
        packet_id = self._packet_id()
        waiter = Waiter(self._loop)
        self._conn.acks[packet_id] = waiter
        try:
            self._conn.send(encode(Subscribe(packet_id, ((topic_filter, qos),))))
            answer = await waiter.wait(timeout, f"SUBACK for {topic_filter!r}")
        finally:
            self._conn.acks.pop(packet_id, None)
        if not isinstance(answer, Suback):
            raise MqttConnectionError(f"expected SUBACK, got {answer!r}")
        granted = answer.return_codes[0]
        if granted == SUBACK_FAILURE:
            raise MqttSubscribeError(f"{self._where} refused the subscription to {topic_filter!r}")
        return granted

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - the error names the PUBACK it waited for
    ) -> None:
        """Publish; QoS 1 waits for PUBACK, QoS 0 returns once the bytes are handed to TCP."""
        if qos == 0:
            self._conn.send(encode_publish(topic, payload))
            return
        if qos != 1:
            raise ValueError(f"publish supports QoS 0 and 1, not {qos}")
        packet_id = self._packet_id()
        waiter = Waiter(self._loop)
        self._conn.acks[packet_id] = waiter
        try:
            self._conn.send(encode(Publish(topic, payload, 1, packet_id)))
            await waiter.wait(timeout, f"PUBACK for a message to {topic!r}")
        finally:
            self._conn.acks.pop(packet_id, None)

    async def close(self) -> None:
        """Disconnect politely and wait until the connection is gone (≤ 1 s, then abort)."""
        self._conn.close()
        try:
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await asyncio.shield(self._conn.closed)
        except TimeoutError:
            logger.debug("%s did not close within %g s; aborting", self._where, _CLOSE_WAIT_S)
            self._conn.abort()
            await self._conn.closed

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT."""
        self._conn.abort()

    def _packet_id(self) -> int:
        """The next packet id not waiting for an answer (1-65535, wrapping)."""
        for _ in range(MAX_PACKET_ID):
            self._next_id = self._next_id % MAX_PACKET_ID + 1
            if self._next_id not in self._conn.acks:
                return self._next_id
        raise MqttConnectionError(f"all {MAX_PACKET_ID} packet ids are waiting for answers")

    def _keepalive_tick(self) -> None:
        """Every keepalive: ping, or drop a link silent since the last unanswered ping."""
        conn = self._conn
        if conn.ping_outstanding and not conn.heard:
            conn.abort(
                MqttConnectionError(
                    f"{self._where} answered nothing, not even a ping, for {self._keepalive} s"
                )
            )
            return
        conn.heard = False
        try:
            conn.send(encode(Pingreq()))
        except MqttConnectionError:
            return  # already closed: connection_lost settles everything
        conn.ping_outstanding = True
        self._ping_timer = self._loop.call_later(self._keepalive, self._keepalive_tick)

    def _on_closed(self, _future: "asyncio.Future[Exception | None]") -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None


async def connect(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    username: str,
    password: str,
    client_id: str,
    keepalive: int = 30,
    timeout: float = 10.0,  # noqa: ASYNC109 - one limit for three stages; the error names which
    verify_peer: Callable[[ssl.SSLObject], object] | None = None,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
) -> MqttClient:
    """Open TCP, TLS and an MQTT session; `timeout` bounds all three together.

    `server_hostname` is sent as SNI (printers: the serial); whether it is checked against the
    certificate is up to `ssl_context`. `verify_peer(ssl_object)` runs after the handshake,
    before the password is sent, and may raise to refuse the peer.
    """
    loop = asyncio.get_running_loop()
    where = f"{host}:{port}"
    login = encode(Connect(client_id, True, keepalive, username, password.encode()))
    conn = MqttLink(loop, ssl_context, server_hostname, max_packet_size, where)
    stage = "TCP connect"
    try:
        async with asyncio.timeout(timeout):
            try:
                await loop.create_connection(lambda: conn, host, port)
            except OSError as err:
                raise MqttConnectionError(
                    f"cannot connect to {where}: {err.strerror or err}"
                ) from err
            stage = "TLS handshake"
            await conn.handshake.wait(timeout, "TLS handshake")
            if verify_peer is not None:
                verify_peer(conn.tls)
            stage = "CONNACK"
            conn.send(login)
            answer = await conn.connack.wait(timeout, "CONNACK")
    except TimeoutError:
        conn.abort(MqttConnectionError(f"{where}: no answer within {timeout:g} s"))
        raise MqttConnectionError(
            f"{where}: timed out after {timeout:g} s waiting for the {stage}"
        ) from None
    except BaseException:
        conn.abort()
        raise
    if not isinstance(answer, Connack):
        conn.abort()
        raise MqttConnectionError(f"{where}: expected CONNACK, got {answer!r}")
    if answer.return_code is not ConnackCode.ACCEPTED:
        conn.abort()
        raise MqttConnectError(answer.return_code)
    return MqttClient(conn, keepalive, where)
