"""The MQTT 3.1.1 codec: round trips, framing, malformed input, topic matching."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.protocol.errors import MqttPacketError
from bambufarm.protocol.mqtt_packets import (
    MAX_REMAINING_LENGTH,
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
    Will,
    decode,
    encode,
    encode_publish,
    encode_remaining_length,
    is_valid_topic_filter,
    topic_matches,
)

# ----------------------------------------------------------------------------- strategies

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=24,
)
topic_names = texts.filter(lambda t: t != "" and "+" not in t and "#" not in t)
topic_filters = texts.filter(bool)
packet_ids = st.integers(1, 0xFFFF)
qos_levels = st.sampled_from((0, 1, 2))
small_bytes = st.binary(max_size=64)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_levels)
    return Publish(
        draw(topic_names),
        draw(st.binary(max_size=300)),  # crosses the 127-byte one-byte length boundary
        qos,
        draw(packet_ids) if qos else None,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    username = draw(st.none() | texts)
    password = draw(st.none() | small_bytes) if username is not None else None
    will = draw(st.none() | st.builds(Will, topic_names, small_bytes, qos_levels, st.booleans()))
    return Connect(
        draw(texts), draw(st.booleans()), draw(st.integers(0, 0xFFFF)), username, password, will
    )


@st.composite
def connacks(draw: st.DrawFn) -> Connack:
    code = draw(st.sampled_from(list(ConnackCode)))
    present = draw(st.booleans()) if code == ConnackCode.ACCEPTED else False
    return Connack(code, present)


STRATEGIES: dict[str, st.SearchStrategy[Packet]] = {
    "connect": connects(),
    "unsupported_connect": st.builds(
        UnsupportedConnect, texts, st.integers(0, 255).filter(lambda n: n != 4)
    ),
    "connack": connacks(),
    "publish": publishes(),
    "puback": st.builds(Puback, packet_ids),
    "pubrec": st.builds(Pubrec, packet_ids),
    "pubrel": st.builds(Pubrel, packet_ids),
    "pubcomp": st.builds(Pubcomp, packet_ids),
    "subscribe": st.builds(
        Subscribe, packet_ids, st.lists(st.tuples(topic_filters, qos_levels), min_size=1).map(tuple)
    ),
    "suback": st.builds(
        Suback, packet_ids, st.lists(st.sampled_from((0, 1, 2, 0x80)), min_size=1).map(tuple)
    ),
    "unsubscribe": st.builds(
        Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1).map(tuple)
    ),
    "unsuback": st.builds(Unsuback, packet_ids),
    "pingreq": st.just(Pingreq()),
    "pingresp": st.just(Pingresp()),
    "disconnect": st.just(Disconnect()),
}
any_packet = st.one_of(*STRATEGIES.values())


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
@given(data=st.data())
def test_encode_decode_identity(kind: str, data: st.DataObject) -> None:
    packet = data.draw(STRATEGIES[kind])
    assert decode(encode(packet)) == packet


@given(packets=st.lists(any_packet, max_size=8), chunk_sizes=st.lists(st.integers(1, 40)))
def test_reader_yields_the_same_packets_for_any_chunking(
    packets: list[Packet], chunk_sizes: list[int]
) -> None:
    stream = b"".join(encode(p) for p in packets)
    reader = PacketReader(1 << 16)
    got: list[Packet] = []
    pos = 0
    for size in chunk_sizes:
        got += reader.feed(stream[pos : pos + size])
        pos += size
    got += reader.feed(stream[pos:])
    assert got == packets
    assert reader.buffered == 0


@given(topic=topic_names, payload=st.binary(max_size=400))
def test_fast_publish_encoding_matches_the_general_one(topic: str, payload: bytes) -> None:
    assert encode_publish(topic, payload) == encode(Publish(topic, payload))


def test_known_bytes_of_a_paho_style_connect_decode() -> None:
    # Clean session, keepalive 60, zero-length client id: what paho sends by default.
    raw = bytes.fromhex("100c00044d5154540402003c0000")
    assert decode(raw) == Connect("", clean_session=True, keepalive=60)


def test_connect_with_credentials_encodes_flags_and_fields_in_order() -> None:
    raw = encode(Connect("c", keepalive=5, username="bblp", password=b"12345678"))
    assert raw[9] == 0xC2  # username + password + clean session
    assert raw.endswith(b"\x00\x04bblp\x00\x0812345678")


# ----------------------------------------------------------------------------- malformed input


@given(data=st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_packet_errors(data: bytes) -> None:
    try:
        packet = decode(data)
    except MqttPacketError:
        return
    assert decode(encode(packet)) == packet


@settings(max_examples=300)
@given(data=st.binary(max_size=300), chunk_sizes=st.lists(st.integers(1, 17), max_size=30))
def test_reader_on_arbitrary_chunks_raises_only_packet_errors(
    data: bytes, chunk_sizes: list[int]
) -> None:
    reader = PacketReader(256)
    got: list[Packet] = []
    pos = 0
    try:
        for size in [*chunk_sizes, len(data)]:
            got += reader.feed(data[pos : pos + size])
            pos += size
    except MqttPacketError:
        return
    assert sum(len(encode(p)) for p in got) + reader.buffered <= len(data)


@given(packet=any_packet, cut=st.integers(1, 1000))
def test_truncated_packets_are_refused(packet: Packet, cut: int) -> None:
    raw = encode(packet)
    with pytest.raises(MqttPacketError):
        decode(raw[: max(0, len(raw) - cut)])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "reserved"),
        (b"\xf0\x00", "reserved"),
        (b"\x30\xff\xff\xff\xff\x01", "more than four bytes"),
        (b"\xc0\x01\x00", "trailing"),
        (b"\x80\x06\x00\x01\x00\x01a\x00", "flags"),  # SUBSCRIBE without the 0b0010 flags
        (b"\x82\x02\x00\x01", "at least one topic filter"),
        (b"\x82\x06\x00\x01\x00\x01a\x03", "QoS 3 is not"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS bits are 3"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x38\x03\x00\x01a", "DUP"),
        (b"\x30\x03\x00\x01#", "wildcard"),
        (b"\x30\x02\x00\x00", "empty"),
        (b"\x30\x04\x00\x02\xc3\x28", "UTF-8"),
        (b"\x30\x03\x00\x01\x00", r"U\+0000"),
        (b"\x40\x01\x00", "past the end"),
        (b"\x20\x02\x00\x09", "unknown return code"),
        (b"\x20\x02\x01\x05", "session-present"),
        (bytes.fromhex("100c00044d5154540403003c0000"), "reserved flag"),
        (bytes.fromhex("100c00044d5154540440003c0000"), "password flag"),
        (bytes.fromhex("100c00044d5154540418003c0000"), "without a will"),
        (bytes.fromhex("100c00044d5154580402003c0000"), "not 'MQTT'"),
    ],
)
def test_malformed_packets_name_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(MqttPacketError, match=message):
        decode(raw)


def test_other_protocol_levels_decode_as_unsupported_connect() -> None:
    mqtt31 = bytes.fromhex("100e00064d514973647003020000") + b"\x00\x00"
    assert decode(mqtt31) == UnsupportedConnect("MQIsdp", 3)
    # MQTT 5 puts properties after keepalive; they must not be read with 3.1.1 rules.
    mqtt5 = bytes.fromhex("100d00044d5154540502003c00000000")[:15]
    assert decode(mqtt5) == UnsupportedConnect("MQTT", 5)


def test_oversized_packet_is_refused_from_its_header_alone() -> None:
    reader = PacketReader(1000)
    reader.feed(b"\x30")
    with pytest.raises(MqttPacketError, match="exceeds the limit of 1000"):
        reader.feed(encode_remaining_length(5000))
    assert reader.buffered <= 4  # the body was never waited for


def test_reader_stays_failed_after_an_error() -> None:
    reader = PacketReader(1000)
    with pytest.raises(MqttPacketError):
        reader.feed(b"\x00\x00")
    with pytest.raises(MqttPacketError, match="already failed"):
        reader.feed(encode(Pingreq()))


def test_four_byte_remaining_length_is_accepted() -> None:
    payload = b"x" * (2_097_152 - 3)  # body 2,097,152 bytes: the first four-byte length
    raw = encode(Publish("a", payload))
    assert raw[1:5] == b"\x80\x80\x80\x01"
    reader = PacketReader(len(raw))
    got: list[Packet] = []
    for pos in range(0, len(raw), 16_384):  # TLS-record-sized chunks
        got += reader.feed(raw[pos : pos + 16_384])
    assert got == [Publish("a", payload)]


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (MAX_REMAINING_LENGTH, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_boundaries(length: int, encoded: bytes) -> None:
    assert encode_remaining_length(length) == encoded


def test_remaining_length_past_four_bytes_cannot_be_encoded() -> None:
    with pytest.raises(MqttPacketError, match="four bytes"):
        encode_remaining_length(MAX_REMAINING_LENGTH + 1)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Publish("a", b"", qos=1),
        lambda: Publish("a", b"", qos=0, packet_id=3),
        lambda: Publish("a/+", b""),
        lambda: Publish("a", b"", qos=3, packet_id=1),
        lambda: Puback(0),
        lambda: Puback(70_000),
        lambda: Connect("c", username=None, password=b"x"),
        lambda: Connect("c", keepalive=70_000),
        lambda: Subscribe(1, ()),
        lambda: Suback(1, (3,)),
        lambda: Unsubscribe(1, ("",)),
        lambda: Connack(ConnackCode.NOT_AUTHORIZED, session_present=True),
        lambda: UnsupportedConnect("MQTT", 4),
        lambda: encode(Publish("t" * 70_000, b"")),
    ],
)
def test_invalid_values_cannot_be_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(MqttPacketError):
        build()


# ----------------------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("device/01P00A000000001/report", "device/01P00A000000001/report", True),
        ("device/+/report", "device/01P00A000000001/report", True),
        ("device/+/report", "device/01P00A000000001/request", False),
        ("device/#", "device", True),  # "#" also matches the parent level
        ("device/#", "device/x/report", True),
        ("#", "device/x/report", True),
        ("sport/+", "sport/", True),
        ("sport/+", "sport", False),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@given(topic=topic_names)
def test_every_topic_matches_itself_and_hash_matches_non_system_topics(topic: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic) is not topic.startswith("$")


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("#", True),
        ("device/+/report", True),
        ("device/#", True),
        ("+", True),
        ("", False),
        ("device/#/report", False),
        ("device#", False),
        ("device/a+", False),
        ("a\x00b", False),
    ],
)
def test_topic_filter_validity(topic_filter: str, valid: bool) -> None:
    assert is_valid_topic_filter(topic_filter) is valid
