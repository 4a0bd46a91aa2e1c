"""protocol.threemf: metadata of sliced and project 3MF files, read without extracting."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bambufarm.protocol.errors import NotSlicedError, ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.threemf import (
    ArchiveLimits,
    GcodeHeader,
    PlateFilament,
    parse_gcode_header,
    read_3mf,
    read_entry,
    read_gcode_header,
)
from tests.support.threemf_factory import (
    APPLICATION,
    CLIENT_VERSION,
    FilamentSpec,
    PlateSpec,
    build_gcode_3mf,
    plate_gcode,
)

SLICE_INFO = "Metadata/slice_info.config"


def rewrite(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    """The archive with entries replaced (bytes), removed (None) or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename not in changes:
                dst.writestr(info, src.read(info))
        for name, content in changes.items():
            if content is not None:
                dst.writestr(name, content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def entry(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def test_single_plate_metadata_matches_what_was_sliced() -> None:
    spec = PlateSpec(
        prediction_s=5935,
        weight_g=20.91,
        layers=150,
        filaments=(FilamentSpec(1, "PETG", "#8D8C8F", 12.5, 4.1, "GFG00"),),
        objects=((123, "Part A.stl"), (456, "Part B.stl")),
        bed_type="cool_plate",
    )
    data = build_gcode_3mf(plates=[spec], printer_model_id="C12", nozzle_diameter=0.4)
    gcode = entry(data, "Metadata/plate_1.gcode")

    threemf = read_3mf(data)

    assert threemf.sliced
    assert threemf.printer_model_id == "C12"
    assert threemf.nozzle_diameter == 0.4
    assert threemf.application == APPLICATION
    assert threemf.client_version == CLIENT_VERSION
    (plate,) = threemf.plates
    assert plate.index == 1
    assert plate.gcode_path == "Metadata/plate_1.gcode"
    assert plate.gcode_size == len(gcode)
    assert plate.gcode_md5 == hashlib.md5(gcode).hexdigest().upper()  # noqa: S324 - Bambu's format
    assert plate.prediction_s == 5935
    assert plate.weight_g == 20.91
    (filament,) = plate.filaments
    assert filament == PlateFilament(1, "GFG00", "PETG", "#8D8C8F", 12.5, 4.1)
    assert [(o.identify_id, o.name) for o in plate.objects] == [
        (123, "Part A.stl"),
        (456, "Part B.stl"),
    ]
    assert plate.thumbnail_path == "Metadata/plate_1.png"
    assert plate.bed_type == "cool_plate"
    assert plate.total_layers == 150
    assert plate.estimated_time_s == 5935
    assert threemf.plate(1) is plate
    assert threemf.require_sliced() is threemf


def test_multi_plate_file_lists_every_plate_in_order() -> None:
    plates = [
        PlateSpec(prediction_s=600, layers=10, weight_g=1.5),
        PlateSpec(
            prediction_s=3 * 86400 + 7,
            layers=2000,
            filaments=(
                FilamentSpec(1, "PLA", "#000000", 10.0, 3.0),
                FilamentSpec(3, "PLA", "#FF0000", 2.0, 0.6, "GFA05"),
            ),
        ),
        PlateSpec(prediction_s=59, layers=1, thumbnail=False, md5=False),
    ]
    threemf = read_3mf(build_gcode_3mf(plates=plates))

    assert [p.index for p in threemf.plates] == [1, 2, 3]
    assert [p.prediction_s for p in threemf.plates] == [600, 3 * 86400 + 7, 59]
    assert [p.estimated_time_s for p in threemf.plates] == [600, 3 * 86400 + 7, 59]
    assert [p.total_layers for p in threemf.plates] == [10, 2000, 1]
    assert [f.slot for f in threemf.plate(2).filaments] == [1, 3]
    assert threemf.plate(2).filaments[1].color == "#FF0000"
    assert threemf.plate(3).thumbnail_path is None
    assert threemf.plate(3).gcode_md5 is None
    with pytest.raises(ThreeMFError, match=r"no plate 4 in this file; its plates are: 1, 2, 3"):
        threemf.plate(4)


def test_single_exported_plate_keeps_its_own_index() -> None:
    threemf = read_3mf(build_gcode_3mf(plates=[PlateSpec(index=3)]))
    assert [p.index for p in threemf.plates] == [3]
    assert threemf.plate(3).gcode_path == "Metadata/plate_3.gcode"
    assert threemf.plate(3).thumbnail_path == "Metadata/plate_3.png"
    with pytest.raises(ThreeMFError, match="its plates are: 3"):
        threemf.plate(1)


def test_project_file_is_refused_with_advice_to_slice() -> None:
    threemf = read_3mf(build_gcode_3mf(sliced=False))
    assert not threemf.sliced
    assert threemf.plates == ()
    assert threemf.printer_model_id == "C12"  # from project_settings "Bambu Lab P1S"
    with pytest.raises(NotSlicedError, match=r"project file; slice it and export .*\.gcode\.3mf"):
        threemf.require_sliced()
    with pytest.raises(ThreeMFError, match="no sliced plates"):
        threemf.plate(1)


@pytest.mark.parametrize(
    ("product", "expected"),
    [("Bambu Lab A1 mini", "N1"), ("Bambu Lab X1-Carbon", "BL-P001"), ("Prusa MK4", None)],
)
def test_model_id_falls_back_to_project_settings(product: str, expected: str | None) -> None:
    data = build_gcode_3mf(printer_model_id=None, printer_model=product)
    assert read_3mf(data).printer_model_id == expected


def test_nozzle_falls_back_to_project_settings() -> None:
    data = build_gcode_3mf(nozzle_diameter=0.6)
    info = entry(data, SLICE_INFO).replace(b'key="nozzle_diameters" value="0.6"', b"")
    assert read_3mf(rewrite(data, {SLICE_INFO: info})).nozzle_diameter == 0.6


def test_file_without_optional_entries_reads_as_none() -> None:
    data = build_gcode_3mf()
    bare = rewrite(
        data,
        {
            "Metadata/project_settings.config": None,
            "Metadata/plate_1.json": None,
            "3D/3dmodel.model": None,
            SLICE_INFO: b'<?xml version="1.0"?><config><plate/></config>',
        },
    )
    threemf = read_3mf(bare)
    assert threemf.printer_model_id is None
    assert threemf.nozzle_diameter is None
    assert threemf.application is None
    assert threemf.client_version is None
    assert threemf.plate(1).bed_type is None
    assert threemf.plate(1).prediction_s is None
    assert threemf.plate(1).filaments == ()


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("#8d8c8f", "#8D8C8F"), ("#8D8C8FFF", "#8D8C8F"), ("00AE42", "#00AE42"), ("#abc", "#AABBCC")],
)
def test_filament_colours_are_normalised(given: str, normalised: str) -> None:
    data = build_gcode_3mf(plates=[PlateSpec(filaments=(FilamentSpec(color=given),))])
    assert read_3mf(data).plate(1).filaments[0].color == normalised


def test_sources_bytes_path_and_streams_give_the_same_result(tmp_path: Path) -> None:
    data = build_gcode_3mf()
    path = tmp_path / "cube.gcode.3mf"
    path.write_bytes(data)
    expected = read_3mf(data)
    assert read_3mf(bytearray(data)) == expected
    assert read_3mf(str(path)) == expected
    assert read_3mf(path) == expected
    assert read_3mf(io.BytesIO(data)) == expected
    with path.open("rb") as stream:
        assert read_3mf(stream) == expected
        assert not stream.closed  # the caller's stream stays the caller's


def test_missing_path_and_unseekable_stream_are_threemf_errors(tmp_path: Path) -> None:
    with pytest.raises(ThreeMFError, match="cannot open"):
        read_3mf(tmp_path / "absent.gcode.3mf")

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    with pytest.raises(ThreeMFError, match="seekable"):
        read_3mf(Pipe(build_gcode_3mf()))


class CountingStream(io.BytesIO):
    """Counts the bytes the reader pulls from the archive."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_plate_gcode_bodies_are_not_read() -> None:
    data = build_gcode_3mf(plates=[PlateSpec(), PlateSpec()], gcode_padding_bytes=3_000_000)
    assert len(data) > 1_500_000
    stream = CountingStream(data)
    threemf = read_3mf(stream)
    assert threemf.plate(2).gcode_size > 3_000_000
    # Two ~1 MB compressed G-code entries; the reader needs one 16 KiB chunk of each.
    assert stream.bytes_read < 200_000


def test_read_gcode_header_reads_only_the_start_of_the_entry() -> None:
    data = build_gcode_3mf(plates=[PlateSpec(layers=321, prediction_s=3735)])
    padded = build_gcode_3mf(
        plates=[PlateSpec(layers=321, prediction_s=3735)], gcode_padding_bytes=2_000_000
    )
    stream = CountingStream(padded)
    header = read_gcode_header(stream)
    assert header == read_gcode_header(data)
    assert header.total_layers == 321
    assert header.estimated_time_s == 3735
    assert header.model_time_s == 3735 - 400
    assert header.generator == f"BambuStudio {CLIENT_VERSION}"
    assert stream.bytes_read < 100_000
    with pytest.raises(ThreeMFError, match=r"no Metadata/plate_2\.gcode"):
        read_gcode_header(data, 2)


def test_gcode_without_header_block() -> None:
    data = build_gcode_3mf()
    bare = rewrite(data, {"Metadata/plate_1.gcode": b"G28\nG1 X10 Y10\n"})
    plate = read_3mf(bare).plate(1)
    assert plate.total_layers is None
    assert plate.estimated_time_s is None
    with pytest.raises(ThreeMFError, match="no '; HEADER_BLOCK_START' block"):
        read_gcode_header(bare)
    filler = "".join(f"; comment {i}\n" for i in range(8000))
    unclosed = b"; HEADER_BLOCK_START\n" + filler.encode()
    with pytest.raises(ThreeMFError, match=r"plate_1\.gcode.*not closed"):
        read_3mf(rewrite(data, {"Metadata/plate_1.gcode": unclosed}))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h 38m 55s", 5935), ("38m 5s", 2285), ("55s", 55), ("2d 3h 4m 5s", 183845), ("0m 0s", 0),
     ("12m", 720), ("1h 2m 3.6s", 3724)],
)  # fmt: skip
def test_header_durations(text: str, seconds: int) -> None:
    head = f"; HEADER_BLOCK_START\n; total estimated time: {text}\n; HEADER_BLOCK_END\n"
    assert parse_gcode_header(head.encode()) == GcodeHeader(None, None, seconds, None)


@pytest.mark.parametrize(
    ("line", "problem"),
    [("; total estimated time: soon", "total estimated time"),
     ("; total estimated time: ", "total estimated time"),
     ("; total layer number: many", "total layer number")],
)  # fmt: skip
def test_malformed_header_values_are_named(line: str, problem: str) -> None:
    head = f"; HEADER_BLOCK_START\n{line}\n; HEADER_BLOCK_END\n".encode()
    with pytest.raises(ThreeMFError, match=problem):
        parse_gcode_header(head)


def test_parse_gcode_header_without_block_is_none() -> None:
    assert parse_gcode_header(b"G28\n") is None
    gcode = plate_gcode(PlateSpec(layers=7, prediction_s=61))
    assert parse_gcode_header(gcode) == GcodeHeader(f"BambuStudio {CLIENT_VERSION}", 7, 61, 0)


def test_read_entry_returns_a_capped_thumbnail() -> None:
    data = build_gcode_3mf()
    png = read_entry(data, "Metadata/plate_1.png", max_bytes=1 << 20)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (32, 32)
    with pytest.raises(UnsafeArchiveError, match=r"plate_1\.png.*over the limit of 10"):
        read_entry(data, "Metadata/plate_1.png", max_bytes=10)
    with pytest.raises(ThreeMFError, match=r"no entry 'Metadata/plate_9\.png'"):
        read_entry(data, "Metadata/plate_9.png", max_bytes=1 << 20)
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        read_entry(data, "Metadata/../../etc/passwd", max_bytes=1 << 20)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({SLICE_INFO: None}, "no Metadata/slice_info.config"),
        ({SLICE_INFO: b"<config><plate>"}, "slice_info.config is not well-formed XML"),
        ({SLICE_INFO: b"<other/>"}, "root <other>, expected <config>"),
        ({SLICE_INFO: '<?xml version="1.0" encoding="UTF-16"?><config/>'.encode("utf-16")},
         "slice_info.config is not UTF-8"),
        ({SLICE_INFO: b'<config><plate><metadata key="prediction" value="soon"/></plate></config>'},
         "plate 1 prediction is not an integer: 'soon'"),
        ({SLICE_INFO: b'<config><plate><metadata key="weight" value="nan"/></plate></config>'},
         "plate 1 weight is not a finite number"),
        ({SLICE_INFO: b'<config><plate><filament id="x"/></plate></config>'},
         "filament id is not an integer"),
        ({SLICE_INFO: b'<config><plate><filament id="1" color="red"/></plate></config>'},
         "filament 1 color is not a hex colour: 'red'"),
        ({SLICE_INFO: b'<config><plate><object identify_id="" name="x"/></plate></config>'},
         "object identify_id is not an integer"),
        ({SLICE_INFO: b'<config><plate><metadata key="index" value="1"/></plate>'
                      b'<plate><metadata key="index" value="1"/></plate></config>'},
         "plate 1 appears twice"),
        ({"Metadata/plate_1.json": b"{not json"}, "plate_1.json is not valid JSON"),
        ({"Metadata/plate_1.json": b"[1, 2]"}, "plate_1.json is JSON but not an object"),
        ({"Metadata/plate_1.json": b'{"bed_type": 3}'}, "bed_type is not a string"),
        ({"Metadata/plate_1.gcode.md5": b"not-an-md5"},
         r"plate_1\.gcode\.md5 does not hold an MD5"),
    ],
)  # fmt: skip
def test_malformed_metadata_is_a_threemf_error_naming_it(
    changes: dict[str, bytes | None], problem: str
) -> None:
    with pytest.raises(ThreeMFError, match=problem) as caught:
        read_3mf(rewrite(build_gcode_3mf(), changes))
    assert not isinstance(caught.value, UnsafeArchiveError)


def test_settings_with_bad_nozzle_is_named() -> None:
    data = build_gcode_3mf(sliced=False)
    bad = rewrite(data, {"Metadata/project_settings.config": b'{"nozzle_diameter": ["wide"]}'})
    with pytest.raises(ThreeMFError, match=r"project_settings\.config nozzle_diameter"):
        read_3mf(bad)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a ZIP archive"),
        (b"hello, this is not a zip file at all" * 3, "not a ZIP archive"),
        (b"PK\x05\x06" + b"\0" * 18, r"not a 3MF: the archive has neither 3D/3dmodel\.model"),
    ],
)
def test_not_a_zip(data: bytes, problem: str) -> None:
    with pytest.raises(ThreeMFError, match=problem):
        read_3mf(data)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_uploads_are_threemf_errors(keep: float) -> None:
    data = build_gcode_3mf()
    with pytest.raises(ThreeMFError, match=r"ZIP|truncated"):
        read_3mf(data[: int(len(data) * keep)])


def test_corrupt_entry_data_fails_its_crc() -> None:
    data = bytearray(build_gcode_3mf())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(SLICE_INFO)
    start = info.header_offset + 30 + len(info.filename)
    data[start + info.compress_size // 2] ^= 0x55
    with pytest.raises(ThreeMFError, match=r"slice_info\.config.*(CRC|corrupt|holds)"):
        read_3mf(bytes(data))


def test_archives_written_by_zipfile_with_zip64_stored_and_directories() -> None:
    data = build_gcode_3mf()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        dst.writestr(zipfile.ZipInfo("Metadata/"), b"")
        for info in src.infolist():
            target = zipfile.ZipInfo(info.filename)
            png = info.filename.endswith(".png")
            target.compress_type = zipfile.ZIP_STORED if png else zipfile.ZIP_DEFLATED
            with dst.open(target, "w", force_zip64=True) as f:
                f.write(src.read(info))
    assert read_3mf(out.getvalue()) == read_3mf(data)


def test_limits_can_be_tightened() -> None:
    data = build_gcode_3mf()
    with pytest.raises(UnsafeArchiveError, match="declares 10 entries, over the limit of 5"):
        read_3mf(data, limits=ArchiveLimits(max_entries=5))
    with pytest.raises(UnsafeArchiveError, match="over the limit of 100"):
        read_3mf(data, limits=ArchiveLimits(max_metadata_size=100))


def test_nothing_is_written_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile  # noqa: PLC0415 - patched below, imported where it is used

    scratch = tmp_path / "tmp"
    work = tmp_path / "work"
    scratch.mkdir()
    work.mkdir()
    source = tmp_path / "in.gcode.3mf"
    source.write_bytes(build_gcode_3mf(plates=[PlateSpec(), PlateSpec()]))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.chdir(work)

    read_3mf(source)
    read_gcode_header(source, 2)
    read_entry(source, "Metadata/plate_2.png", max_bytes=1 << 20)

    assert list(scratch.iterdir()) == []
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.gcode.3mf", "tmp", "work"]
