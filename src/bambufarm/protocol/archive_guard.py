"""Read-only access to ZIP archives from strangers: check every entry, extract nothing.

A 3MF is a ZIP that arrives from slicers, API uploads and the virtual printer's FTPS server,
so it is hostile until proven otherwise (design.md §7). This module parses the ZIP structure
itself rather than through `zipfile`, so that every limit is enforced *before* the work it
guards is done: the entry count before the directory is walked, declared sizes before a byte
is inflated, and the real inflated size while it streams (a lying size header stops one byte
past its claim). Nothing is ever written to disk; entries are read into memory up to a cap.

Only what Bambu slicers write is accepted: stored or deflated entries, no encryption, no
spanned archives, no links. Anything else is refused with `UnsafeArchiveError` (hostile or
oversized) or `ThreeMFError` (corrupt, truncated, not a ZIP), each naming the entry and limit.
"""

import io
import os
import re
import stat
import struct
import zlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import BinaryIO, Self

from bambufarm.protocol.errors import ThreeMFError, UnsafeArchiveError

STORED = 0
DEFLATED = 8
_METHODS = MappingProxyType({STORED: "stored", DEFLATED: "deflate"})

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record, 22 bytes
_EOCD_SIG = 0x06054B50
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
_FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800
# Room allowed per central-directory record beyond its name, for extra fields and comments;
# Bambu's records carry none, zipfile's at most 28 bytes of ZIP64 extra.
_RECORD_SLACK = 1024

# Compressed bytes read per step. 16 KiB of G-code inflates to ~80 KiB, so a header read
# (the Bambu header block is ~300 bytes) costs one read and one inflate call.
_CHUNK = 16 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Caps applied to an archive before and while it is read."""

    max_entries: int = 10_000
    # Sum of declared uncompressed sizes: a 2 GiB sliced file is far past any real print
    # (a 20-hour multi-colour print is ~150 MB of G-code).
    max_total_size: int = 2 * 1024**3
    # XML/JSON that is parsed in memory; project_settings.config is ~100 KB in practice.
    max_metadata_size: int = 32 * 1024**2
    # Real G-code deflates 5-10:1, settings JSON ~8:1; 200:1 is only reached by padding.
    max_ratio: float = 200.0
    # Entries smaller than this are exempt from the ratio check: a 1 KiB run of spaces
    # deflates to ~10 bytes (100:1) yet cannot hurt anyone.
    ratio_floor: int = 64 * 1024
    max_name_length: int = 1024


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One entry of the central directory, after its checks passed."""

    name: str
    size: int  # declared uncompressed size
    compressed_size: int
    crc: int
    method: int
    offset: int  # of the local header
    raw_name: bytes
    data_offset: int = 0  # where the compressed data starts, after the local header


def check_entry_name(name: str, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """Raise UnsafeArchiveError unless `name` is a plain relative path inside the archive."""
    shown = repr(name[:80] + "…" if len(name) > 80 else name)
    if not name:
        raise UnsafeArchiveError("entry with an empty name")
    if len(name) > limits.max_name_length:
        raise UnsafeArchiveError(
            f"entry name {shown} is {len(name)} characters, over the limit of "
            f"{limits.max_name_length}"
        )
    if "\0" in name:
        raise UnsafeArchiveError(f"entry name {shown} contains a NUL byte")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UnsafeArchiveError(f"entry name {shown} contains control characters")
    if "\\" in name:
        raise UnsafeArchiveError(f"entry name {shown} contains a backslash")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"entry name {shown} is an absolute path")
    if _DRIVE.match(name):
        raise UnsafeArchiveError(f"entry name {shown} starts with a drive letter")
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"entry name {shown} contains a '..' component")
    if any(part in ("", ".") for part in parts):
        raise UnsafeArchiveError(f"entry name {shown} has an empty or '.' path component")


class SafeArchive:
    """An opened, checked archive whose entries can be read into memory up to a cap."""

    def __init__(
        self,
        source: "_Source",
        entries: Mapping[str, ArchiveEntry],
        limits: ArchiveLimits,
        closer: ExitStack,
    ) -> None:
        """Wrap an already checked archive; use `open_archive` to make one."""
        self._source = source
        self._entries = entries
        self._limits = limits
        self._closer = closer

    @property
    def entries(self) -> Mapping[str, ArchiveEntry]:
        """Every entry by name, in central-directory order."""
        return self._entries

    @property
    def limits(self) -> ArchiveLimits:
        """The limits this archive was opened with."""
        return self._limits

    def __contains__(self, name: object) -> bool:
        """True if the archive holds an entry of that exact name."""
        return name in self._entries

    def entry(self, name: str) -> ArchiveEntry:
        """The entry called `name`, or ThreeMFError saying it is missing."""
        check_entry_name(name, self._limits)
        try:
            return self._entries[name]
        except KeyError:
            raise ThreeMFError(f"the archive has no entry {name!r}") from None

    def read(self, name: str, *, max_bytes: int) -> bytes:
        """The whole entry, refused if it declares more than `max_bytes`; CRC verified."""
        entry = self.entry(name)
        if entry.size > max_bytes:
            raise UnsafeArchiveError(
                f"entry {name!r} declares {entry.size} bytes, over the limit of {max_bytes}"
            )
        return self._inflate(entry, entry.size, stop=None)

    def read_head(self, name: str, *, max_bytes: int, stop: bytes | None = None) -> bytes:
        """At most the first `max_bytes` of the entry, ending early once `stop` has been seen."""
        entry = self.entry(name)
        return self._inflate(entry, min(max_bytes, entry.size), stop=stop)

    def close(self) -> None:
        """Close the file if this archive opened it."""
        self._closer.close()

    def __enter__(self) -> Self:
        """Use as a context manager that closes the archive."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the archive."""
        self.close()

    def _inflate(self, entry: ArchiveEntry, want: int, stop: bytes | None) -> bytes:
        """Inflate up to `want` bytes; a whole entry is checked for size, CRC and excess."""
        self._check_ratio(entry)
        out = bytearray()
        for chunk in self._chunks(entry):
            searched_from = max(0, len(out) - len(stop) + 1) if stop else 0
            out += chunk
            if want < entry.size and len(out) >= want:
                return bytes(out[:want])
            if stop is not None and out.find(stop, searched_from) >= 0:
                return bytes(out[:want])
        # Only reached once the stream ended, so data past the declared size has been refused.
        if len(out) != entry.size:
            raise ThreeMFError(
                f"entry {entry.name!r} holds {len(out)} bytes but declares {entry.size} (corrupt)"
            )
        if zlib.crc32(out) != entry.crc:
            raise ThreeMFError(f"entry {entry.name!r} fails its CRC check (corrupt archive)")
        return bytes(out)

    def _check_ratio(self, entry: ArchiveEntry) -> None:
        limit = self._limits.max_ratio
        if entry.size >= self._limits.ratio_floor and entry.size > limit * entry.compressed_size:
            ratio = entry.size / max(entry.compressed_size, 1)
            raise UnsafeArchiveError(
                f"entry {entry.name!r} inflates {ratio:.0f}:1 ({entry.compressed_size} to "
                f"{entry.size} bytes), over the limit of {limit:.0f}:1 (zip bomb?)"
            )

    def _chunks(self, entry: ArchiveEntry) -> Iterator[bytes]:
        """Yield the entry's data, never more than its declared size (UnsafeArchiveError)."""
        left = entry.compressed_size
        position = entry.data_offset
        inflater = zlib.decompressobj(-zlib.MAX_WBITS) if entry.method == DEFLATED else None
        produced = 0
        while True:
            if inflater is not None and inflater.unconsumed_tail:
                raw = inflater.unconsumed_tail
            elif left > 0:
                raw = self._source.read_at(position, min(_CHUNK, left), entry.name)
                position += len(raw)
                left -= len(raw)
            else:
                raw = b""
            if inflater is None:
                data = raw
            else:
                # One byte more than the declared size is allowed out, to catch a lie.
                room = min(entry.size - produced + 1, 4 * _CHUNK)
                try:
                    data = inflater.decompress(raw, room)
                except zlib.error as err:
                    raise ThreeMFError(
                        f"entry {entry.name!r} has corrupt compressed data ({err})"
                    ) from None
            produced += len(data)
            if produced > entry.size:
                raise UnsafeArchiveError(
                    f"entry {entry.name!r} inflates past its declared size of {entry.size} bytes"
                )
            if data:
                yield data
            elif not raw:
                break
            if inflater is not None and inflater.eof:
                break
        if inflater is not None and not inflater.eof:
            raise ThreeMFError(f"entry {entry.name!r} has truncated compressed data")


def open_archive(
    source: bytes | str | os.PathLike[str] | BinaryIO, limits: ArchiveLimits = DEFAULT_LIMITS
) -> SafeArchive:
    """Open and check an archive from bytes, a path or a seekable binary stream."""
    closer = ExitStack()
    try:
        source_ = _Source.open(source, closer)
        entries = _read_directory(source_, limits)
        return SafeArchive(source_, entries, limits, closer)
    except BaseException:
        closer.close()
        raise


def read_entry(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    name: str,
    *,
    max_bytes: int,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> bytes:
    """One entry (e.g. a plate thumbnail) from a checked archive, capped at `max_bytes`."""
    check_entry_name(name, limits)
    with open_archive(source, limits) as archive:
        return archive.read(name, max_bytes=max_bytes)


class _Source:
    """The archive's bytes, read at absolute offsets; short reads mean truncation."""

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self.fp = fp
        self.size = size

    @classmethod
    def open(
        cls, source: bytes | str | os.PathLike[str] | BinaryIO, closer: ExitStack
    ) -> "_Source":
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


def _read_directory(source: _Source, limits: ArchiveLimits) -> Mapping[str, ArchiveEntry]:
    eocd_at, count, cd_size, cd_offset = _find_end_record(source)
    if count > limits.max_entries:
        raise UnsafeArchiveError(
            f"archive declares {count} entries, over the limit of {limits.max_entries}"
        )
    if cd_size > limits.max_entries * (_CENTRAL.size + limits.max_name_length + _RECORD_SLACK):
        raise UnsafeArchiveError(
            f"central directory is {cd_size} bytes, too large for {limits.max_entries} entries"
        )
    if cd_offset + cd_size > eocd_at:
        raise ThreeMFError("not a ZIP archive: its central directory lies past its end record")
    directory = source.read_at(cd_offset, cd_size, "central directory")
    entries: dict[str, ArchiveEntry] = {}
    folded: dict[str, str] = {}
    total = 0
    pos = 0
    while pos < cd_size:
        if len(entries) >= count:
            raise ThreeMFError(f"central directory holds more than the {count} entries declared")
        entry, pos = _parse_record(directory, pos, limits)
        key = entry.name.casefold()
        if key in folded:
            if folded[key] == entry.name:
                raise UnsafeArchiveError(f"duplicate entry name {entry.name!r}")
            raise UnsafeArchiveError(
                f"duplicate entry names {folded[key]!r} and {entry.name!r} (differ only in case)"
            )
        folded[key] = entry.name
        total += entry.size
        if total > limits.max_total_size:
            raise UnsafeArchiveError(
                f"entry {entry.name!r} brings the declared uncompressed size to {total} bytes,"
                f" over the limit of {limits.max_total_size}"
            )
        entries[entry.name] = entry
    if len(entries) != count:
        raise ThreeMFError(
            f"central directory holds {len(entries)} entries but its end record declares {count}"
        )
    located = {name: _locate(source, entry) for name, entry in entries.items()}
    _check_layout(list(located.values()), cd_offset)
    return MappingProxyType(located)


def _find_end_record(source: _Source) -> tuple[int, int, int, int]:
    """Locate the end record; return (its offset, entry count, directory size, offset)."""
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
        return _find_zip64_record(source, eocd_at)
    return eocd_at, count, cd_size, cd_offset


def _find_zip64_record(source: _Source, eocd_at: int) -> tuple[int, int, int, int]:
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
    return record_at, count, cd_size, cd_offset


def _parse_record(directory: bytes, pos: int, limits: ArchiveLimits) -> tuple[ArchiveEntry, int]:
    """Parse and check one central-directory record starting at `pos`."""
    if pos + _CENTRAL.size > len(directory):
        raise ThreeMFError("central directory is truncated (corrupt archive)")
    (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
     _, _, external, offset) = _CENTRAL.unpack_from(directory, pos)  # fmt: skip
    end = pos + _CENTRAL.size + name_len + extra_len + comment_len
    if sig != _CENTRAL_SIG or end > len(directory):
        raise ThreeMFError("central directory is malformed (corrupt archive)")
    raw_name = directory[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
    extra = directory[pos + _CENTRAL.size + name_len : pos + _CENTRAL.size + name_len + extra_len]
    if b"\0" in raw_name:
        raise UnsafeArchiveError(f"entry name {raw_name[:80]!r} contains a NUL byte")
    try:
        name = raw_name.decode("utf-8") if flags & _FLAG_UTF8 else raw_name.decode("cp437")
    except UnicodeDecodeError:
        raise ThreeMFError(f"entry name {raw_name[:80]!r} is not valid UTF-8") from None
    check_entry_name(name, limits)
    if 0xFFFFFFFF in (csize, usize, offset):
        usize, csize, offset = _zip64_sizes(name, extra, usize, csize, offset)
    if flags & _FLAG_ENCRYPTED:
        raise UnsafeArchiveError(f"entry {name!r} is encrypted")
    if method not in _METHODS:
        raise UnsafeArchiveError(
            f"entry {name!r} uses unsupported compression method {method}"
            " (only stored and deflate are accepted)"
        )
    mode = external >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"entry {name!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"entry {name!r} is a special file (mode {mode:o})")
    if method == STORED and csize != usize:
        raise ThreeMFError(f"stored entry {name!r} has different sizes (corrupt archive)")
    entry = ArchiveEntry(name, usize, csize, crc, method, offset, raw_name)
    return entry, end


def _zip64_sizes(
    name: str, extra: bytes, usize: int, csize: int, offset: int
) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF placeholders from the ZIP64 extra field, in the order the spec sets."""
    pos = 0
    while pos + 4 <= len(extra):
        field_id, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if field_id != _ZIP64_EXTRA_ID:
            continue
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


def _locate(source: _Source, entry: ArchiveEntry) -> ArchiveEntry:
    """Check the entry's local header against the central directory; find its data."""
    header = source.read_at(entry.offset, _LOCAL.size, entry.name)
    sig, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack(header)
    if sig != _LOCAL_SIG:
        raise ThreeMFError(f"entry {entry.name!r} has no local header where expected (corrupt)")
    name = source.read_at(entry.offset + _LOCAL.size, name_len, entry.name)
    if name != entry.raw_name:
        raise UnsafeArchiveError(
            f"entry {entry.name!r} is called {name[:80]!r} in its local header"
            " (a trick to show different files to different tools)"
        )
    if flags & _FLAG_ENCRYPTED:
        raise UnsafeArchiveError(f"entry {entry.name!r} is encrypted (local header)")
    if method != entry.method:
        raise ThreeMFError(
            f"entry {entry.name!r}: local header names compression method {method},"
            f" the central directory {entry.method} (corrupt archive)"
        )
    start: int = entry.offset + _LOCAL.size + name_len + extra_len
    if start + entry.compressed_size > source.size:
        raise ThreeMFError(f"archive is truncated inside entry {entry.name!r}")
    return replace(entry, data_offset=start)


def _check_layout(entries: Collection[ArchiveEntry], cd_offset: int) -> None:
    """Refuse entries whose data overlap: the trick behind non-recursive zip bombs."""
    ordered = sorted(entries, key=lambda e: e.offset)
    for here, after in zip(ordered, [*ordered[1:], None], strict=False):
        end = here.data_offset + here.compressed_size
        limit = after.offset if after is not None else cd_offset
        if end > limit:
            other = repr(after.name) if after is not None else "the central directory"
            raise UnsafeArchiveError(f"entry {here.name!r} overlaps {other} (zip bomb?)")
