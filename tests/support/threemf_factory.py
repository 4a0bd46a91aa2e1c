"""3MF fixtures for tests: the realistic builder (from the simulator) and hostile archives.

`build_gcode_3mf` and its specs live in `bambufarm.simulator.sample_files` (the demo uses them
too) and are re-exported here. `build_hostile_3mf(kind)` starts from that archive and makes it
hostile in one way each; see `HOSTILE_KINDS`. Hostile archives are written by a small raw ZIP
writer here, because `zipfile` refuses (rightly) to write most of them.
"""

import bz2
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bambufarm.simulator.sample_files import (
    APPLICATION,
    CLIENT_VERSION,
    FilamentSpec,
    PlateSpec,
    build_gcode_3mf,
    plate_gcode,
    tiny_png,
)

__all__ = [
    "APPLICATION",
    "CLIENT_VERSION",
    "HOSTILE_KINDS",
    "FilamentSpec",
    "PlateSpec",
    "RawEntry",
    "build_gcode_3mf",
    "build_hostile_3mf",
    "build_raw_zip",
    "plate_gcode",
    "tiny_png",
]


# --- hostile archives -------------------------------------------------------------------


@dataclass(frozen=True)
class RawEntry:
    """One entry for the raw writer; every header field can lie."""

    name: bytes
    data: bytes  # the uncompressed content
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    mode: int = 0o100644
    declared_size: int | None = None  # default: len(data)
    crc: int | None = None  # default: CRC of data
    payload: bytes | None = None  # default: data, deflated when method is 8
    local_name: bytes | None = None  # default: name


def build_raw_zip(entries: Sequence[RawEntry]) -> bytes:
    """A ZIP written field by field, so that tests can make every header lie."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        payload = entry.payload if entry.payload is not None else _compress(entry)
        size = len(entry.data) if entry.declared_size is None else entry.declared_size
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        offset = len(out)
        out += _local_header(entry, crc, len(payload), size) + payload
        central += _central_record(entry, crc, len(payload), size, offset)
    return bytes(out + central + _end_record(len(entries), len(central), len(out)))


def _compress(entry: RawEntry) -> bytes:
    if entry.method != zipfile.ZIP_DEFLATED:
        return entry.data
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(entry.data) + deflater.flush()


def _local_header(entry: RawEntry, crc: int, csize: int, size: int) -> bytes:
    name = entry.name if entry.local_name is None else entry.local_name
    fixed = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, entry.flags, entry.method, 0, 0x5821,
                        crc, csize, size, len(name), 0)  # fmt: skip
    return fixed + name


def _central_record(entry: RawEntry, crc: int, csize: int, size: int, offset: int) -> bytes:
    fixed = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, entry.flags,
                        entry.method, 0, 0x5821, crc, csize, size, len(entry.name), 0, 0, 0, 0,
                        entry.mode << 16, offset)  # fmt: skip
    return fixed + entry.name


def _end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def _valid_entries() -> list[RawEntry]:
    with zipfile.ZipFile(io.BytesIO(build_gcode_3mf())) as archive:
        return [RawEntry(i.filename.encode(), archive.read(i)) for i in archive.infolist()]


def _swap(entries: list[RawEntry], name: str, **changes: object) -> list[RawEntry]:
    return [replace(e, **changes) if e.name == name.encode() else e for e in entries]  # type: ignore[arg-type]


_SLICE_INFO = "Metadata/slice_info.config"
_GCODE = "Metadata/plate_1.gcode"
_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE config [\n <!ENTITY a "ha">\n'
    + "".join(f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9))
    + ']>\n<config><header><header_item key="X" value="&j;"/></header></config>\n'
).encode()
_XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE config [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<config><header><header_item key="X" value="&xxe;"/></header></config>\n'
)

HOSTILE_KINDS: tuple[str, ...] = (
    "absolute_path",
    "dotdot",
    "backslash",
    "drive_letter",
    "nul_name",
    "control_char",
    "long_name",
    "duplicate",
    "duplicate_case",
    "symlink",
    "special_file",
    "encrypted",
    "unsupported_compression",
    "too_many_entries",
    "declared_total_size",
    "metadata_too_large",
    "ratio_bomb",
    "gcode_ratio_bomb",
    "size_lie",
    "gcode_size_lie",
    "local_name_mismatch",
    "overlap",
    "billion_laughs",
    "external_entity",
)


def build_hostile_3mf(kind: str) -> bytes:
    """A sliced 3MF made hostile one way (`kind` from HOSTILE_KINDS)."""
    base = _valid_entries()
    extra = {
        "absolute_path": b"/etc/cron.d/bambufarm",
        "dotdot": b"Metadata/../../evil.sh",
        "backslash": b"Metadata\\..\\evil.bat",
        "drive_letter": b"C:/Windows/System32/evil.dll",
        "nul_name": b"Metadata/plate_2.png\x00.exe",
        "control_char": b"Metadata/evil\x1b[2J.txt",
        "long_name": b"Metadata/" + b"a" * 2000,
        "duplicate": _SLICE_INFO.encode(),
        "duplicate_case": b"metadata/SLICE_INFO.config",
    }
    if kind in extra:
        return build_raw_zip([*base, RawEntry(extra[kind], b"* * * * * root sh\n")])
    if kind == "symlink":
        link = RawEntry(b"Metadata/plate_2.png", b"/etc/passwd", mode=0o120777)
        return build_raw_zip([*base, link])
    if kind == "special_file":
        return build_raw_zip([*base, RawEntry(b"Metadata/fifo", b"", mode=0o010644)])
    if kind == "encrypted":
        return build_raw_zip(_swap(base, _SLICE_INFO, flags=0x1))
    if kind == "unsupported_compression":
        data = next(e.data for e in base if e.name == _SLICE_INFO.encode())
        return build_raw_zip(_swap(base, _SLICE_INFO, method=12, payload=bz2.compress(data)))
    if kind == "too_many_entries":
        filler = [RawEntry(f"Metadata/x/{i}".encode(), b"", method=0) for i in range(10_001)]
        return build_raw_zip([*base, *filler])
    if kind == "declared_total_size":
        bomb = RawEntry(b"Auxiliaries/bomb.bin", b"", declared_size=3 * 1024**3)
        return build_raw_zip([*base, bomb])
    if kind == "metadata_too_large":
        return build_raw_zip(_swap(base, _SLICE_INFO, declared_size=40 * 1024**2, crc=0))
    if kind == "ratio_bomb":
        padded = b"<config>" + b" " * (4 * 1024**2) + b"</config>"
        return build_raw_zip(_swap(base, _SLICE_INFO, data=padded))
    if kind == "gcode_ratio_bomb":
        gcode = b"; HEADER_BLOCK_START\n; HEADER_BLOCK_END\n" + b"G1 X0 Y0\n" * 1_000_000
        return build_raw_zip(_swap(base, _GCODE, data=gcode))
    if kind == "size_lie":
        return build_raw_zip(_swap(base, _SLICE_INFO, declared_size=100))
    if kind == "gcode_size_lie":
        return build_raw_zip(_swap(base, _GCODE, declared_size=200))
    if kind == "local_name_mismatch":
        return build_raw_zip(_swap(base, _SLICE_INFO, local_name=b"../../../../tmp/evil.cfg"))
    if kind == "overlap":
        return _overlapping(base)
    if kind == "billion_laughs":
        return build_raw_zip(_swap(base, _SLICE_INFO, data=_LAUGHS))
    if kind == "external_entity":
        return build_raw_zip(_swap(base, _SLICE_INFO, data=_XXE))
    raise ValueError(f"unknown hostile kind {kind!r}; known: {', '.join(HOSTILE_KINDS)}")


def _overlapping(base: list[RawEntry]) -> bytes:
    """Two central-directory entries whose data share bytes (the overlapping-file bomb)."""
    inner = RawEntry(b"Auxiliaries/inner.bin", b"x" * 1000, method=zipfile.ZIP_STORED)
    inner_bytes = _local_header(inner, zlib.crc32(inner.data), 1000, 1000) + inner.data
    outer = RawEntry(b"Auxiliaries/outer.bin", inner_bytes, method=zipfile.ZIP_STORED)
    archive = bytearray()
    central = bytearray()
    for entry in [*base, outer]:
        payload = _compress(entry)
        crc = zlib.crc32(entry.data)
        offset = len(archive)
        archive += _local_header(entry, crc, len(payload), len(entry.data)) + payload
        central += _central_record(entry, crc, len(payload), len(entry.data), offset)
    inner_offset = offset + 30 + len(outer.name)
    central += _central_record(inner, zlib.crc32(inner.data), 1000, 1000, inner_offset)
    return bytes(archive + central + _end_record(len(base) + 2, len(central), len(archive)))
