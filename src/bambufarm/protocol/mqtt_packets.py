"""MQTT 3.1.1 packets: encode typed values to bytes, decode bytes to typed values.

Pure and sans-IO: the simulator's broker and the fleet's client move bytes, this module turns
them into packets and back. Bambu printers speak MQTT 3.1.1 only (protocol.md §1.1), so a
CONNECT naming any other protocol level decodes to `UnsupportedConnect` (the broker answers
CONNACK 1) instead of being read with 3.1.1 rules. Every malformed input raises
`MqttPacketError`; nothing else escapes.

This is the one import for MQTT packets. The values themselves live in `mqtt_packet_types`,
framing (remaining length, cutting a stream into packets) in `mqtt_framing` and topic rules in
`mqtt_topics`; their public names are re-exported here.
"""

from bambufarm.protocol.errors import MqttPacketError
from bambufarm.protocol.mqtt_framing import (
    MAX_REMAINING_LENGTH,
    FrameReader,
    encode_remaining_length,
    frame,
)
from bambufarm.protocol.mqtt_packet_types import (
    MAX_PACKET_ID,
    PROTOCOL_LEVEL,
    PROTOCOL_NAME,
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    PacketType,
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
    Will,
)
from bambufarm.protocol.mqtt_topics import is_valid_topic_filter, topic_matches

__all__ = [
    "MAX_PACKET_ID",
    "MAX_REMAINING_LENGTH",
    "PROTOCOL_LEVEL",
    "PROTOCOL_NAME",
    "SUBACK_FAILURE",
    "Connack",
    "ConnackCode",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketReader",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedConnect",
    "Will",
    "decode",
    "decode_packet",
    "encode",
    "encode_publish",
    "encode_remaining_length",
    "is_valid_topic_filter",
    "topic_matches",
]


# --------------------------------------------------------------------------- encoding


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
    return frame(0x10, header + packet.keepalive.to_bytes(2, "big") + payload)


def _encode_unsupported_connect(packet: UnsupportedConnect) -> bytes:
    # The smallest CONNECT that parses under MQTT 3.1 rules too: clean session, keepalive 0,
    # empty client id.
    body = _utf8(packet.protocol_name, "protocol name") + bytes((packet.protocol_level, 0x02))
    return frame(0x10, body + b"\x00\x00\x00\x00")


def encode_publish(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH without building a `Publish`: the simulator's per-report fast path."""
    body = _utf8(topic, "topic name")
    return b"\x30" + encode_remaining_length(len(body) + len(payload)) + body + payload


def _encode_publish(packet: Publish) -> bytes:
    first = 0x30 | (packet.qos << 1) | (0x08 if packet.dup else 0) | (1 if packet.retain else 0)
    body = _utf8(packet.topic, "topic name")
    if packet.packet_id is not None:
        body += packet.packet_id.to_bytes(2, "big")
    return frame(first, body + packet.payload)


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
            return frame(0x82, body)
        case Suback():
            return frame(0x90, packet.packet_id.to_bytes(2, "big") + bytes(packet.return_codes))
        case Unsubscribe():
            body = packet.packet_id.to_bytes(2, "big")
            for topic_filter in packet.topics:
                body += _utf8(topic_filter, "topic filter")
            return frame(0xA2, body)
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


class PacketReader(FrameReader[Packet]):
    """Incremental framing: feed bytes as they arrive, get whole packets back.

    A packet whose declared size exceeds `max_packet_size` is refused as soon as its length
    is known, before its body is buffered. After an error the stream cannot be resynchronised,
    so every later `feed` raises too.
    """

    __slots__ = ()

    def __init__(self, max_packet_size: int) -> None:
        """Frame packets of at most `max_packet_size` bytes, header included."""
        super().__init__(max_packet_size, decode_packet)
