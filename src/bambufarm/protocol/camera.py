"""The JPEG camera stream on TLS 6000 of A1/P1 printers (protocol.md §3.2).

The client sends one 80-byte auth packet (a 16-byte head, then user and access code, each
NUL-padded to 32 bytes); the printer answers with frames, each a 16-byte header giving the JPEG
size followed by the JPEG. All integers are little-endian uint32.
"""

import struct
from dataclasses import dataclass

from bambufarm.protocol.errors import CameraError

AUTH_SIZE = 80
FRAME_HEADER_SIZE = 16
CAMERA_USER = "bblp"
# Printers send 1280x720 JPEGs of roughly 100-300 KB; 4 MiB refuses nonsense sizes that would
# otherwise make a client buffer gigabytes on a corrupted header.
MAX_FRAME_SIZE = 4 * 1024 * 1024
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"

_FIELD_SIZE = 32
_AUTH = struct.Struct(f"<IIII{_FIELD_SIZE}s{_FIELD_SIZE}s")
_AUTH_PAYLOAD = 2 * _FIELD_SIZE  # 0x40: bytes of credentials after the 16-byte head
_AUTH_TYPE = 0x3000
_HEADER = struct.Struct("<IIII")
_FRAME_FLAGS = 1


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 16-byte header before each JPEG: its size and two fields printers set to 0 and 1."""

    size: int
    itrack: int
    flags: int


def encode_auth(username: str, access_code: str) -> bytes:
    """The 80-byte auth packet a client sends right after the TLS handshake."""
    return _AUTH.pack(
        _AUTH_PAYLOAD,
        _AUTH_TYPE,
        0,
        0,
        _field("username", username),
        _field("access code", access_code),
    )


def decode_auth(data: bytes) -> tuple[str, str]:
    """The (username, access code) in an auth packet."""
    if len(data) != AUTH_SIZE:
        raise CameraError(f"camera auth packet is {len(data)} bytes, expected {AUTH_SIZE}")
    payload, kind, _flags, _reserved, user, code = _AUTH.unpack(data)
    if (payload, kind) != (_AUTH_PAYLOAD, _AUTH_TYPE):
        raise CameraError(
            f"not a camera auth packet: head {payload:#x}/{kind:#x}, "
            f"expected {_AUTH_PAYLOAD:#x}/{_AUTH_TYPE:#x}"
        )
    return _text("username", user), _text("access code", code)


def encode_frame_header(size: int) -> bytes:
    """The 16-byte header announcing a JPEG of `size` bytes."""
    _check_size(size)
    return _HEADER.pack(size, 0, _FRAME_FLAGS, 0)


def decode_frame_header(data: bytes) -> FrameHeader:
    """Read a 16-byte frame header; sizes of 0 or over MAX_FRAME_SIZE raise CameraError."""
    if len(data) != FRAME_HEADER_SIZE:
        raise CameraError(f"camera frame header is {len(data)} bytes, expected {FRAME_HEADER_SIZE}")
    size, itrack, flags, _reserved = _HEADER.unpack(data)
    _check_size(size)
    return FrameHeader(size=size, itrack=itrack, flags=flags)


def _check_size(size: int) -> None:
    if not 0 < size <= MAX_FRAME_SIZE:
        raise CameraError(f"camera frame size {size} is outside 1..{MAX_FRAME_SIZE} bytes")


def _field(what: str, value: str) -> bytes:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise CameraError(f"camera {what} must be ASCII") from None
    if len(raw) > _FIELD_SIZE or b"\0" in raw:
        raise CameraError(f"camera {what} must be at most {_FIELD_SIZE} characters without NUL")
    return raw  # struct pads the field with NULs


def _text(what: str, field: bytes) -> str:
    raw = field.split(b"\0", 1)[0]
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise CameraError(f"camera {what} in the auth packet is not ASCII") from None
