"""Bind/detect frames: encoding, incremental decoding, resynchronisation and the detect reply."""

import struct
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol.bind import (
    MAX_FRAME_SIZE,
    DetectReply,
    FrameDecoder,
    detect_request,
    encode_frame,
    login_failure,
)
from bambufarm.protocol.errors import BindFrameError
from bambufarm.protocol.ssdp import BindState, ConnectType

# The detect reply captured by OBN (protocol.md §5.2), framed by hand.
CAPTURED_BODY = (
    b'{"login":{"bind":"free","command":"detect","connect":"lan","dev_cap":1,'
    b'"id":"01P00A123456789","model":"C12","name":"Shop P1S",'
    b'"sequence_id":3021,"version":"01.08.00.00"}}'
)
CAPTURED = b"\xa5\xa5" + struct.pack("<H", len(CAPTURED_BODY) + 6) + CAPTURED_BODY + b"\xa7\xa7"

REPLY = DetectReply(
    serial="01P00A123456789",
    model_code="C12",
    name="Shop P1S",
    version="01.08.00.00",
    bind=BindState.FREE,
    connect=ConnectType.LAN,
    dev_cap=1,
    sequence_id=3021,
)


def _frame(body: bytes, trailer: bytes = b"\xa7\xa7") -> bytes:
    return b"\xa5\xa5" + struct.pack("<H", len(body) + 6) + body + trailer


def test_detect_reply_matches_the_capture_byte_for_byte() -> None:
    assert REPLY.to_frame() == CAPTURED


def test_captured_reply_decodes() -> None:
    (message,) = FrameDecoder().feed(CAPTURED)
    assert DetectReply.from_message(message) == REPLY


def test_detect_request() -> None:
    (message,) = FrameDecoder().feed(detect_request("20000"))
    assert message == {"login": {"command": "detect", "sequence_id": "20000"}}


def test_login_failure() -> None:
    (message,) = FrameDecoder().feed(login_failure(1000, "not supported"))
    assert message == {
        "login": {
            "sequence_id": 1000,
            "command": "login_report",
            "status": "FAILURE",
            "reason": "not supported",
        }
    }


def test_any_trailer_is_accepted() -> None:
    body = b'{"a":1}'
    assert FrameDecoder().feed(_frame(body, trailer=b"\x12\x34")) == [{"a": 1}]


def test_frame_length_counts_the_whole_frame() -> None:
    frame = encode_frame({"a": 1})
    assert struct.unpack_from("<H", frame, 2)[0] == len(frame)
    assert frame[:2] == b"\xa5\xa5"
    assert frame[-2:] == b"\xa7\xa7"


def test_several_frames_in_one_read() -> None:
    data = encode_frame({"n": 1}) + encode_frame({"n": 2}) + encode_frame({"n": 3})
    assert FrameDecoder().feed(data) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_garbage_before_a_frame_is_skipped_and_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"GET / HTTP/1.1\r\n\r\n" + encode_frame({"n": 1})) == [{"n": 1}]
    assert decoder.discarded == 18


def test_head_with_impossible_length_resynchronises() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\xa5\xa5\x01\x00" + encode_frame({"n": 1})) == [{"n": 1}]


def test_oversized_frame_raises_and_decoder_recovers() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BindFrameError, match="over"):
        decoder.feed(b"\xa5\xa5\xff\xff")
    assert decoder.feed(encode_frame({"n": 1})) == [{"n": 1}]


def test_custom_cap() -> None:
    decoder = FrameDecoder(max_frame=64)
    with pytest.raises(BindFrameError, match="over 64"):
        decoder.feed(encode_frame({"x": "y" * 100}))


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b"\xff\xfe{}", b'"text"'])
def test_body_that_is_not_a_json_object_raises(body: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(BindFrameError):
        decoder.feed(_frame(body))
    assert decoder.feed(encode_frame({"n": 2})) == [{"n": 2}]


def test_messages_before_a_bad_frame_are_delivered_first() -> None:
    decoder = FrameDecoder()
    data = encode_frame({"n": 1}) + _frame(b"nope") + encode_frame({"n": 2})
    assert decoder.feed(data) == [{"n": 1}]
    with pytest.raises(BindFrameError, match="not JSON"):
        decoder.feed(b"")
    assert decoder.feed(b"") == [{"n": 2}]


def test_encode_refuses_oversized_and_unserialisable() -> None:
    with pytest.raises(BindFrameError, match="exceeds"):
        encode_frame({"x": "y" * MAX_FRAME_SIZE})
    with pytest.raises(BindFrameError, match="JSON"):
        encode_frame({"x": object()})


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({}, "no login object"),
        ({"login": {"command": "login"}}, "not a detect reply"),
        (
            {"login": {"command": "login_report", "status": "FAILURE", "reason": "LAN-ONLY"}},
            "refused detect.*LAN-ONLY",
        ),
        ({"login": {"command": "detect", "bind": "x", "connect": "lan"}}, "bind/connect"),
        ({"login": {"command": "detect", "bind": "free", "connect": "lan"}}, "id or model"),
        ({"login": {"command": "detect", "bind": 1, "connect": "lan"}}, "not a string"),
    ],
)
def test_bad_detect_replies(message: dict[str, Any], match: str) -> None:
    with pytest.raises(BindFrameError, match=match):
        DetectReply.from_message(message)


def test_detect_reply_with_bad_integer() -> None:
    message = orjson.loads(CAPTURED_BODY)
    message["login"]["dev_cap"] = True
    with pytest.raises(BindFrameError, match="dev_cap"):
        DetectReply.from_message(message)
    message["login"]["dev_cap"] = "7"
    assert DetectReply.from_message(message).dev_cap == 7


def _text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    # JSON text is UTF-8: lone surrogates cannot be encoded, so they are not valid input.
    alphabet = st.characters(blacklist_categories=("Cs",))
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | _text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(_text(max_size=10), json_values, max_size=5)


@given(json_objects)
def test_encode_decode_identity(obj: dict[str, Any]) -> None:
    frame = encode_frame(obj)
    assert FrameDecoder().feed(frame) == [obj]


@given(json_objects)
def test_split_at_every_byte_boundary(obj: dict[str, Any]) -> None:
    frame = encode_frame(obj) + encode_frame({"next": True})
    for cut in range(len(frame) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]) == [obj, {"next": True}]


@given(st.binary(max_size=200).filter(lambda b: b"\xa5" not in b), json_objects)
def test_resynchronises_after_garbage(garbage: bytes, obj: dict[str, Any]) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(garbage + encode_frame(obj)) == [obj]
    assert decoder.discarded == len(garbage)


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_raise_only_bind_frame_error(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        try:
            messages = decoder.feed(chunk)
        except BindFrameError:
            continue
        assert all(isinstance(message, dict) for message in messages)


replies = st.builds(
    DetectReply,
    serial=_text(min_size=1, max_size=20),
    model_code=_text(min_size=1, max_size=10),
    name=_text(max_size=30),
    version=_text(max_size=15),
    bind=st.sampled_from(BindState),
    connect=st.sampled_from(ConnectType),
    dev_cap=st.integers(min_value=0, max_value=2**31),
    sequence_id=st.integers(min_value=0, max_value=2**31),
)


@given(replies)
def test_detect_reply_identity(reply: DetectReply) -> None:
    (message,) = FrameDecoder().feed(reply.to_frame())
    assert DetectReply.from_message(message) == reply
