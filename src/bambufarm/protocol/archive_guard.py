"""Read-only access to ZIP archives from strangers: check every entry, extract nothing.

A 3MF is a ZIP that arrives from slicers, API uploads and the virtual printer's FTPS server,
so it is hostile until proven otherwise (design.md §7). This module reads the ZIP structure
itself (its records through `zip_records`) rather than through `zipfile`, so that every limit
is enforced *before* the work it guards is done: the entry count before the directory is
walked, declared sizes before a byte is inflated, and the real inflated size while it streams
(a lying size header stops one byte past its claim). Nothing is ever written to disk; entries
are read into memory up to a cap.

Only what Bambu slicers write is accepted: stored or deflated entries, no encryption, no
spanned archives, no links. Anything else is refused with `UnsafeArchiveError` (hostile or
oversized) or `ThreeMFError` (corrupt, truncated, not a ZIP), each naming the entry and limit.
"""

import os
import re
import stat
import zlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import BinaryIO, Self

from bambufarm.protocol.errors import ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.zip_records import (
    CENTRAL_RECORD_SIZE,
    DEFLATED,
    FLAG_ENCRYPTED,
    STORED,
    ArchiveSource,
    decode_name,
    parse_central_record,
    read_end_record,
    read_local_header,
    zip64_sizes,
)

_METHODS = MappingProxyType({STORED: "stored", DEFLATED: "deflate"})

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
        source: ArchiveSource,
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
        source_ = ArchiveSource.open(source, closer)
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


def _read_directory(source: ArchiveSource, limits: ArchiveLimits) -> Mapping[str, ArchiveEntry]:
    end_record = read_end_record(source)
    count = end_record.count
    cd_size = end_record.directory_size
    cd_offset = end_record.directory_offset
    if count > limits.max_entries:
        raise UnsafeArchiveError(
            f"archive declares {count} entries, over the limit of {limits.max_entries}"
        )
    per_record = CENTRAL_RECORD_SIZE + limits.max_name_length + _RECORD_SLACK
    if cd_size > limits.max_entries * per_record:
        raise UnsafeArchiveError(
            f"central directory is {cd_size} bytes, too large for {limits.max_entries} entries"
        )
    if cd_offset + cd_size > end_record.offset:
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


def _parse_record(directory: bytes, pos: int, limits: ArchiveLimits) -> tuple[ArchiveEntry, int]:
    """Parse and check one central-directory record starting at `pos`."""
    record = parse_central_record(directory, pos)
    raw_name = record.raw_name
    if b"\0" in raw_name:
        raise UnsafeArchiveError(f"entry name {raw_name[:80]!r} contains a NUL byte")
    name = decode_name(record)
    check_entry_name(name, limits)
    usize, csize, offset = zip64_sizes(name, record)
    method = record.method
    if record.flags & FLAG_ENCRYPTED:
        raise UnsafeArchiveError(f"entry {name!r} is encrypted")
    if method not in _METHODS:
        raise UnsafeArchiveError(
            f"entry {name!r} uses unsupported compression method {method}"
            " (only stored and deflate are accepted)"
        )
    mode = record.external_attributes >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"entry {name!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"entry {name!r} is a special file (mode {mode:o})")
    if method == STORED and csize != usize:
        raise ThreeMFError(f"stored entry {name!r} has different sizes (corrupt archive)")
    entry = ArchiveEntry(name, usize, csize, record.crc, method, offset, raw_name)
    return entry, record.end


def _locate(source: ArchiveSource, entry: ArchiveEntry) -> ArchiveEntry:
    """Check the entry's local header against the central directory; find its data."""
    header = read_local_header(source, entry.offset, entry.name)
    if header.raw_name != entry.raw_name:
        raise UnsafeArchiveError(
            f"entry {entry.name!r} is called {header.raw_name[:80]!r} in its local header"
            " (a trick to show different files to different tools)"
        )
    if header.flags & FLAG_ENCRYPTED:
        raise UnsafeArchiveError(f"entry {entry.name!r} is encrypted (local header)")
    if header.method != entry.method:
        raise ThreeMFError(
            f"entry {entry.name!r}: local header names compression method {header.method},"
            f" the central directory {entry.method} (corrupt archive)"
        )
    if header.data_offset + entry.compressed_size > source.size:
        raise ThreeMFError(f"archive is truncated inside entry {entry.name!r}")
    return replace(entry, data_offset=header.data_offset)


def _check_layout(entries: Collection[ArchiveEntry], cd_offset: int) -> None:
    """Refuse entries whose data overlap: the trick behind non-recursive zip bombs."""
    ordered = sorted(entries, key=lambda e: e.offset)
    for here, after in zip(ordered, [*ordered[1:], None], strict=False):
        end = here.data_offset + here.compressed_size
        limit = after.offset if after is not None else cd_offset
        if end > limit:
            other = repr(after.name) if after is not None else "the central directory"
            raise UnsafeArchiveError(f"entry {here.name!r} overlaps {other} (zip bomb?)")
