"""The simulated printer storage: confinement, capacity, atomic uploads, throttle arithmetic."""

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.simulator.storage import (
    STANDARD_DIRS,
    TEMP_PREFIX,
    InvalidNameError,
    PathEscapeError,
    PrinterStorage,
    StorageError,
    StorageFullError,
    WriteThrottle,
    normalize_path,
)


@pytest.fixture
def storage(tmp_path: Path) -> PrinterStorage:
    return PrinterStorage(tmp_path / "sd", capacity_bytes=10_000)


def test_standard_directories_exist_and_count_nothing(storage: PrinterStorage) -> None:
    assert [e.name for e in storage.list_dir("/")] == sorted(STANDARD_DIRS)
    assert all(e.is_dir for e in storage.list_dir("/"))
    assert storage.used_bytes() == 0
    assert storage.free_bytes() == storage.total_bytes == 10_000


def test_capacity_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity_bytes"):
        PrinterStorage(tmp_path, capacity_bytes=0)


@pytest.mark.parametrize(
    ("cwd", "name", "expected"),
    [
        ("/", "a.3mf", "/a.3mf"),
        ("/cache", "a.3mf", "/cache/a.3mf"),
        ("/cache", "/model/x", "/model/x"),
        ("/cache", "..", "/"),
        ("/cache/", "./../model//x", "/model/x"),
        ("/", "", "/"),
        ("/", "/etc/passwd", "/etc/passwd"),
    ],
)
def test_normalize_path(cwd: str, name: str, expected: str) -> None:
    assert normalize_path(cwd, name) == expected


@pytest.mark.parametrize(
    ("cwd", "name"),
    [("/", ".."), ("/", "../../etc/passwd"), ("/cache", "../../x"), ("/", "/../etc")],
)
def test_escapes_are_refused(storage: PrinterStorage, cwd: str, name: str) -> None:
    with pytest.raises(PathEscapeError, match="leaves the storage root"):
        storage.resolve(cwd, name)


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "x\r", f"{TEMP_PREFIX}1234.part"])
def test_invalid_names_are_refused(storage: PrinterStorage, name: str) -> None:
    with pytest.raises(InvalidNameError):
        storage.resolve("/", name)


def test_absolute_paths_stay_inside_the_root(storage: PrinterStorage) -> None:
    assert storage.resolve("/", "/etc/passwd") == storage.root / "etc" / "passwd"
    assert not storage.exists("/etc/passwd")


def test_symlink_out_of_the_root_is_refused(storage: PrinterStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (storage.root / "link").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        storage.resolve("/", "link/secret")


@given(st.lists(st.sampled_from(["..", ".", "a", "b", "", "/"]), max_size=12))
def test_normalized_paths_never_contain_dot_segments(parts: list[str]) -> None:
    try:
        result = normalize_path("/", "/".join(parts))
    except PathEscapeError:
        return
    assert result.startswith("/")
    assert ".." not in result.split("/")
    assert "//" not in result


def test_upload_commit_is_atomic(storage: PrinterStorage) -> None:
    with storage.begin_upload("/model/a.gcode.3mf") as upload:
        upload.write(b"x" * 3000)
        assert not storage.exists("/model/a.gcode.3mf")
        hidden = [p.name for p in (storage.root / "model").iterdir()]
        assert len(hidden) == 1
        assert hidden[0].startswith(TEMP_PREFIX)
        assert storage.list_dir("/model") == ()
        upload.commit()
    assert (storage.root / "model" / "a.gcode.3mf").read_bytes() == b"x" * 3000
    assert os.listdir(storage.root / "model") == ["a.gcode.3mf"]
    assert storage.used_bytes() == 3000
    assert storage.free_bytes() == 7000


def test_upload_without_commit_leaves_nothing(storage: PrinterStorage) -> None:
    with storage.begin_upload("a.bin") as upload:
        upload.write(b"y" * 100)
    assert set(os.listdir(storage.root)) == set(STANDARD_DIRS)
    assert storage.used_bytes() == 0


def test_upload_past_capacity_raises_and_leaves_nothing(storage: PrinterStorage) -> None:
    with storage.begin_upload("big") as up:
        for _ in range(10):
            up.write(b"z" * 1000)
        with pytest.raises(StorageFullError, match="0 bytes free, 1 more needed"):
            up.write(b"z")
        assert up.written == 10_000
    assert not storage.exists("big")
    assert set(os.listdir(storage.root)) == set(STANDARD_DIRS)
    assert storage.used_bytes() == 0


def test_capacity_counts_concurrent_uploads(storage: PrinterStorage) -> None:
    with storage.begin_upload("a") as first, storage.begin_upload("b") as second:
        first.write(b"1" * 6000)
        with pytest.raises(StorageFullError):
            second.write(b"2" * 6000)
        first.commit()
    assert storage.used_bytes() == 6000


def test_replacing_a_file_frees_the_old_bytes(storage: PrinterStorage) -> None:
    storage.write_file("f", b"a" * 6000)
    storage.write_file("f", b"b" * 3000)
    assert storage.used_bytes() == 3000
    with storage.begin_upload("g") as up:
        up.write(b"c" * 7000)
        up.commit()
    assert storage.free_bytes() == 0


def test_write_after_commit_is_an_error(storage: PrinterStorage) -> None:
    upload = storage.begin_upload("f")
    upload.commit()
    with pytest.raises(StorageError, match="already finished"):
        upload.write(b"1")
    upload.abort()
    assert storage.stat("f").size == 0


def test_upload_into_missing_directory_or_onto_directory(storage: PrinterStorage) -> None:
    with pytest.raises(StorageError, match="no such directory"):
        storage.begin_upload("/nope/file")
    with pytest.raises(StorageError, match="is a directory"):
        storage.begin_upload("/cache")
    with pytest.raises(StorageError, match="is a directory"):
        storage.begin_upload("/")


def test_listing_and_stat(storage: PrinterStorage) -> None:
    storage.write_file("/cache/b.3mf", b"12345")
    storage.write_file("/cache/a.3mf", b"1")
    storage.mkdir("/cache/sub")
    entries = storage.list_dir("/cache")
    assert [(e.name, e.size, e.is_dir) for e in entries] == [
        ("a.3mf", 1, False),
        ("b.3mf", 5, False),
        ("sub", 0, True),
    ]
    assert storage.stat("/cache/b.3mf").size == 5
    assert storage.stat("/cache/b.3mf").mtime > 0
    with pytest.raises(StorageError, match="no such file"):
        storage.stat("/cache/none")
    with pytest.raises(StorageError, match="not a directory"):
        storage.list_dir("/cache/a.3mf")


def test_read_delete_rename_mkdir_rmdir(storage: PrinterStorage) -> None:
    storage.write_file("f.bin", b"data")
    with storage.open_for_read("/f.bin") as fh:
        assert fh.read() == b"data"
    storage.rename("f.bin", "/model/g.bin")
    assert not storage.exists("f.bin")
    assert storage.exists("model/g.bin")
    storage.delete("/model/g.bin")
    assert storage.used_bytes() == 0
    storage.mkdir("d")
    with pytest.raises(StorageError, match="cannot create directory"):
        storage.mkdir("d")
    storage.write_file("d/x", b"1")
    with pytest.raises(StorageError, match="cannot remove directory"):
        storage.rmdir("d")
    storage.delete("d/x")
    storage.rmdir("d")
    assert not storage.exists("d")


def test_errors_for_missing_and_root(storage: PrinterStorage) -> None:
    with pytest.raises(StorageError, match="no such file"):
        storage.open_for_read("missing")
    with pytest.raises(StorageError, match="no such file"):
        storage.open_for_read("/cache")
    with pytest.raises(StorageError, match="no such file"):
        storage.delete("/cache")
    with pytest.raises(StorageError, match="storage root"):
        storage.rmdir("/")
    with pytest.raises(StorageError, match="storage root"):
        storage.rename("/", "x")
    with pytest.raises(StorageError, match="no such file or directory"):
        storage.rename("missing", "x")
    with pytest.raises(StorageError, match="cannot rename"):
        storage.rename("/cache", "/cache/inside")


def test_used_bytes_sees_files_written_behind_its_back(storage: PrinterStorage) -> None:
    (storage.root / "timelapse" / "video.mp4").write_bytes(b"v" * 4000)
    assert storage.used_bytes() == 4000
    with pytest.raises(StorageFullError), storage.begin_upload("f") as up:
        up.write(b"x" * 6001)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_uncapped_never_waits() -> None:
    throttle = WriteThrottle(FakeClock())
    assert throttle.delay_after(10**9, None) == 0.0


def test_throttle_paces_to_the_rate() -> None:
    clock = FakeClock()
    throttle = WriteThrottle(clock)
    assert throttle.delay_after(160_000, 160_000) == pytest.approx(1.0)
    clock.now += 1.0
    assert throttle.delay_after(80_000, 160_000) == pytest.approx(0.5)
    clock.now += 5.0  # a slow writer owes nothing
    assert throttle.delay_after(80_000, 160_000) == 0.0


def test_throttle_restarts_when_the_rate_changes() -> None:
    clock = FakeClock()
    throttle = WriteThrottle(clock)
    assert throttle.delay_after(1000, 1000) == pytest.approx(1.0)
    assert throttle.delay_after(1000, 500) == pytest.approx(2.0)
    assert throttle.delay_after(1000, None) == 0.0
