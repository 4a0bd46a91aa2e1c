"""The TLS and MQTT framing under the fleet's MQTT client: one TCP connection to one printer.

`MqttLink` is an `asyncio.BufferedProtocol` over a plain TCP transport that does TLS itself
with `ssl.MemoryBIO`, cuts the decrypted stream into MQTT packets, hands every PUBLISH payload
to a `MessageSink` and resolves waiters for CONNACK, SUBACK and PUBACK. `protocol.mqtt` builds
the client API on it; see there for why it is built this way (measured).

QoS 0 PUBLISH, the printers' reports, is cut inline on the hot path; every other packet goes
through `mqtt_packets.decode_packet`. Anything malformed ends the link with the packet error
as the cause; nothing raises into asyncio.
"""

import asyncio
import logging
import ssl
from typing import Protocol, cast

from bambufarm.protocol.errors import MqttPacketError, ProtocolError
from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Disconnect,
    Packet,
    Pingresp,
    Puback,
    Publish,
    Suback,
    decode_packet,
    encode,
)

logger = logging.getLogger(__name__)

# One TLS record's worth of ciphertext per recv_into: a delta report (0.1-2 KB) arrives in one
# read, a full H2D report (~32 KB) in three. Every connection owns one, so it stays small.
RECEIVE_BUFFER_SIZE = 16 * 1024
# Plaintext taken out of the TLS object per read call.
_READ_SIZE = 64 * 1024
# A full report of the largest printer is ~32 KB (protocol.md §1.10); 4 MiB leaves room for
# firmware growth and still stops a hostile peer from making us buffer gigabytes.
DEFAULT_MAX_PACKET_SIZE = 4 * 1024 * 1024


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


class Waiter:
    """A future for one expected answer; resolves to the packet or the error that ended it.

    Errors are results, not exceptions: a waiter nobody awaits any more (its caller timed out)
    then never logs "exception was never retrieved".
    """

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """An unsettled waiter on `loop`."""
        self.future: asyncio.Future[object] = loop.create_future()

    def resolve(self, value: object) -> None:
        """Settle with `value` (a packet, True, or the error); later calls change nothing."""
        if not self.future.done():
            self.future.set_result(value)

    async def wait(self, seconds: float, what: str) -> object:
        """The answer, raising the error it settled with or MqttConnectionError on timeout."""
        try:
            async with asyncio.timeout(seconds):
                value = await self.future
        except TimeoutError:
            raise MqttConnectionError(f"no {what} within {seconds:g} s") from None
        if isinstance(value, Exception):
            raise value
        return value


class MqttLink(asyncio.BufferedProtocol):
    """TLS (MemoryBIO) plus MQTT framing over one TCP connection; the hot path lives here."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext,
        server_hostname: str,
        max_packet_size: int,
        where: str,
    ) -> None:
        """A link speaking TLS under `ssl_context` (SNI `server_hostname`); `where` names it."""
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
        self.handshake = Waiter(loop)
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
        self.connack = Waiter(loop)
        self.acks: dict[int, Waiter] = {}  # packet id -> SUBACK / PUBACK waiter
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
