"""The MQTT 3.1.1 client session over TLS that talks to one printer (protocol.md §1.1-§1.3).

Chosen by measurement (bench/mqtt_client_choice.py, 2 cores, 1,000 TLS connections, one
report per second per printer, every payload parsed with orjson): our own client on
`mqtt_packets` costs less CPU per report than gmqtt 0.8.0 and far less than aiomqtt 2.5.1,
needs no dependency at runtime, and reports CONNACK codes exactly (a wrong access code is
CONNACK 5, which must stop the retry loop).

The TLS is done here, with `ssl.MemoryBIO`, in an `asyncio.BufferedProtocol` over a plain TCP
transport, instead of by asyncio's SSL transport: asyncio keeps a 256 KiB read buffer per SSL
connection (~300 KB per connection measured at 1,000; ~68 KB with the buffer lowered to 32 KiB
through a process-wide class attribute), while a 16 KiB receive buffer of our own keeps a
connection at ~47-51 KB for the same CPU (~34 µs per report at 1,000 connections).

Incoming PUBLISH payloads go to a `MessageSink` set on the client: one method call per
report, no queue, no task switch (the fleet's budget is ≤ 60 µs CPU per report all-in).

    client = await connect(host, 8883, ssl_context=ctx, server_hostname=serial,
                           username="bblp", password=access_code, client_id="bambufarm-1")
    client.sink = session          # has on_message(topic, payload)
    await client.subscribe(f"device/{serial}/report")
    await client.publish(f"device/{serial}/request", payload)
    reason = await client.closed   # None after close(), else why the link ended

Errors:

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
from typing import Protocol, cast

from bambufarm.protocol.errors import MqttPacketError, ProtocolError
from bambufarm.protocol.mqtt_packets import (
    MAX_PACKET_ID,
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    decode_packet,
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

# One TLS record's worth of ciphertext per recv_into: a delta report (0.1-2 KB) arrives in one
# read, a full H2D report (~32 KB) in three. Every connection owns one, so it stays small.
RECEIVE_BUFFER_SIZE = 16 * 1024
# Plaintext taken out of the TLS object per read call.
_READ_SIZE = 64 * 1024
# A full report of the largest printer is ~32 KB (protocol.md §1.10); 4 MiB leaves room for
# firmware growth and still stops a hostile peer from making us buffer gigabytes.
DEFAULT_MAX_PACKET_SIZE = 4 * 1024 * 1024
# After DISCONNECT and close_notify, how long close() waits for the peer before aborting.
_CLOSE_WAIT_S = 1.0


class MqttError(ProtocolError):
    """The MQTT session with a printer failed."""


class MqttConnectError(MqttError):
    """The printer answered CONNECT with a refusal; `code` says which."""

    def __init__(self, code: ConnackCode) -> None:
        self.code = code
        if code in (ConnackCode.NOT_AUTHORIZED, ConnackCode.BAD_USERNAME_OR_PASSWORD):
            text = "the printer refused the access code (CONNACK %d); check the access code"
        elif code is ConnackCode.SERVER_UNAVAILABLE:
            text = "the printer refused the connection (CONNACK %d): too many clients connected?"
        else:
            text = "the printer refused the login with CONNACK %d"
        super().__init__(f"{text % code.value} ({code.name.lower()})")

    @property
    def not_authorised(self) -> bool:
        """True for a wrong access code: retrying with the same one cannot help."""
        return self.code in (ConnackCode.NOT_AUTHORIZED, ConnackCode.BAD_USERNAME_OR_PASSWORD)


class MqttSubscribeError(MqttError):
    """The printer refused a subscription (SUBACK 0x80)."""


class MqttTlsError(MqttError):
    """The TLS handshake failed: certificate not trusted, protocol mismatch, not TLS at all."""


class MqttConnectionError(MqttError):
    """The network link failed or ended: refused, reset, closed, timed out, or garbled."""


class MessageSink(Protocol):
    """Receives every PUBLISH the printer sends; called on the event loop, must not block."""

    def on_message(self, topic: str, payload: bytes) -> None:
        """Handle one message; an exception here ends the connection."""
        ...


class _Waiter:
    """A future for one expected answer; resolves to the packet or the error that ended it.

    Errors are results, not exceptions: a waiter nobody awaits any more (its caller timed out)
    then never logs "exception was never retrieved".
    """

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[object] = loop.create_future()

    def resolve(self, value: object) -> None:
        if not self.future.done():
            self.future.set_result(value)

    async def wait(self, seconds: float, what: str) -> object:
        try:
            async with asyncio.timeout(seconds):
                value = await self.future
        except TimeoutError:
            raise MqttConnectionError(f"no {what} within {seconds:g} s") from None
        if isinstance(value, Exception):
            raise value
        return value


class _Connection(asyncio.BufferedProtocol):
    """TLS (MemoryBIO) plus MQTT framing over one TCP connection; the hot path lives here."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext,
        server_hostname: str,
        max_packet_size: int,
        where: str,
    ) -> None:
        self._loop = loop
        self._where = where
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = ssl_context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._view = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
        self._transport: asyncio.Transport | None = None
        self._handshaken = False
        self.handshake = _Waiter(loop)
        self.closed: asyncio.Future[Exception | None] = loop.create_future()
        self._closing = False
        self._reason: Exception | None = None
        self._max_packet_size = max_packet_size
        # Framing state: bytes of an incomplete packet, and its size once the header is known.
        self._pending = bytearray()
        self._needed = 0
        # The one topic a printer publishes on, decoded once.
        self._topic_raw = b""
        self._topic = ""
        self.sink: MessageSink | None = None
        self.dropped = 0  # messages that arrived while no sink was set
        self.connack = _Waiter(loop)
        self.acks: dict[int, _Waiter] = {}  # packet id -> SUBACK / PUBACK waiter
        self.ping_outstanding = False
        self.heard = False  # anything received since the last keepalive check

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the TLS handshake."""
        self._transport = cast(asyncio.Transport, transport)
        self._do_handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        """The connection's receive buffer (asyncio `recv_into`s it)."""
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        """Decrypt what arrived and deliver every complete packet."""
        self._incoming.write(self._view[:nbytes])
        self.heard = True
        if not self._handshaken:
            self._do_handshake()
            if not self._handshaken:
                return
        read = self.tls.read
        try:
            while True:
                try:
                    chunk = read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                if not chunk:  # close_notify: the printer ended the TLS session
                    self._fail(MqttConnectionError(f"{self._where} closed the connection"))
                    return
                self._feed(chunk)
            if self._outgoing.pending:
                self._flush()
        except ssl.SSLError as err:
            self._fail(MqttConnectionError(f"TLS error from {self._where}: {err}"), err)
        except MqttPacketError as err:
            self._fail(MqttConnectionError(f"{self._where} sent a malformed packet: {err}"), err)
        except MqttError as err:
            self._fail(err)
        except Exception as err:
            # The sink's failure: the boundary between this connection and its owner.
            logger.exception("message handler failed for %s", self._where)
            self._fail(MqttConnectionError(f"message handler failed: {err!r}"), err)

    def eof_received(self) -> bool:
        """The printer closed its side of TCP: close ours too."""
        self._set_reason(MqttConnectionError(f"{self._where} closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Settle every waiter and the `closed` future with the reason."""
        self._transport = None
        if exc is not None:
            self._set_reason(MqttConnectionError(f"connection to {self._where} lost: {exc}"))
        reason = None if self._closing and self._reason is None else self._reason
        if reason is None and not self._closing:
            reason = MqttConnectionError(f"{self._where} closed the connection")
        failure = reason or MqttConnectionError(f"connection to {self._where} is closed")
        self.handshake.resolve(failure)
        self.connack.resolve(failure)
        for waiter in self.acks.values():
            waiter.resolve(failure)
        self.acks.clear()
        if not self.closed.done():
            self.closed.set_result(reason)

    # ------------------------------------------------------------------ TLS

    def _do_handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as err:
            self._flush()  # the alert, so the printer logs why
            self._fail(MqttTlsError(f"TLS handshake with {self._where} failed: {err}"), err)
            return
        self._handshaken = True
        self._flush()
        self.handshake.resolve(True)

    def _flush(self) -> None:
        if self._outgoing.pending and self._transport is not None:
            self._transport.write(self._outgoing.read())

    def send(self, data: bytes) -> None:
        """Encrypt and write `data`; raises MqttConnectionError once the link is gone."""
        if self._transport is None or self._transport.is_closing():
            raise self._reason or MqttConnectionError(f"connection to {self._where} is closed")
        try:
            self.tls.write(data)
        except ssl.SSLError as err:
            error = MqttConnectionError(f"TLS error towards {self._where}: {err}")
            self._fail(error, err)
            raise error from err
        self._transport.write(self._outgoing.read())

    # ------------------------------------------------------------------ MQTT framing

    def _feed(self, chunk: bytes) -> None:
        """Cut decrypted bytes into packets; QoS 0 PUBLISH is handled inline (the hot path)."""
        if self._pending:
            self._pending += chunk
            if len(self._pending) < self._needed:
                return
            buf = bytes(self._pending)
            self._pending.clear()
        else:
            buf = chunk
        size = len(buf)
        pos = 0
        while pos < size:
            first = buf[pos]
            index = pos + 1
            length = 0
            shift = 0
            while True:
                if index >= size:
                    self._keep(buf, pos, 0)
                    return
                digit = buf[index]
                index += 1
                length |= (digit & 0x7F) << shift
                if digit < 0x80:
                    break
                shift += 7
                if shift == 28:
                    raise MqttPacketError("remaining length uses more than four bytes")
            end = index + length
            if end - pos > self._max_packet_size:
                raise MqttPacketError(
                    f"packet of {end - pos} bytes exceeds the limit of "
                    f"{self._max_packet_size} bytes"
                )
            if end > size:
                self._keep(buf, pos, end - pos)
                return
            if first == 0x30:  # PUBLISH, QoS 0, no DUP, no retain: every printer report
                if length < 2:
                    raise MqttPacketError("PUBLISH: topic name runs past the end of the packet")
                topic_end = index + 2 + (buf[index] << 8 | buf[index + 1])
                if topic_end > end:
                    raise MqttPacketError("PUBLISH: topic name runs past the end of the packet")
                self._deliver(buf, index + 2, topic_end, buf[topic_end:end])
            else:
                self._control(decode_packet(first, buf[index:end]))
            pos = end

    def _keep(self, buf: bytes, pos: int, needed: int) -> None:
        self._pending += buf[pos:]
        self._needed = needed

    def _deliver(self, buf: bytes, start: int, end: int, payload: bytes) -> None:
        raw = self._topic_raw
        if end - start == len(raw) and buf.startswith(raw, start):
            topic = self._topic
        else:
            try:
                topic = buf[start:end].decode("utf-8")
            except UnicodeDecodeError as err:
                raise MqttPacketError("PUBLISH: topic name is not valid UTF-8") from err
            self._topic_raw, self._topic = buf[start:end], topic
        sink = self.sink
        if sink is None:
            self.dropped += 1
        else:
            sink.on_message(topic, payload)

    def _control(self, packet: Packet) -> None:
        """Every packet but the common QoS 0 PUBLISH."""
        if isinstance(packet, Publish):
            if packet.qos == 2:
                # We subscribe at QoS 0, so a broker must not send QoS 2 (MQTT-3.8.4-6).
                raise MqttPacketError("PUBLISH: QoS 2 on a QoS 0 subscription")
            if packet.packet_id is not None:
                self.send(encode(Puback(packet.packet_id)))
            raw = packet.topic.encode()
            self._deliver(raw, 0, len(raw), packet.payload)
        elif isinstance(packet, Pingresp):
            self.ping_outstanding = False
        elif isinstance(packet, Connack):
            self.connack.resolve(packet)
        elif isinstance(packet, Suback | Puback):
            waiter = self.acks.pop(packet.packet_id, None)
            if waiter is not None:
                waiter.resolve(packet)
        else:
            raise MqttPacketError(f"a server does not send {type(packet).__name__} to a client")

    # ------------------------------------------------------------------ closing

    def _set_reason(self, reason: Exception) -> None:
        if self._reason is None and not self._closing:
            self._reason = reason

    def _fail(self, reason: MqttError, cause: BaseException | None = None) -> None:
        """End the connection at once because of `reason`."""
        if cause is not None and reason.__cause__ is None:
            reason.__cause__ = cause
        self._set_reason(reason)
        if self._transport is not None:
            self._transport.abort()

    def abort(self, reason: MqttError | None = None) -> None:
        """Drop the connection without goodbye."""
        if reason is None:
            self._closing = True
        else:
            self._set_reason(reason)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Say goodbye (DISCONNECT, close_notify) and close."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._handshaken:
            try:
                self.tls.write(encode(Disconnect()))
                self.tls.unwrap()
            except ssl.SSLError:
                # unwrap() sent our close_notify and wants the printer's: no need to wait.
                logger.debug("TLS close with %s did not complete; closing TCP", self._where)
            self._flush()
        transport.close()


class MqttClient:
    """A connected, logged-in MQTT session; build it with `connect`."""

    def __init__(self, connection: _Connection, keepalive: int, where: str) -> None:
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
        waiter = _Waiter(self._loop)
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
        waiter = _Waiter(self._loop)
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
    conn = _Connection(loop, ssl_context, server_hostname, max_packet_size, where)
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
