"""MQTT 3.1.1 packets as typed values: encode, decode, incremental framing, topic matching.

Pure and sans-IO: the simulator's broker and the fleet's client move bytes, this module turns
them into packets and back. Bambu printers speak MQTT 3.1.1 only (protocol.md §1.1), so a
CONNECT naming any other protocol level decodes to `UnsupportedConnect` (the broker answers
CONNACK 1) instead of being read with 3.1.1 rules. Every malformed input raises
`MqttPacketError`; nothing else escapes.
"""

from dataclasses import dataclass
from enum import IntEnum

from bambufarm.protocol.errors import MqttPacketError

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4  # MQTT 3.1.1
# Four 7-bit groups of remaining length (spec 2.2.3): 268,435,455 bytes at most.
MAX_REMAINING_LENGTH = 0x0FFFFFFF
MAX_PACKET_ID = 0xFFFF
SUBACK_FAILURE = 0x80


class PacketType(IntEnum):
    """The control packet type in the high nibble of the first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(IntEnum):
    """CONNACK return codes of MQTT 3.1.1 (spec table 3.1)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5  # what a Bambu printer answers to a wrong access code


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message carried in a CONNECT."""

    topic: str
    message: bytes
    qos: int = 0
    retain: bool = False

    def __post_init__(self) -> None:
        _check_qos(self.qos)
        _check_topic_name(self.topic)


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT of MQTT 3.1.1 (protocol name `MQTT`, level 4)."""

    client_id: str
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None

    def __post_init__(self) -> None:
        _check_u16(self.keepalive, "keepalive")
        if self.password is not None and self.username is None:
            raise MqttPacketError("CONNECT with a password needs a username (MQTT-3.1.2-22)")


@dataclass(frozen=True, slots=True)
class UnsupportedConnect:
    """A CONNECT for a protocol level other than 4; only its name and level are read."""

    protocol_name: str
    protocol_level: int

    def __post_init__(self) -> None:
        if not 0 <= self.protocol_level <= 0xFF or self.protocol_level == PROTOCOL_LEVEL:
            raise MqttPacketError(f"protocol level {self.protocol_level} is not unsupported")


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK: the server's answer to CONNECT."""

    return_code: ConnackCode
    session_present: bool = False

    def __post_init__(self) -> None:
        if self.session_present and self.return_code != ConnackCode.ACCEPTED:
            raise MqttPacketError("a refused CONNACK must not set session-present (MQTT-3.2.2-4)")


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH; `packet_id` is present exactly when qos > 0."""

    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False

    def __post_init__(self) -> None:
        _check_qos(self.qos)
        _check_topic_name(self.topic)
        if self.qos == 0:
            if self.packet_id is not None or self.dup:
                raise MqttPacketError("a QoS 0 PUBLISH has no packet id and no DUP flag")
        elif self.packet_id is None:
            raise MqttPacketError(f"a QoS {self.qos} PUBLISH needs a packet id")
        else:
            _check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True)
class _PacketIdOnly:
    """A packet whose only field is a packet id (the acknowledgements)."""

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True)
class Puback(_PacketIdOnly):
    """PUBACK: acknowledges a QoS 1 PUBLISH."""


@dataclass(frozen=True, slots=True)
class Pubrec(_PacketIdOnly):
    """PUBREC: first answer to a QoS 2 PUBLISH."""


@dataclass(frozen=True, slots=True)
class Pubrel(_PacketIdOnly):
    """PUBREL: the publisher's answer to PUBREC."""


@dataclass(frozen=True, slots=True)
class Pubcomp(_PacketIdOnly):
    """PUBCOMP: completes a QoS 2 exchange."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: one or more (topic filter, requested QoS) pairs."""

    packet_id: int
    topics: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        if not self.topics:
            raise MqttPacketError("SUBSCRIBE needs at least one topic filter (MQTT-3.8.3-3)")
        for topic_filter, qos in self.topics:
            _check_qos(qos)
            if not topic_filter:
                raise MqttPacketError("SUBSCRIBE has an empty topic filter (MQTT-4.7.3-1)")


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK: one return code per requested filter (granted QoS or 0x80)."""

    packet_id: int
    return_codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        if not self.return_codes:
            raise MqttPacketError("SUBACK needs at least one return code")
        for code in self.return_codes:
            if code not in (0, 1, 2, SUBACK_FAILURE):
                raise MqttPacketError(f"SUBACK return code {code:#x} is not 0, 1, 2 or 0x80")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters."""

    packet_id: int
    topics: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        if not self.topics:
            raise MqttPacketError("UNSUBSCRIBE needs at least one topic filter (MQTT-3.10.3-2)")
        if any(not topic for topic in self.topics):
            raise MqttPacketError("UNSUBSCRIBE has an empty topic filter (MQTT-4.7.3-1)")


@dataclass(frozen=True, slots=True)
class Unsuback(_PacketIdOnly):
    """UNSUBACK: acknowledges an UNSUBSCRIBE."""


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ: the client's keepalive probe."""


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP: the answer to PINGREQ."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: the client closes cleanly."""


Packet = (
    Connect
    | UnsupportedConnect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)


# --------------------------------------------------------------------------- validation


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise MqttPacketError(f"QoS {qos} is not 0, 1 or 2")


def _check_u16(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise MqttPacketError(f"{what} {value} does not fit in two bytes")


def _check_packet_id(packet_id: int) -> None:
    if not 1 <= packet_id <= MAX_PACKET_ID:
        raise MqttPacketError(f"packet id {packet_id} is not in 1..65535 (MQTT-2.3.1-1)")


def _check_topic_name(topic: str) -> None:
    if not topic:
        raise MqttPacketError("topic name is empty (MQTT-4.7.3-1)")
    if "+" in topic or "#" in topic:
        raise MqttPacketError(f"topic name {topic!r} contains a wildcard (MQTT-3.3.2-2)")


def is_valid_topic_filter(topic_filter: str) -> bool:
    """True when `topic_filter` follows the wildcard rules of spec 4.7.1."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when the topic name `topic` matches `topic_filter` (with `+` and `#` wildcards)."""
    if topic_filter == topic:
        return True
    # Wildcards at the first level never match topics starting with "$" (MQTT-4.7.2-1).
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


# --------------------------------------------------------------------------- encoding


def encode_remaining_length(length: int) -> bytes:
    """The variable-length encoding of a remaining length (1 to 4 bytes)."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise MqttPacketError(f"remaining length {length} does not fit in four bytes")
    out = bytearray()
    while True:
        digit = length & 0x7F
        length >>= 7
        if length:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _utf8(text: str, what: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise MqttPacketError(f"{what} is not encodable as UTF-8: {err.reason}") from err
    return _binary(raw, what)


def _binary(raw: bytes, what: str) -> bytes:
    if len(raw) > 0xFFFF:
        raise MqttPacketError(f"{what} is {len(raw)} bytes; at most 65535 fit in MQTT")
    return len(raw).to_bytes(2, "big") + raw


def _frame(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def _encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = _utf8(packet.client_id, "client id")
    if packet.will is not None:
        flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
        payload += _utf8(packet.will.topic, "will topic") + _binary(
            packet.will.message, "will message"
        )
    if packet.username is not None:
        flags |= 0x80
        payload += _utf8(packet.username, "username")
    if packet.password is not None:
        flags |= 0x40
        payload += _binary(packet.password, "password")
    header = _utf8(PROTOCOL_NAME, "protocol name") + bytes((PROTOCOL_LEVEL, flags))
    return _frame(0x10, header + packet.keepalive.to_bytes(2, "big") + payload)


def _encode_unsupported_connect(packet: UnsupportedConnect) -> bytes:
    # The smallest CONNECT that parses under MQTT 3.1 rules too: clean session, keepalive 0,
    # empty client id.
    body = _utf8(packet.protocol_name, "protocol name") + bytes((packet.protocol_level, 0x02))
    return _frame(0x10, body + b"\x00\x00\x00\x00")


def encode_publish(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH without building a `Publish`: the simulator's per-report fast path."""
    body = _utf8(topic, "topic name")
    return b"\x30" + encode_remaining_length(len(body) + len(payload)) + body + payload


def _encode_publish(packet: Publish) -> bytes:
    first = 0x30 | (packet.qos << 1) | (0x08 if packet.dup else 0) | (1 if packet.retain else 0)
    body = _utf8(packet.topic, "topic name")
    if packet.packet_id is not None:
        body += packet.packet_id.to_bytes(2, "big")
    return _frame(first, body + packet.payload)


def encode(packet: Packet) -> bytes:
    """The wire bytes of one packet."""
    match packet:
        case Publish():
            return _encode_publish(packet)
        case Connect():
            return _encode_connect(packet)
        case UnsupportedConnect():
            return _encode_unsupported_connect(packet)
        case Connack():
            return bytes((0x20, 2, 1 if packet.session_present else 0, packet.return_code))
        case Puback():
            return b"\x40\x02" + packet.packet_id.to_bytes(2, "big")
        case Pubrec():
            return b"\x50\x02" + packet.packet_id.to_bytes(2, "big")
        case Pubrel():
            return b"\x62\x02" + packet.packet_id.to_bytes(2, "big")
        case Pubcomp():
            return b"\x70\x02" + packet.packet_id.to_bytes(2, "big")
        case Subscribe():
            body = packet.packet_id.to_bytes(2, "big")
            for topic_filter, qos in packet.topics:
                body += _utf8(topic_filter, "topic filter") + bytes((qos,))
            return _frame(0x82, body)
        case Suback():
            return _frame(0x90, packet.packet_id.to_bytes(2, "big") + bytes(packet.return_codes))
        case Unsubscribe():
            body = packet.packet_id.to_bytes(2, "big")
            for topic_filter in packet.topics:
                body += _utf8(topic_filter, "topic filter")
            return _frame(0xA2, body)
        case Unsuback():
            return b"\xb0\x02" + packet.packet_id.to_bytes(2, "big")
        case Pingreq():
            return b"\xc0\x00"
        case Pingresp():
            return b"\xd0\x00"
        case Disconnect():
            return b"\xe0\x00"


# --------------------------------------------------------------------------- decoding


class _Cursor:
    """Reads MQTT fields from one packet body, raising MqttPacketError past its end."""

    __slots__ = ("_body", "_pos", "_what")

    def __init__(self, body: bytes, what: str) -> None:
        self._body = body
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._body) - self._pos

    def take(self, count: int, field: str) -> bytes:
        end = self._pos + count
        if end > len(self._body):
            raise MqttPacketError(f"{self._what}: {field} runs past the end of the packet")
        chunk = self._body[self._pos : end]
        self._pos = end
        return chunk

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def binary(self, field: str) -> bytes:
        return self.take(self.u16(f"{field} length"), field)

    def text(self, field: str) -> str:
        raw = self.binary(field)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MqttPacketError(f"{self._what}: {field} is not valid UTF-8") from err
        if "\x00" in text:
            raise MqttPacketError(f"{self._what}: {field} contains U+0000 (MQTT-1.5.3-2)")
        return text

    def rest(self) -> bytes:
        chunk = self._body[self._pos :]
        self._pos = len(self._body)
        return chunk

    def finish(self) -> None:
        if self._pos != len(self._body):
            raise MqttPacketError(f"{self._what}: {self.remaining} unexpected trailing bytes")


_FIXED_FLAGS = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}


def _decode_connect(cur: _Cursor) -> Connect | UnsupportedConnect:
    name = cur.text("protocol name")
    level = cur.byte("protocol level")
    if level != PROTOCOL_LEVEL:
        # Read no further: other levels lay the rest out differently (MQTT 5 properties).
        return UnsupportedConnect(name, level)
    if name != PROTOCOL_NAME:
        raise MqttPacketError(f"CONNECT: protocol name {name!r} is not 'MQTT' (MQTT-3.1.2-1)")
    flags = cur.byte("connect flags")
    if flags & 0x01:
        raise MqttPacketError("CONNECT: reserved flag is set (MQTT-3.1.2-3)")
    if flags & 0x40 and not flags & 0x80:
        raise MqttPacketError("CONNECT: password flag set without username flag (MQTT-3.1.2-22)")
    keepalive = cur.u16("keepalive")
    client_id = cur.text("client id")
    will = None
    if flags & 0x04:
        will = Will(
            cur.text("will topic"),
            cur.binary("will message"),
            (flags >> 3) & 0x03,
            bool(flags & 0x20),
        )
    elif flags & 0x38:
        raise MqttPacketError("CONNECT: will QoS or retain set without a will (MQTT-3.1.2-11)")
    username = cur.text("username") if flags & 0x80 else None
    password = cur.binary("password") if flags & 0x40 else None
    cur.finish()
    return Connect(client_id, bool(flags & 0x02), keepalive, username, password, will)


def _decode_publish(flags: int, cur: _Cursor) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MqttPacketError("PUBLISH: QoS bits are 3 (MQTT-3.3.1-4)")
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MqttPacketError("PUBLISH: DUP set on a QoS 0 message (MQTT-3.3.1-2)")
    topic = cur.text("topic name")
    packet_id = cur.u16("packet id") if qos else None
    return Publish(topic, cur.rest(), qos, packet_id, bool(flags & 0x01), dup)


def _decode_subscribe(cur: _Cursor) -> Subscribe:
    packet_id = cur.u16("packet id")
    topics: list[tuple[str, int]] = []
    while cur.remaining:
        # The constructor refuses reserved bits in the QoS byte (MQTT-3.8.3-4).
        topics.append((cur.text("topic filter"), cur.byte("requested QoS")))
    return Subscribe(packet_id, tuple(topics))


def _decode_unsubscribe(cur: _Cursor) -> Unsubscribe:
    packet_id = cur.u16("packet id")
    topics: list[str] = []
    while cur.remaining:
        topics.append(cur.text("topic filter"))
    return Unsubscribe(packet_id, tuple(topics))


def _decode_connack(cur: _Cursor) -> Connack:
    ack_flags = cur.byte("acknowledge flags")
    code = cur.byte("return code")
    cur.finish()
    if ack_flags & 0xFE:
        raise MqttPacketError(f"CONNACK: reserved acknowledge flags {ack_flags:#x}")
    try:
        return_code = ConnackCode(code)
    except ValueError as err:
        raise MqttPacketError(f"CONNACK: unknown return code {code}") from err
    if ack_flags and return_code != ConnackCode.ACCEPTED:
        raise MqttPacketError("CONNACK: session-present set on a refusal (MQTT-3.2.2-4)")
    return Connack(return_code, bool(ack_flags))


def decode_packet(first_byte: int, body: bytes) -> Packet:
    """Decode one packet from its first byte and its body (everything after remaining length)."""
    kind = first_byte >> 4
    try:
        packet_type = PacketType(kind)
    except ValueError as err:
        raise MqttPacketError(f"packet type {kind} is reserved") from err
    try:
        return _decode_body(packet_type, first_byte & 0x0F, _Cursor(body, packet_type.name))
    except MqttPacketError as err:
        # Value checks live in the packet constructors; say which packet they refused.
        if str(err).startswith(packet_type.name):
            raise
        raise MqttPacketError(f"{packet_type.name}: {err}") from err


def _decode_body(packet_type: PacketType, flags: int, cur: _Cursor) -> Packet:
    if packet_type == PacketType.PUBLISH:
        return _decode_publish(flags, cur)
    if flags != _FIXED_FLAGS[packet_type]:
        raise MqttPacketError(
            f"{packet_type.name}: fixed-header flags {flags:#x}, expected "
            f"{_FIXED_FLAGS[packet_type]:#x} (MQTT-2.2.2-2)"
        )
    match packet_type:
        case PacketType.CONNECT:
            return _decode_connect(cur)
        case PacketType.CONNACK:
            return _decode_connack(cur)
        case PacketType.SUBSCRIBE:
            return _decode_subscribe(cur)
        case PacketType.SUBACK:
            return Suback(cur.u16("packet id"), tuple(cur.rest()))
        case PacketType.UNSUBSCRIBE:
            return _decode_unsubscribe(cur)
        case PacketType.PINGREQ | PacketType.PINGRESP | PacketType.DISCONNECT:
            cur.finish()
            return _EMPTY[packet_type]
        case _:
            packet_id = cur.u16("packet id")
            cur.finish()
            return _ACKS[packet_type](packet_id)


_EMPTY: dict[PacketType, Pingreq | Pingresp | Disconnect] = {
    PacketType.PINGREQ: Pingreq(),
    PacketType.PINGRESP: Pingresp(),
    PacketType.DISCONNECT: Disconnect(),
}
_ACKS: dict[PacketType, type[Puback | Pubrec | Pubrel | Pubcomp | Unsuback]] = {
    PacketType.PUBACK: Puback,
    PacketType.PUBREC: Pubrec,
    PacketType.PUBREL: Pubrel,
    PacketType.PUBCOMP: Pubcomp,
    PacketType.UNSUBACK: Unsuback,
}


def decode(data: bytes) -> Packet:
    """Decode exactly one complete packet; anything short, long or malformed raises."""
    reader = PacketReader(max(len(data), 2))
    packets = reader.feed(data)
    if len(packets) != 1 or reader.buffered:
        raise MqttPacketError(
            f"expected exactly one complete packet in {len(data)} bytes, "
            f"found {len(packets)} and {reader.buffered} bytes left over"
        )
    return packets[0]


class PacketReader:
    """Incremental framing: feed bytes as they arrive, get whole packets back.

    A packet whose declared size exceeds `max_packet_size` is refused as soon as its length
    is known, before its body is buffered. After an error the stream cannot be resynchronised,
    so every later `feed` raises too.
    """

    __slots__ = ("_buffer", "_failed", "_needed", "max_packet_size")

    def __init__(self, max_packet_size: int) -> None:
        """Frame packets of at most `max_packet_size` bytes, header included."""
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        # Size of the incomplete packet at the head of the buffer once its header is known:
        # a large packet arriving in many TLS records is then not re-scanned per record.
        self._needed = 0
        self._failed: MqttPacketError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Append `data` and return every packet it completes, in order."""
        if self._failed is not None:
            raise MqttPacketError(f"stream already failed: {self._failed}")
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []
            buf = bytes(self._buffer)
            self._buffer.clear()
        else:
            buf = bytes(data)
        packets: list[Packet] = []
        start = 0
        try:
            while start < len(buf):
                frame = self._frame_at(buf, start)
                if frame is None:
                    self._needed = 0
                    break
                header_end, end = frame
                if end > len(buf):
                    self._needed = end - start
                    break
                packets.append(decode_packet(buf[start], buf[header_end:end]))
                start = end
        except MqttPacketError as err:
            self._failed = err
            raise
        if start < len(buf):
            self._buffer += buf[start:]
        return packets

    def _frame_at(self, buf: bytes, start: int) -> tuple[int, int] | None:
        """(body start, packet end) of the packet at `start`; None while its header is partial."""
        kind = buf[start] >> 4
        if kind in (0, 15):
            raise MqttPacketError(f"packet type {kind} is reserved")
        length = 0
        shift = 0
        pos = start + 1
        while True:
            if pos >= len(buf):
                return None
            digit = buf[pos]
            length |= (digit & 0x7F) << shift
            pos += 1
            if not digit & 0x80:
                break
            shift += 7
            if shift == 28:
                raise MqttPacketError("remaining length uses more than four bytes (spec 2.2.3)")
        if pos - start + length > self.max_packet_size:
            raise MqttPacketError(
                f"packet of {pos - start + length} bytes exceeds the limit of "
                f"{self.max_packet_size} bytes"
            )
        return pos, pos + length
