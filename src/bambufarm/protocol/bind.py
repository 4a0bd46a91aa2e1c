"""Bind/detect frames on TCP 3000 (plain) and 3002 (TLS) (protocol.md §5).

Each frame is `A5 A5 | uint16 LE total_len | UTF-8 JSON object | A7 A7`, where `total_len`
counts all of it. Slicers send `login.detect` when a printer is added by IP; the printer answers
with its identity. OBFA reads the 3002 trailer as a CRC16, so any 2-byte trailer is accepted.
"""

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bambufarm.protocol.errors import BindFrameError
from bambufarm.protocol.ssdp import BindState, ConnectType

FRAME_HEAD = b"\xa5\xa5"
FRAME_TAIL = b"\xa7\xa7"
_LENGTH = struct.Struct("<H")
_OVERHEAD = len(FRAME_HEAD) + _LENGTH.size + len(FRAME_TAIL)  # 6 bytes around the JSON
_MIN_FRAME = _OVERHEAD + 2  # the smallest JSON object, `{}`
# A cloud login request is about 400 bytes and a detect reply about 250; 16 KiB is generous
# while keeping a hostile peer from parking 64 KiB (the uint16 limit) per connection.
MAX_FRAME_SIZE = 16 * 1024


def encode_frame(obj: Mapping[str, Any]) -> bytes:
    """One frame carrying `obj` as JSON, with the `A7 A7` trailer."""
    try:
        body = orjson.dumps(dict(obj))
    except TypeError as err:  # orjson.JSONEncodeError is a TypeError
        raise BindFrameError(f"bind message is not JSON-serialisable: {err}") from err
    total = len(body) + _OVERHEAD
    if total > MAX_FRAME_SIZE:
        raise BindFrameError(f"bind frame of {total} bytes exceeds {MAX_FRAME_SIZE}")
    return FRAME_HEAD + _LENGTH.pack(total) + body + FRAME_TAIL


class FrameDecoder:
    """Incremental frame reader for one TCP stream: feed bytes, get the JSON objects out.

    Bytes before a frame head are skipped (and counted in `discarded`). A frame whose declared
    length exceeds the cap, or whose body is not a JSON object, raises BindFrameError; the bad
    frame is dropped first, so the decoder can go on with the bytes after it.
    """

    def __init__(self, max_frame: int = MAX_FRAME_SIZE) -> None:
        """A decoder accepting frames up to `max_frame` bytes."""
        if not _MIN_FRAME <= max_frame <= 0xFFFF:
            raise ValueError(f"max_frame must be {_MIN_FRAME}..65535, not {max_frame}")
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._discarded = 0
        self._pending_error: BindFrameError | None = None

    @property
    def discarded(self) -> int:
        """How many bytes were skipped because they were not part of any frame."""
        return self._discarded

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return every complete message, in order."""
        self._buffer += data
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        messages: list[dict[str, Any]] = []
        while True:
            try:
                message = self._next()
            except BindFrameError as err:
                if not messages:
                    raise
                # Deliver what came before the bad frame; report the bad frame next time.
                self._pending_error = err
                return messages
            if message is None:
                return messages
            messages.append(message)

    def _next(self) -> dict[str, Any] | None:
        buffer = self._buffer
        while True:
            start = buffer.find(FRAME_HEAD)
            if start < 0:
                # Keep a trailing A5: it may be the first half of the next head.
                keep = 1 if buffer.endswith(FRAME_HEAD[:1]) else 0
                self._skip(len(buffer) - keep)
                return None
            self._skip(start)
            if len(buffer) < len(FRAME_HEAD) + _LENGTH.size:
                return None
            (total,) = _LENGTH.unpack_from(buffer, len(FRAME_HEAD))
            if total < _MIN_FRAME:
                self._skip(1)  # not a head after all: resynchronise on the next A5 A5
                continue
            if total > self._max_frame:
                self._skip(len(FRAME_HEAD))
                raise BindFrameError(f"bind frame declares {total} bytes, over {self._max_frame}")
            if len(buffer) < total:
                return None
            body = bytes(buffer[len(FRAME_HEAD) + _LENGTH.size : total - len(FRAME_TAIL)])
            del buffer[:total]
            return _decode_body(body)

    def _skip(self, count: int) -> None:
        if count:
            del self._buffer[:count]
            self._discarded += count


def _decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BindFrameError(f"bind frame body is not JSON: {err}") from err
    if not isinstance(message, dict):
        raise BindFrameError(f"bind frame body is a {type(message).__name__}, not an object")
    return message


def detect_request(seq: str) -> bytes:
    """The frame a slicer sends to ask a printer who it is."""
    return encode_frame({"login": {"command": "detect", "sequence_id": seq}})


def login_failure(seq: int, reason: str) -> bytes:
    """A `login_report` refusing a login; firmware puts a JSON text with `devmsg` in `reason`."""
    return encode_frame(
        {
            "login": {
                "sequence_id": seq,
                "command": "login_report",
                "status": "FAILURE",
                "reason": reason,
            }
        }
    )


@dataclass(frozen=True, slots=True)
class DetectReply:
    """A printer's answer to `detect`: its identity as the slicer's add-by-IP dialog sees it."""

    serial: str
    model_code: str
    name: str
    version: str
    bind: BindState
    connect: ConnectType
    dev_cap: int
    sequence_id: int  # chosen by the printer (3021 observed), not an echo of the request

    def to_frame(self) -> bytes:
        """The reply frame, keys in the order captured from firmware."""
        return encode_frame(
            {
                "login": {
                    "bind": str(self.bind),
                    "command": "detect",
                    "connect": str(self.connect),
                    "dev_cap": self.dev_cap,
                    "id": self.serial,
                    "model": self.model_code,
                    "name": self.name,
                    "sequence_id": self.sequence_id,
                    "version": self.version,
                }
            }
        )

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> "DetectReply":
        """Read a decoded detect reply; a refusal or anything else raises BindFrameError."""
        login = message.get("login")
        if not isinstance(login, Mapping):
            raise BindFrameError(f"bind message has no login object: keys {sorted(message)[:8]}")
        command = login.get("command")
        if command == "login_report":
            reason = login.get("reason", "")
            raise BindFrameError(f"printer refused detect ({login.get('status')}): {reason}")
        if command != "detect":
            raise BindFrameError(f"bind message is {command!r}, not a detect reply")
        try:
            bind = BindState(_text(login, "bind").lower())
            connect = ConnectType(_text(login, "connect").lower())
        except ValueError as err:
            raise BindFrameError(f"detect reply has an unknown bind/connect value: {err}") from err
        serial = _text(login, "id")
        model_code = _text(login, "model")
        if not serial or not model_code:
            raise BindFrameError("detect reply lacks the printer's id or model")
        return cls(
            serial=serial,
            model_code=model_code,
            name=_text(login, "name"),
            version=_text(login, "version"),
            bind=bind,
            connect=connect,
            dev_cap=_integer(login, "dev_cap"),
            sequence_id=_integer(login, "sequence_id"),
        )


def _text(login: Mapping[str, Any], key: str) -> str:
    value = login.get(key, "")
    if not isinstance(value, str):
        raise BindFrameError(f"detect reply field {key!r} is {value!r}, not a string")
    return value


def _integer(login: Mapping[str, Any], key: str) -> int:
    value = login.get(key, 0)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)  # tolerate a quoted number; firmware sends a bare one
    if isinstance(value, bool) or not isinstance(value, int):
        raise BindFrameError(f"detect reply field {key!r} is {value!r}, not an integer")
    return value
