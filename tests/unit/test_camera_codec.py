"""Camera TLS-6000 codec: the 80-byte auth packet and the 16-byte frame header."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol.camera import (
    AUTH_SIZE,
    FRAME_HEADER_SIZE,
    MAX_FRAME_SIZE,
    FrameHeader,
    decode_auth,
    decode_frame_header,
    encode_auth,
    encode_frame_header,
)
from bambufarm.protocol.errors import CameraError


def test_auth_layout_matches_protocol() -> None:
    packet = encode_auth("bblp", "12345678")
    assert len(packet) == AUTH_SIZE == 80
    assert packet[:16] == struct.pack("<IIII", 0x40, 0x3000, 0, 0)
    assert packet[16:48] == b"bblp" + b"\0" * 28
    assert packet[48:80] == b"12345678" + b"\0" * 24


def test_auth_decodes() -> None:
    assert decode_auth(encode_auth("bblp", "12345678")) == ("bblp", "12345678")


def test_frame_header_layout() -> None:
    header = encode_frame_header(123_456)
    assert len(header) == FRAME_HEADER_SIZE == 16
    assert header == struct.pack("<IIII", 123_456, 0, 1, 0)
    assert decode_frame_header(header) == FrameHeader(size=123_456, itrack=0, flags=1)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\0" * 79, "79 bytes"),
        (b"\0" * 81, "81 bytes"),
        (struct.pack("<IIII", 0x40, 0x3001, 0, 0) + b"\0" * 64, "not a camera auth packet"),
        (struct.pack("<IIII", 0x3F, 0x3000, 0, 0) + b"\0" * 64, "not a camera auth packet"),
        (struct.pack("<IIII", 0x40, 0x3000, 0, 0) + b"\xff" * 64, "not ASCII"),
    ],
)
def test_bad_auth_packets(data: bytes, match: str) -> None:
    with pytest.raises(CameraError, match=match):
        decode_auth(data)


@pytest.mark.parametrize(
    ("username", "code"),
    [("bblp", "x" * 33), ("bblü", "12345678"), ("bb\0lp", "12345678")],
)
def test_encode_auth_refuses_what_cannot_round_trip(username: str, code: str) -> None:
    with pytest.raises(CameraError):
        encode_auth(username, code)


def test_access_code_never_appears_in_errors() -> None:
    with pytest.raises(CameraError) as caught:
        encode_auth("bblp", "sécret-code")
    assert "sécret" not in str(caught.value)


@pytest.mark.parametrize("size", [0, -1, MAX_FRAME_SIZE + 1])
def test_frame_size_outside_the_cap_is_refused(size: int) -> None:
    with pytest.raises(CameraError, match="outside"):
        encode_frame_header(size)


def test_decoded_header_size_is_capped() -> None:
    with pytest.raises(CameraError, match="outside"):
        decode_frame_header(struct.pack("<IIII", MAX_FRAME_SIZE + 1, 0, 1, 0))
    with pytest.raises(CameraError, match="15 bytes"):
        decode_frame_header(b"\0" * 15)


credentials = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=32)


@given(credentials, credentials)
def test_auth_identity(username: str, code: str) -> None:
    assert decode_auth(encode_auth(username, code)) == (username, code)


@given(st.integers(min_value=1, max_value=MAX_FRAME_SIZE))
def test_frame_header_identity(size: int) -> None:
    assert decode_frame_header(encode_frame_header(size)) == FrameHeader(size, 0, 1)


@given(st.binary(min_size=0, max_size=100))
def test_arbitrary_auth_bytes_raise_only_camera_error(data: bytes) -> None:
    try:
        username, code = decode_auth(data)
    except CameraError:
        return
    assert isinstance(username, str)
    assert isinstance(code, str)


@given(st.binary(min_size=0, max_size=20))
def test_arbitrary_header_bytes_raise_only_camera_error(data: bytes) -> None:
    try:
        header = decode_frame_header(data)
    except CameraError:
        return
    assert 0 < header.size <= MAX_FRAME_SIZE
