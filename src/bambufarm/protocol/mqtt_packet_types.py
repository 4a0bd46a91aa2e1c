"""MQTT 3.1.1 control packets as typed values, each refusing what the spec forbids.

One frozen dataclass per packet type, checked when it is built, so a `Publish` with a wildcard
topic or a QoS 1 message without a packet id cannot exist, whether the codec decoded it or a
caller built it. Turning them into bytes and back is `mqtt_packets`' job; import from there.
"""

from dataclasses import dataclass
from enum import IntEnum

from bambufarm.protocol.errors import MqttPacketError
from bambufarm.protocol.mqtt_topics import check_topic_name

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4  # MQTT 3.1.1
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
        check_topic_name(self.topic)


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
        check_topic_name(self.topic)
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
