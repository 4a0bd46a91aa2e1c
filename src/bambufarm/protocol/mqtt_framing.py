"""MQTT 3.1.1 framing: the remaining-length field, and cutting a byte stream into packets.

Every packet is one byte of type and flags, a remaining length of one to four bytes (spec
2.2.3), then that many bytes of body. This module knows only that much. What a body means is
`mqtt_packets`' business: it hands its decoder to `FrameReader`, so framing never imports the
packet types and `mqtt_packets.PacketReader` is a `FrameReader` of packets.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

from bambufarm.protocol.errors import MqttPacketError

# Four 7-bit groups of remaining length (spec 2.2.3): 268,435,455 bytes at most.
MAX_REMAINING_LENGTH = 0x0FFFFFFF

T = TypeVar("T")


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


def frame(first_byte: int, body: bytes) -> bytes:
    """One whole packet: its first byte, the remaining length of `body`, then `body`."""
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


class FrameReader(Generic[T]):
    """Incremental framing: feed bytes as they arrive, get each whole packet decoded back.

    A packet whose declared size exceeds `max_packet_size` is refused as soon as its length
    is known, before its body is buffered. After an error the stream cannot be resynchronised,
    so every later `feed` raises too.
    """

    __slots__ = ("_buffer", "_decode", "_failed", "_needed", "max_packet_size")

    def __init__(self, max_packet_size: int, decode: Callable[[int, bytes], T]) -> None:
        """Frame packets of at most `max_packet_size` bytes, header included.

        `decode(first_byte, body)` turns one frame into a value or raises MqttPacketError.
        """
        self.max_packet_size = max_packet_size
        self._decode = decode
        self._buffer = bytearray()
        # Size of the incomplete packet at the head of the buffer once its header is known:
        # a large packet arriving in many TLS records is then not re-scanned per record.
        self._needed = 0
        self._failed: MqttPacketError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[T]:
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
        packets: list[T] = []
        start = 0
        try:
            while start < len(buf):
                frame_at = self._frame_at(buf, start)
                if frame_at is None:
                    self._needed = 0
                    break
                header_end, end = frame_at
                if end > len(buf):
                    self._needed = end - start
                    break
                packets.append(self._decode(buf[start], buf[header_end:end]))
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
