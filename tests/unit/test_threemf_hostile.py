"""protocol.threemf / archive_guard against hostile, corrupt and random archives."""

import io
import posixpath
import random
import re
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bambufarm.protocol.archive_guard import (
    DEFAULT_LIMITS,
    check_entry_name,
    open_archive,
)
from bambufarm.protocol.errors import ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.threemf import parse_gcode_header, read_3mf, read_entry
from tests.support.threemf_factory import (
    HOSTILE_KINDS,
    PlateSpec,
    RawEntry,
    build_gcode_3mf,
    build_hostile_3mf,
    build_raw_zip,
)

# What each refusal must say, so that an operator knows what was wrong with the upload.
EXPECTED = {
    "absolute_path": "'/etc/cron.d/bambufarm' is an absolute path",
    "dotdot": "'Metadata/../../evil.sh' contains a '..' component",
    "backslash": "contains a backslash",
    "drive_letter": "starts with a drive letter",
    "nul_name": "contains a NUL byte",
    "control_char": "contains control characters",
    "long_name": "is 2009 characters, over the limit of 1024",
    "duplicate": "duplicate entry name 'Metadata/slice_info.config'",
    "duplicate_case": "differ only in case",
    "symlink": "'Metadata/plate_2.png' is a symbolic link",
    "special_file": "'Metadata/fifo' is a special file",
    "encrypted": "'Metadata/slice_info.config' is encrypted",
    "unsupported_compression": "unsupported compression method 12",
    "too_many_entries": "declares 10011 entries, over the limit of 10000",
    "declared_total_size": "'Auxiliaries/bomb.bin' brings the declared uncompressed size",
    "metadata_too_large": "declares 41943040 bytes, over the limit of 33554432",
    "ratio_bomb": "'Metadata/slice_info.config' inflates 1023:1",
    "gcode_ratio_bomb": "'Metadata/plate_1.gcode' inflates",
    "size_lie": "'Metadata/slice_info.config' inflates past its declared size of 100 bytes",
    "gcode_size_lie": "'Metadata/plate_1.gcode' inflates past its declared size of 200 bytes",
    "local_name_mismatch": "is called b'../../../../tmp/evil.cfg' in its local header",
    "overlap": "'Auxiliaries/outer.bin' overlaps 'Auxiliaries/inner.bin'",
    "billion_laughs": "declares a DTD or entities",
    "external_entity": "declares a DTD or entities",
}


def test_every_hostile_kind_has_an_expected_message() -> None:
    assert set(EXPECTED) == set(HOSTILE_KINDS)


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_archives_are_refused_naming_the_problem(kind: str) -> None:
    with pytest.raises(UnsafeArchiveError) as caught:
        read_3mf(build_hostile_3mf(kind))
    assert EXPECTED[kind] in str(caught.value)


@pytest.mark.parametrize(
    "kind",
    ["absolute_path", "dotdot", "symlink", "encrypted", "too_many_entries", "overlap",
     "declared_total_size", "local_name_mismatch", "unsupported_compression"],
)  # fmt: skip
def test_structural_attacks_are_refused_before_any_entry_is_read(kind: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=EXPECTED[kind].replace(".", r"\.")):
        read_entry(build_hostile_3mf(kind), "Metadata/plate_1.png", max_bytes=1 << 20)


def test_unknown_hostile_kind_is_a_factory_error() -> None:
    with pytest.raises(ValueError, match="unknown hostile kind 'nope'"):
        build_hostile_3mf("nope")


def test_hostile_archives_write_nothing_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    for kind in ("absolute_path", "dotdot", "symlink", "ratio_bomb", "size_lie"):
        with pytest.raises(UnsafeArchiveError):
            read_3mf(build_hostile_3mf(kind))
    assert list(tmp_path.iterdir()) == []


def test_lying_crc_with_honest_size_is_corruption_not_attack() -> None:
    data = build_gcode_3mf()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [RawEntry(i.filename.encode(), archive.read(i)) for i in archive.infolist()]
    lied = [
        RawEntry(e.name, e.data, crc=0) if e.name == b"Metadata/slice_info.config" else e
        for e in entries
    ]
    with pytest.raises(ThreeMFError, match="fails its CRC check") as caught:
        read_3mf(build_raw_zip(lied))
    assert not isinstance(caught.value, UnsafeArchiveError)


def test_short_entry_is_corruption() -> None:
    data = build_gcode_3mf()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [RawEntry(i.filename.encode(), archive.read(i)) for i in archive.infolist()]
    longer = [
        RawEntry(e.name, e.data, declared_size=len(e.data) + 10)
        if e.name == b"Metadata/slice_info.config"
        else e
        for e in entries
    ]
    with pytest.raises(ThreeMFError, match=r"holds \d+ bytes but declares"):
        read_3mf(build_raw_zip(longer))


def test_utf16_xml_cannot_smuggle_a_doctype() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE c [<!ENTITY a "b">]><config/>'
    data = build_gcode_3mf()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "Metadata/slice_info.config":
                content = doc.encode("utf-16")
            dst.writestr(info, content)
    with pytest.raises(ThreeMFError, match="not UTF-8"):
        read_3mf(out.getvalue())


@pytest.mark.parametrize(
    "name",
    ["Metadata/plate_1.gcode", "3D/3dmodel.model", "[Content_Types].xml", "_rels/.rels",
     "Metadata/", "Auxiliaries/.thumbnails/thumbnail_3mf.png", "a..b/c..d"],
)  # fmt: skip
def test_ordinary_names_are_accepted(name: str) -> None:
    check_entry_name(name)


@given(st.text(min_size=1, max_size=60))
def test_accepted_names_stay_inside_the_extraction_root(name: str) -> None:
    try:
        check_entry_name(name)
    except UnsafeArchiveError:
        return
    joined = posixpath.normpath(posixpath.join("/srv/root", name))
    assert joined.startswith("/srv/root/")
    assert "\\" not in name
    assert "\0" not in name
    assert not re.match(r"[A-Za-z]:", name)


@pytest.fixture(scope="module")
def valid_archive() -> bytes:
    return build_gcode_3mf(plates=[PlateSpec(), PlateSpec()])


def read_or_refuse(data: bytes) -> None:
    """Reading may succeed or raise ThreeMFError; anything else escapes and fails the test."""
    try:
        read_3mf(data)
    except ThreeMFError:
        return


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_threemf_errors(data: bytes) -> None:
    read_or_refuse(data)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_behind_a_zip_signature_raise_only_threemf_errors(tail: bytes) -> None:
    read_or_refuse(b"PK\x03\x04" + tail + b"PK\x05\x06" + tail[:18])


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=8)
)
def test_byte_flips_in_a_valid_archive_raise_only_threemf_errors(
    valid_archive: bytes, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(valid_archive)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    read_or_refuse(bytes(data))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=4),
    size=st.integers(min_value=22, max_value=4096),
)
def test_flips_in_the_directory_raise_only_threemf_errors(
    valid_archive: bytes, flips: list[tuple[int, int]], size: int
) -> None:
    """The structure lives in the last few KiB: aim the flips there."""
    data = bytearray(valid_archive)
    for position, mask in flips:
        data[len(data) - 1 - position % size] ^= mask
    read_or_refuse(bytes(data))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0), drop_front=st.booleans())
def test_truncations_raise_only_threemf_errors(
    valid_archive: bytes, cut: int, drop_front: bool
) -> None:
    cut %= len(valid_archive)
    data = valid_archive[cut:] if drop_front else valid_archive[:cut]
    read_or_refuse(data)


@settings(max_examples=200)
@given(st.binary(max_size=2048))
def test_gcode_header_parser_raises_only_threemf_errors(tail: bytes) -> None:
    try:
        parse_gcode_header(b"; HEADER_BLOCK_START\n" + tail + b"\n; HEADER_BLOCK_END\n")
    except ThreeMFError:
        return


RAW_NAMES = [
    b"3D/3dmodel.model",
    b"Metadata/plate_1.gcode",
    b"Metadata/slice_info.config",
    b"Metadata/plate_1.json",
    b"Metadata/project_settings.config",
    b"x/../y",
    b"/abs",
]
raw_entries = st.builds(
    RawEntry,
    name=st.sampled_from(RAW_NAMES),
    data=st.binary(max_size=300),
    method=st.sampled_from([0, 8, 12]),
    flags=st.sampled_from([0, 0, 1, 0x800]),
    mode=st.sampled_from([0o100644, 0o120777, 0o040755]),
    declared_size=st.none() | st.integers(0, 2**32 - 1),
    crc=st.none() | st.integers(0, 2**32 - 1),
)


@settings(max_examples=200)
@given(entries=st.lists(raw_entries, max_size=6))
def test_randomly_lying_headers_raise_only_threemf_errors(entries: list[RawEntry]) -> None:
    read_or_refuse(build_raw_zip(entries))


def test_default_limits_are_the_documented_ones() -> None:
    assert DEFAULT_LIMITS.max_entries == 10_000
    assert DEFAULT_LIMITS.max_total_size == 2 * 1024**3
    assert DEFAULT_LIMITS.max_metadata_size == 32 * 1024**2
    assert DEFAULT_LIMITS.max_ratio == 200


def test_open_archive_lists_entries_and_reads_heads() -> None:
    data = build_gcode_3mf()
    with open_archive(data) as archive:
        assert "Metadata/plate_1.gcode" in archive
        assert archive.entries["Metadata/plate_1.png"].size > 0
        head = archive.read_head("Metadata/plate_1.gcode", max_bytes=20)
        assert head == b"; HEADER_BLOCK_START"


def test_size_lie_is_caught_even_when_a_read_ends_exactly_at_the_declared_size() -> None:
    """The honest-looking prefix fills the first 16 KiB read exactly; the excess comes after."""
    for size in range(16300, 16400):
        prefix = random.Random(size).randbytes(size)
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        head = deflater.compress(prefix) + deflater.flush(zlib.Z_FULL_FLUSH)
        if len(head) == 16 * 1024:
            break
    else:
        pytest.fail("no prefix deflates to exactly 16 KiB")
    excess = b"<config/>" * 1000
    payload = head + deflater.compress(excess) + deflater.flush()
    lie = RawEntry(
        b"Metadata/slice_info.config",
        prefix,
        declared_size=size,
        crc=zlib.crc32(prefix),
        payload=payload,
    )
    with zipfile.ZipFile(io.BytesIO(build_gcode_3mf())) as archive:
        entries = [
            RawEntry(i.filename.encode(), archive.read(i))
            for i in archive.infolist()
            if i.filename != "Metadata/slice_info.config"
        ]
    with pytest.raises(UnsafeArchiveError, match=f"inflates past its declared size of {size}"):
        read_3mf(build_raw_zip([*entries, lie]))
