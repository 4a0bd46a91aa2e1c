"""The printer-side MQTT 3.1.1 broker of a simulated (or virtual) printer.

A Bambu printer is a small broker: clients log in as `bblp` with the access code, subscribe to
`device/<serial>/report` and publish commands to `device/<serial>/request` (protocol.md §1.1,
§1.2). What the printer does with a command is the behaviour's business; this module only
speaks MQTT. One `asyncio.Protocol` per connection, no task per client.

Hand-written over `mqtt_packets` rather than adapted from amqtt (bench/broker_choice.py): at
1,000 TLS printers amqtt alone fits the simulator budget (~470 MB, ~24 % of a core) but costs
~2.4x the CPU and ~1.4x the memory of this broker, and its public API can neither refuse a
client past max-clients, drop clients, take an SSLContext, nor skip a client that stopped
reading (its deliveries queue without bound).

Firmware-like answers: wrong access code → CONNACK 5 and close (clients stop retrying on 5);
protocol level other than 4 → CONNACK 1; max clients reached → CONNACK 3 (inferred: real P/A
printers allow about four sessions). Malformed or oversized packets close only that client.
Client PUBLISHes go to the behaviour, not to other subscribers: a printer reports, it does not
relay other clients' commands (inferred).
"""

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from typing import Protocol, cast

from bambufarm.protocol.errors import MqttPacketError
from bambufarm.protocol.mqtt_packets import (
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    UnsupportedConnect,
    encode,
    encode_publish,
    is_valid_topic_filter,
    topic_matches,
)
from bambufarm.simulator.login_limit import LoginGuard, LoginLimit

__all__ = ["BrokerBehaviour", "LoginLimit", "MqttBroker"]

logger = logging.getLogger(__name__)

# A client must send CONNECT this soon after the TCP (and TLS) connection is up; half-open
# connections would otherwise count against nothing and live forever.
CONNECT_TIMEOUT = 10.0
# MQTT 3.1.1 §3.1.2.10: a server disconnects a client silent for 1.5 x its keepalive.
KEEPALIVE_GRACE = 1.5
# Answers (SUBACK, PUBACK, PINGRESP) are written even to a client that does not read, up to
# this backlog; past it the client is flooding us without reading and is dropped.
MAX_WRITE_BACKLOG = 1 << 20
# Source addresses whose failed logins are remembered; stale ones are forgotten first.
MAX_LOGIN_ADDRESSES = 1024


class BrokerBehaviour(Protocol):
    """What the printer behind the broker decides: logins, subscriptions, commands."""

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        """True when the CONNECT credentials are accepted (`bblp` + access code)."""
        ...

    def allow_subscribe(self, topic_filter: str) -> bool:
        """False refuses the filter with SUBACK return code 0x80."""
        ...

    def on_publish(self, topic: str, payload: bytes) -> None:
        """A client PUBLISH at QoS 0, 1 or 2; the broker acknowledges it itself."""
        ...

    def on_subscribed(self, topic_filter: str) -> None:
        """Called after the SUBACK granting `topic_filter` has been written."""
        ...


class MqttBroker:
    """One printer's MQTT broker: listens, authenticates, routes reports to subscribers."""

    def __init__(
        self,
        behaviour: BrokerBehaviour,
        ssl_context: ssl.SSLContext | None,
        *,
        max_clients: int | None = None,
        max_packet_size: int = 1 << 20,
        login_limit: LoginLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A broker for `behaviour`; TLS when `ssl_context` is given (printers: TLS 1.2)."""
        if max_clients is not None and max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self.behaviour = behaviour
        self.max_clients = max_clients
        self.max_packet_size = max_packet_size
        self._ssl_context = ssl_context
        limit = login_limit or LoginLimit()
        self._login_guard = LoginGuard(
            clock,
            max_failures=limit.failures,
            window=limit.window,
            cooldown=limit.cooldown,
            max_addresses=MAX_LOGIN_ADDRESSES,
        )
        self._server: asyncio.Server | None = None
        # Every connection, also those that have not sent CONNECT yet.
        self._connections: set[_ClientConnection] = set()
        # Accepted sessions, in connection order; the publish fan-out walks this.
        self._clients: list[_ClientConnection] = []
        self._by_client_id: dict[str, _ClientConnection] = {}
        self._auto_ids = itertools.count(1)
        self._all_gone: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def client_count(self) -> int:
        """Clients that completed CONNECT and are still connected."""
        return len(self._clients)

    @property
    def port(self) -> int | None:
        """The bound port, once started."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on `host`:`port` (0 picks a free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("broker already started")
        self._closed = False
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientConnection(self), host, port, ssl=self._ssl_context
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Stop listening and drop every client; returns once all connections are gone."""
        self._closed = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._connections:
            self._all_gone = asyncio.get_running_loop().create_future()
            for connection in list(self._connections):
                connection.abort()
            await self._all_gone
            self._all_gone = None

    def publish(self, topic: str, payload: bytes) -> int:
        """Send a QoS 0 PUBLISH to every matching subscriber; return how many got it.

        A client whose transport is paused (its socket buffer is full) misses the message:
        QoS 0 is allowed to drop, and buffering for a stalled client would grow without bound.
        """
        wire: bytes | None = None
        delivered = 0
        for client in tuple(self._clients):  # a write may drop a client from the list
            if client.paused or not client.subscribed_to(topic):
                continue
            if wire is None:
                wire = encode_publish(topic, payload)
            client.write(wire)
            delivered += 1
        return delivered

    def drop_all_clients(self) -> None:
        """Cut every connection at once, as a printer losing its network does."""
        for connection in list(self._connections):
            connection.abort()

    # ------------------------------------------------------------------ connection callbacks

    def _register(self, connection: "_ClientConnection") -> bool:
        # A TLS handshake that was in progress when close() ran finishes afterwards.
        if self._closed:
            return False
        self._connections.add(connection)
        return True

    def _forget(self, connection: "_ClientConnection") -> None:
        self._connections.discard(connection)
        self._detach(connection)
        if not self._connections and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

    def _detach(self, connection: "_ClientConnection") -> None:
        """Remove a session from the fan-out (on close or when taken over)."""
        if connection in self._clients:
            self._clients.remove(connection)
        if self._by_client_id.get(connection.client_id) is connection:
            # Only explicit ids are registered; generated ones cannot be asked for.
            del self._by_client_id[connection.client_id]

    def _accept(self, connection: "_ClientConnection", connect: Connect) -> ConnackCode:
        """Decide the CONNACK code for a CONNECT and register the session when accepted."""
        address = connection.peer
        if self._login_guard.locked(address):
            logger.info("login from %s refused unchecked: too many wrong access codes", address)
            return ConnackCode.NOT_AUTHORIZED
        if not self.behaviour.check_credentials(connect.username, connect.password):
            self._login_guard.record_failure(address)
            logger.info("login from %s refused: wrong credentials", address)
            return ConnackCode.NOT_AUTHORIZED
        self._login_guard.record_success(address)
        if not connect.client_id and not connect.clean_session:
            return ConnackCode.IDENTIFIER_REJECTED  # MQTT-3.1.3-8
        previous = self._by_client_id.get(connect.client_id) if connect.client_id else None
        active = len(self._clients) - (previous is not None)
        if self.max_clients is not None and active >= self.max_clients:
            logger.info("login from %s refused: %d clients already", address, active)
            return ConnackCode.SERVER_UNAVAILABLE
        if previous is not None:
            # MQTT-3.1.4-2: the newer connection with the same client id wins.
            logger.info(
                "client id %r reconnected from %s; dropping the older session",
                connect.client_id,
                address,
            )
            self._detach(previous)
            previous.close()
        self._clients.append(connection)
        if connect.client_id:
            connection.client_id = connect.client_id
            self._by_client_id[connect.client_id] = connection
        else:
            # MQTT-3.1.3-6: an empty id gets a server-assigned one. It is never registered for
            # take-over, so two empty-id clients are always two sessions (protocol.md §12.1).
            connection.client_id = f"auto-{next(self._auto_ids)}"
        return ConnackCode.ACCEPTED


class _ClientConnection(asyncio.Protocol):
    """One client connection: frames packets, answers them, holds its subscriptions."""

    __slots__ = (
        "_broker",
        "_keepalive_limit",
        "_last_seen",
        "_reader",
        "_timer",
        "_transport",
        "client_id",
        "connected",
        "paused",
        "peer",
        "subscriptions",
    )

    def __init__(self, broker: MqttBroker) -> None:
        self._broker = broker
        self._reader = PacketReader(broker.max_packet_size)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive_limit = 0.0
        self._last_seen = 0.0
        self.client_id = ""
        self.connected = False
        self.paused = False
        self.peer = "?"
        self.subscriptions: list[str] = []

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        if not self._broker._register(self):
            self._transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._timer = loop.call_later(CONNECT_TIMEOUT, self._connect_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.connected = False
        self._transport = None
        self._broker._forget(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._last_seen = asyncio.get_running_loop().time()
        if not self.connected and not self._reader.buffered and data[:1] != b"\x10":
            # MQTT-3.1.0-1: the first packet must be CONNECT; its first byte says so at once,
            # so an HTTP probe or TLS-less garbage is refused without waiting for a length.
            logger.warning("closing client %s: first byte %r is not CONNECT", self.peer, data[:1])
            self.abort()
            return
        try:
            packets = self._reader.feed(data)
        except MqttPacketError as err:
            logger.warning("closing client %s: %s", self.peer, err)
            self.abort()
            return
        for packet in packets:
            if self._transport is None or self._transport.is_closing():
                return
            self._handle(packet)

    # ------------------------------------------------------------------ packets

    def _handle(self, packet: Packet) -> None:
        if not self.connected:
            self._handle_first(packet)
            return
        match packet:
            case Publish():
                self._handle_publish(packet)
            case Pubrel():
                self.write(encode(Pubcomp(packet.packet_id)))
            case Subscribe():
                self._handle_subscribe(packet)
            case Unsubscribe():
                for topic_filter in packet.topics:
                    if topic_filter in self.subscriptions:
                        self.subscriptions.remove(topic_filter)
                self.write(encode(Unsuback(packet.packet_id)))
            case Pingreq():
                self.write(encode(Pingresp()))
            case Disconnect():
                self.close()
            case Puback() | Pubrec() | Pubcomp():
                return  # we only publish at QoS 0: nothing is awaiting these
            case _:
                # A second CONNECT (MQTT-3.1.0-2) or a server-to-client packet.
                logger.warning("closing client %s: unexpected %s", self.peer, type(packet).__name__)
                self.abort()

    def _handle_first(self, packet: Packet) -> None:
        match packet:
            case UnsupportedConnect():
                logger.info(
                    "client %s asked for protocol level %d; only 4 (3.1.1) is spoken",
                    self.peer,
                    packet.protocol_level,
                )
                self._refuse(ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)
            case Connect():
                code = self._broker._accept(self, packet)
                if code != ConnackCode.ACCEPTED:
                    self._refuse(code)
                    return
                self.connected = True
                self.write(encode(Connack(ConnackCode.ACCEPTED)))
                self._start_keepalive(packet.keepalive)
            case _:
                logger.warning(
                    "closing client %s: first packet is %s, not CONNECT",
                    self.peer,
                    type(packet).__name__,
                )
                self.abort()

    def _refuse(self, code: ConnackCode) -> None:
        self.write(encode(Connack(code)))
        self.close()

    def _handle_publish(self, packet: Publish) -> None:
        try:
            self._broker.behaviour.on_publish(packet.topic, packet.payload)
        except Exception:
            # The printer logic failing on one command must not cost the client its session.
            logger.exception("printer behaviour failed on a publish to %s", packet.topic)
        if packet.packet_id is not None:
            ack = Puback if packet.qos == 1 else Pubrec
            self.write(encode(ack(packet.packet_id)))

    def _handle_subscribe(self, packet: Subscribe) -> None:
        codes: list[int] = []
        granted: list[str] = []
        behaviour = self._broker.behaviour
        for topic_filter, qos in packet.topics:
            if not is_valid_topic_filter(topic_filter) or not behaviour.allow_subscribe(
                topic_filter
            ):
                codes.append(SUBACK_FAILURE)
                continue
            if topic_filter not in self.subscriptions:
                self.subscriptions.append(topic_filter)
            # Granting the requested QoS is truthful: every delivery is QoS 0 anyway.
            codes.append(qos)
            granted.append(topic_filter)
        self.write(encode(Suback(packet.packet_id, tuple(codes))))
        for topic_filter in granted:
            try:
                behaviour.on_subscribed(topic_filter)
            except Exception:
                logger.exception("printer behaviour failed after a subscribe to %s", topic_filter)

    # ------------------------------------------------------------------ helpers

    def subscribed_to(self, topic: str) -> bool:
        """True when any of this client's filters matches `topic`."""
        return any(topic_matches(topic_filter, topic) for topic_filter in self.subscriptions)

    def write(self, data: bytes) -> None:
        """Queue bytes for the client; a client that stopped reading long ago is dropped."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.paused and transport.get_write_buffer_size() > MAX_WRITE_BACKLOG:
            logger.warning("dropping client %s: it has stopped reading", self.peer)
            self.abort()
            return
        transport.write(data)

    def close(self) -> None:
        """Close after flushing what was written (a CONNACK refusal must reach the client)."""
        self._broker._detach(self)
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once, discarding unsent data."""
        self._broker._detach(self)
        if self._transport is not None:
            self._transport.abort()

    def _start_keepalive(self, keepalive: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if keepalive == 0:
            return  # MQTT-3.1.2-10: zero turns the keepalive mechanism off
        self._keepalive_limit = keepalive * KEEPALIVE_GRACE
        self._timer = asyncio.get_running_loop().call_later(
            self._keepalive_limit, self._check_keepalive
        )

    def _check_keepalive(self) -> None:
        # One timer per keepalive period rather than one per packet: re-arm for the remainder.
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_seen
        if idle >= self._keepalive_limit:
            logger.info("dropping client %s: silent for %.1f s", self.peer, idle)
            self._timer = None
            self.abort()
            return
        self._timer = loop.call_later(self._keepalive_limit - idle, self._check_keepalive)

    def _connect_timed_out(self) -> None:
        self._timer = None
        if not self.connected:
            logger.info("dropping client %s: no CONNECT within %.0f s", self.peer, CONNECT_TIMEOUT)
            self.abort()
