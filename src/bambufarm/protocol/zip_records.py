"""The ZIP format's records, read from an archive's bytes: end record, ZIP64, central, local.

Parsing only: each function says what a record declares, and refuses with `ThreeMFError` what
cannot be read at all (truncated, not a ZIP, corrupt). Whether what it declares is acceptable
(names, sizes, counts, methods, layout) is decided by `archive_guard`, which calls these in an
order that checks every limit before the work it guards.
"""

import io
import os
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO, Self

from bambufarm.protocol.errors import ThreeMFError

STORED = 0
DEFLATED = 8
FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record, 22 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes, just before the EOCD
_ZIP64_LOCATOR_SIG = 0x07064B50
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_EOCD_SIG = 0x06064B50
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes + name + extra + comment
_CENTRAL_SIG = 0x02014B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes + name + extra
_LOCAL_SIG = 0x04034B50
_ZIP64_EXTRA_ID = 0x0001
_MAX_COMMENT = 0xFFFF

CENTRAL_RECORD_SIZE = _CENTRAL.size  # before its name, extra field and comment


class ArchiveSource:
    """The archive's bytes, read at absolute offsets; short reads mean truncation."""

    def __init__(self, fp: BinaryIO, size: int) -> None:
        """Read from `fp`, whose last byte is at `size - 1`; use `open` to make one."""
        self.fp = fp
        self.size = size

    @classmethod
    def open(cls, source: bytes | str | os.PathLike[str] | BinaryIO, closer: ExitStack) -> Self:
        """Wrap bytes, open a path (closed by `closer`) or check a caller's stream."""
        fp: BinaryIO
        if isinstance(source, bytes | bytearray | memoryview):
            fp = io.BytesIO(source)
        elif isinstance(source, str | os.PathLike):
            try:
                fp = closer.enter_context(open(source, "rb"))  # noqa: SIM115 - closer owns it
            except OSError as err:
                raise ThreeMFError(f"cannot open {os.fspath(source)!r}: {err.strerror}") from err
        else:
            fp = source
        try:
            if not fp.seekable():
                raise ThreeMFError(
                    "the archive stream must be seekable (a ZIP's directory is at its end)"
                )
            size = fp.seek(0, io.SEEK_END)
        except (OSError, ValueError) as err:
            raise ThreeMFError(f"cannot read the archive: {err}") from err
        return cls(fp, size)

    def read_at(self, offset: int, length: int, what: str) -> bytes:
        """Exactly `length` bytes at `offset`, or ThreeMFError naming `what` was cut off."""
        try:
            self.fp.seek(offset)
            data = self.fp.read(length)
        except (OSError, ValueError) as err:
            raise ThreeMFError(f"cannot read the archive at {what!r}: {err}") from err
        if len(data) != length:
            raise ThreeMFError(f"archive is truncated at {what!r}")
        return data


@dataclass(frozen=True, slots=True)
class EndRecord:
    """Where the central directory is, as the end record (or its ZIP64 twin) declares."""

    offset: int  # of the end record itself (the ZIP64 one when there is one)
    count: int
    directory_size: int
    directory_offset: int


@dataclass(frozen=True, slots=True)
class CentralRecord:
    """One central-directory record as written, ZIP64 placeholders still in place."""

    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    raw_name: bytes
    extra: bytes
    external_attributes: int
    offset: int  # of the local header
    end: int  # where the next record starts in the directory


@dataclass(frozen=True, slots=True)
class LocalHeader:
    """An entry's local header: what it declares and where the entry's data starts."""

    flags: int
    method: int
    raw_name: bytes
    data_offset: int


def read_end_record(source: ArchiveSource) -> EndRecord:
    """Locate the end record, following it to the ZIP64 end record where it says so."""
    size = source.size
    if size < _EOCD.size:
        raise ThreeMFError(f"not a ZIP archive ({size} bytes; truncated upload?)")
    tail_len = min(size, _EOCD.size + _MAX_COMMENT)
    tail = source.read_at(size - tail_len, tail_len, "end record")
    at = tail.rfind(b"PK\x05\x06")
    # A comment may itself contain the signature: prefer a record whose comment ends the file.
    while at >= 0 and at + _EOCD.size <= len(tail):
        comment_len = _EOCD.unpack_from(tail, at)[7]
        if at + _EOCD.size + comment_len == len(tail):
            break
        earlier = tail.rfind(b"PK\x05\x06", 0, at)
        if earlier < 0:
            break
        at = earlier
    if at < 0 or at + _EOCD.size > len(tail):
        raise ThreeMFError("not a ZIP archive (no end record; truncated upload?)")
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    eocd_at = size - tail_len + at
    if disk or cd_disk:
        raise ThreeMFError("spanned (multi-disk) ZIP archives are not supported")
    if count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):
        return _read_zip64_end_record(source, eocd_at)
    return EndRecord(eocd_at, count, cd_size, cd_offset)


def _read_zip64_end_record(source: ArchiveSource, eocd_at: int) -> EndRecord:
    if eocd_at < _ZIP64_LOCATOR.size:
        raise ThreeMFError("ZIP64 archive without its locator record (corrupt archive)")
    locator = source.read_at(eocd_at - _ZIP64_LOCATOR.size, _ZIP64_LOCATOR.size, "ZIP64")
    sig, _, record_at, _ = _ZIP64_LOCATOR.unpack(locator)
    if sig != _ZIP64_LOCATOR_SIG or record_at + _ZIP64_EOCD.size > eocd_at:
        raise ThreeMFError("ZIP64 archive without a valid locator record (corrupt archive)")
    record = source.read_at(record_at, _ZIP64_EOCD.size, "ZIP64 end record")
    sig, _, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
    if sig != _ZIP64_EOCD_SIG:
        raise ThreeMFError("ZIP64 end record is missing (corrupt archive)")
    if disk or cd_disk:
        raise ThreeMFError("spanned (multi-disk) ZIP archives are not supported")
    return EndRecord(record_at, count, cd_size, cd_offset)


def parse_central_record(directory: bytes, pos: int) -> CentralRecord:
    """The central-directory record starting at `pos` of `directory`."""
    if pos + _CENTRAL.size > len(directory):
        raise ThreeMFError("central directory is truncated (corrupt archive)")
    (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
     _, _, external, offset) = _CENTRAL.unpack_from(directory, pos)  # fmt: skip
    end = pos + _CENTRAL.size + name_len + extra_len + comment_len
    if sig != _CENTRAL_SIG or end > len(directory):
        raise ThreeMFError("central directory is malformed (corrupt archive)")
    raw_name = directory[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
    extra = directory[pos + _CENTRAL.size + name_len : pos + _CENTRAL.size + name_len + extra_len]
    return CentralRecord(flags, method, crc, csize, usize, raw_name, extra, external, offset, end)


def decode_name(record: CentralRecord) -> str:
    """The record's entry name: UTF-8 when its flag says so, else the ZIP default CP437."""
    raw_name = record.raw_name
    try:
        return raw_name.decode("utf-8") if record.flags & _FLAG_UTF8 else raw_name.decode("cp437")
    except UnicodeDecodeError:
        raise ThreeMFError(f"entry name {raw_name[:80]!r} is not valid UTF-8") from None


def zip64_sizes(name: str, record: CentralRecord) -> tuple[int, int, int]:
    """(size, compressed size, offset), 0xFFFFFFFF placeholders read from the ZIP64 field."""
    usize, csize, offset = record.size, record.compressed_size, record.offset
    if 0xFFFFFFFF not in (csize, usize, offset):
        return usize, csize, offset
    extra = record.extra
    pos = 0
    while pos + 4 <= len(extra):
        field_id, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if field_id != _ZIP64_EXTRA_ID:
            continue
        # The spec's order: uncompressed size, compressed size, local header offset.
        values = [usize, csize, offset]
        cursor = 0
        for i, value in enumerate(values):
            if value == 0xFFFFFFFF:
                if cursor + 8 > len(body):
                    raise ThreeMFError(f"entry {name!r} has a short ZIP64 field (corrupt)")
                values[i] = struct.unpack_from("<Q", body, cursor)[0]
                cursor += 8
        return values[0], values[1], values[2]
    raise ThreeMFError(f"entry {name!r} needs a ZIP64 field it does not have (corrupt)")


def read_local_header(source: ArchiveSource, offset: int, name: str) -> LocalHeader:
    """The local header at `offset` of the entry called `name` (for messages)."""
    header = source.read_at(offset, _LOCAL.size, name)
    sig, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack(header)
    if sig != _LOCAL_SIG:
        raise ThreeMFError(f"entry {name!r} has no local header where expected (corrupt)")
    raw_name = source.read_at(offset + _LOCAL.size, name_len, name)
    data_offset: int = offset + _LOCAL.size + name_len + extra_len
    return LocalHeader(flags, method, raw_name, data_offset)
