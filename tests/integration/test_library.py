"""The print library on SQLite and PostgreSQL: uploads, dedup, refusals, entries, thumbnails."""

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bambufarm.jobs.library import (
    CHUNK_BYTES,
    STALE_UPLOAD_S,
    Library,
    LibraryDiskError,
    UploadTooLarge,
)
from bambufarm.jobs.model import JobSpec, cancel
from bambufarm.protocol.errors import ModelError, NotSlicedError, ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.threemf import read_3mf
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.jobs import add_jobs, change_state, get_job
from bambufarm.storage.library import (
    BlobNotFound,
    DuplicateFileName,
    FileInUse,
    LibraryFileNotFound,
)
from tests.support.threemf_factory import (
    HOSTILE_KINDS,
    FilamentSpec,
    PlateSpec,
    build_gcode_3mf,
    build_hostile_3mf,
    tiny_png,
)

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CUBE = build_gcode_3mf()
TWO_PLATES = build_gcode_3mf(
    plates=[
        PlateSpec(filaments=(FilamentSpec(1, "PLA", "#FFFFFF", 12.5, 4.1),)),
        PlateSpec(
            prediction_s=600,
            weight_g=3.5,
            thumbnail=False,
            filaments=(
                FilamentSpec(1, "PLA", "#FFFFFF", 1.5, 0.5),
                FilamentSpec(2, "PETG", "#FF0000", 2.0, 0.7),
            ),
        ),
    ],
    printer_model_id="BL-P001",
)


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """What an HTTP request body looks like: the bytes in chunks."""
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def library(db: Database, tmp_path: Path) -> Library:
    return Library(tmp_path / "library", db, clock=lambda: T0)


@pytest.fixture
async def sqlite_library(tmp_path: Path) -> AsyncIterator[Library]:
    """For refusals that never reach the database: one dialect is enough."""
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'refusals.db'}")
    try:
        yield Library(tmp_path / "library", db, clock=lambda: T0)
    finally:
        await db.aclose()


async def test_an_upload_is_stored_by_content_with_its_metadata(library: Library) -> None:
    added = await library.add(stream(TWO_PLATES), name="bracket.gcode.3mf", folder="acme/v2")
    sha = hashlib.sha256(TWO_PLATES).hexdigest()
    assert added.sha256 == sha
    assert (added.name, added.folder, added.tags) == ("bracket.gcode.3mf", "acme/v2", ())
    assert added.created_at == T0
    path = library.root / sha[:2] / f"{sha}.gcode.3mf"
    assert path.read_bytes() == TWO_PLATES
    assert stored_files(library.root) == [path]  # nothing left in tmp/
    blob = added.blob
    assert (blob.size, blob.printer_model, blob.nozzle_diameter) == (
        len(TWO_PLATES),
        "BL-P001",
        0.4,
    )
    assert (blob.plate_count, blob.prediction_s) == (2, 5935 + 600)
    assert blob.weight_g == pytest.approx(20.91 + 3.5)
    assert blob.metadata == read_3mf(TWO_PLATES)
    second = blob.metadata.plate(2)
    assert [(f.slot, f.type, f.color, f.used_g) for f in second.filaments] == [
        (1, "PLA", "#FFFFFF", 1.5),
        (2, "PETG", "#FF0000", 2.0),
    ]
    assert await library.get(added.id) == added
    assert await library.local_path(sha) == path


async def test_a_local_file_is_copied_in(library: Library, tmp_path: Path) -> None:
    source = tmp_path / "cube.gcode.3mf"
    source.write_bytes(CUBE)
    added = await library.add(source, name="cube")
    assert library.path_of(added.sha256).read_bytes() == CUBE
    assert source.exists()


async def test_the_same_content_is_stored_once_under_every_name(library: Library) -> None:
    first = await library.add(stream(CUBE), name="cube.gcode.3mf", tags=["demo"])
    second = await library.add(stream(CUBE), name="cube copy", folder="spares")
    again = await library.add(stream(CUBE), name="cube.gcode.3mf")
    assert first.sha256 == second.sha256
    assert first.id != second.id
    assert again == first  # the same name and content: nothing new
    assert len(stored_files(library.root)) == 1
    page = await library.list()
    assert [(f.folder, f.name) for f in page.items] == [
        ("", "cube.gcode.3mf"),
        ("spares", "cube copy"),
    ]


async def test_a_taken_name_with_other_content_is_refused_and_leaves_nothing(
    library: Library,
) -> None:
    await library.add(stream(CUBE), name="part")
    with pytest.raises(DuplicateFileName, match="the top folder already has a file named 'part'"):
        await library.add(stream(TWO_PLATES), name="part")
    assert len(stored_files(library.root)) == 1
    with pytest.raises(BlobNotFound):
        await library.content(hashlib.sha256(TWO_PLATES).hexdigest())


async def test_an_upload_over_the_cap_is_refused_and_leaves_nothing(library: Library) -> None:
    with pytest.raises(UploadTooLarge, match=r"larger than the library's limit of 0.0009\d* MiB"):
        await library.add(stream(CUBE, chunk=100), name="cube", max_bytes=1000)
    assert stored_files(library.root) == []
    assert (await library.list()).total == 0
    small = Library(library.root, library_db(library), max_bytes=len(CUBE) - 1)
    with pytest.raises(UploadTooLarge):
        await small.add(stream(CUBE), name="cube")
    exact = await library.add(stream(CUBE), name="cube", max_bytes=len(CUBE))
    assert exact.blob.size == len(CUBE)


def library_db(library: Library) -> Database:
    return library._db


async def test_one_huge_chunk_is_written_in_bounded_steps(library: Library) -> None:
    padded = build_gcode_3mf(gcode_padding_bytes=4 * CHUNK_BYTES)
    assert len(padded) > CHUNK_BYTES
    added = await library.add(stream(padded, chunk=len(padded)), name="big")
    assert library.path_of(added.sha256).read_bytes() == padded


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (build_gcode_3mf(sliced=False), NotSlicedError, "slice it"),
        (b"", ThreeMFError, "the file is empty"),
        (b"PK\x03\x04 this is not really a zip" * 10, ThreeMFError, "not a ZIP archive"),
        (CUBE[: len(CUBE) // 2], ThreeMFError, "truncated upload"),
        (build_gcode_3mf(printer_model_id="Z99"), ModelError, "'Z99', which this farm does not"),
        (
            build_gcode_3mf(printer_model_id=None, printer_model="Prusa MK4"),
            ModelError,
            "does not say which printer model",
        ),
    ],
    ids=["project", "empty", "not-a-zip", "truncated", "unknown-model", "no-model"],
)
async def test_files_that_cannot_print_are_refused_with_the_reason(
    sqlite_library: Library, data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await sqlite_library.add(stream(data), name="bad")
    assert stored_files(sqlite_library.root) == []
    assert (await sqlite_library.list()).total == 0


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
async def test_hostile_archives_are_refused_and_leave_nothing(
    sqlite_library: Library, kind: str
) -> None:
    with pytest.raises(ThreeMFError):
        await sqlite_library.add(stream(build_hostile_3mf(kind)), name=kind)
    assert stored_files(sqlite_library.root) == []


async def test_names_folders_and_tags_are_checked_before_reading(sqlite_library: Library) -> None:
    never_read = stream(b"")  # an empty body would fail later; these fail first
    for kwargs, message in (
        ({"name": "../../etc/passwd"}, "without '/'"),
        ({"name": "a\\b"}, "without '/'"),
        ({"name": "x", "folder": "a/../b"}, "'..' parts"),
        ({"name": "x", "tags": ["ok", ""]}, "tag"),
        ({"name": "x" * 256}, "1 to 255"),
    ):
        with pytest.raises(InvalidValue, match=message):
            await sqlite_library.add(never_read, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="not a sha256"):
        sqlite_library.path_of("../../etc/passwd")


async def test_a_cancelled_upload_leaves_nothing(library: Library) -> None:
    sent_half = asyncio.Event()

    async def hangs_up() -> AsyncIterator[bytes]:
        yield CUBE[: len(CUBE) // 2]
        sent_half.set()
        await asyncio.Event().wait()  # the client never sends the rest
        yield b""

    upload = asyncio.create_task(library.add(hangs_up(), name="cube"))
    await sent_half.wait()  # set after the first half was written to the temporary file
    assert len(list((library.root / "tmp").iterdir())) == 1
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert stored_files(library.root) == []


async def test_entries_are_renamed_moved_tagged_listed_and_filtered(library: Library) -> None:
    cube = await library.add(stream(CUBE), name="cube", tags=["demo", "pla"])
    bracket = await library.add(stream(TWO_PLATES), name="bracket", folder="acme")
    renamed = await library.rename(cube.id, "cube v2")
    moved = await library.move(renamed.id, "/acme/spares/")
    tagged = await library.tag(bracket.id, [" rush ", "rush", "petg"])
    assert (moved.name, moved.folder, moved.tags) == ("cube v2", "acme/spares", ("demo", "pla"))
    assert tagged.tags == ("petg", "rush")
    assert await library.folders() == ("acme", "acme/spares")
    assert [f.id for f in (await library.list(folder="acme")).items] == [bracket.id]
    assert [f.id for f in (await library.list(tag="demo")).items] == [cube.id]
    assert [f.id for f in (await library.list(search="V2")).items] == [cube.id]
    assert [f.id for f in (await library.list(printer_model="BL-P001")).items] == [bracket.id]
    page = await library.list(limit=1, offset=1)
    assert page.total == 2
    assert [f.id for f in page.items] == [cube.id]
    await library.add(stream(CUBE), name="cube v2", folder="acme")
    with pytest.raises(DuplicateFileName, match="folder 'acme' already has"):
        await library.move(moved.id, "acme")
    with pytest.raises(LibraryFileNotFound, match="no library file with id 999"):
        await library.rename(999, "x")


async def test_thumbnails_come_out_of_the_stored_file(library: Library) -> None:
    added = await library.add(stream(TWO_PLATES), name="bracket")
    assert await library.thumbnail(added.sha256, 1) == tiny_png(1)
    with pytest.raises(ThreeMFError, match="plate 2 of this file has no thumbnail"):
        await library.thumbnail(added.sha256, 2)
    with pytest.raises(ThreeMFError, match="no plate 3 in this file; its plates are: 1, 2"):
        await library.thumbnail(added.sha256, 3)
    with pytest.raises(UnsafeArchiveError, match="over the limit of 10"):
        await library.thumbnail(added.sha256, 1, max_bytes=10)


async def test_deleting_the_last_entry_removes_the_file(library: Library) -> None:
    first = await library.add(stream(CUBE), name="cube")
    second = await library.add(stream(CUBE), name="cube", folder="copies")
    await library.delete(first.id)
    assert library.path_of(first.sha256).exists()
    await library.delete(second.id)
    assert stored_files(library.root) == []
    with pytest.raises(BlobNotFound):
        await library.content(first.sha256)
    with pytest.raises(LibraryFileNotFound):
        await library.delete(second.id)


async def test_a_file_that_unfinished_jobs_need_cannot_be_deleted(
    library: Library, db: Database
) -> None:
    added = await library.add(stream(CUBE), name="cube")
    async with db.session() as s:
        jobs = await add_jobs(s, JobSpec(added.sha256, "cube", copies=2).to_new_job(), now=T0)
    with pytest.raises(FileInUse, match=rf"unfinished jobs \({jobs[0].id}, {jobs[1].id}\)"):
        await library.delete(added.id)
    assert library.path_of(added.sha256).exists()
    assert (await library.get(added.id)).id == added.id
    async with db.session() as s:
        for job in jobs:
            await change_state(s, job.id, cancel("not needed"), now=T0)
    await library.delete(added.id)
    assert stored_files(library.root) == []
    async with db.session(readonly=True) as s:
        assert (await get_job(s, jobs[0].id)).file_sha256 is None


async def test_a_file_lost_from_disk_is_reported_and_restored_by_adding_it(
    library: Library,
) -> None:
    added = await library.add(stream(CUBE), name="cube")
    library.path_of(added.sha256).unlink()
    with pytest.raises(LibraryDiskError, match="missing from disk; add the file again"):
        await library.local_path(added.sha256)
    assert await library.add(stream(CUBE), name="cube") == added
    assert library.path_of(added.sha256).read_bytes() == CUBE


async def test_stale_uploads_are_removed_and_fresh_ones_kept(library: Library) -> None:
    tmp = library.root / "tmp"
    tmp.mkdir(parents=True)
    stale, fresh, other = tmp / "upload-a.part", tmp / "upload-b.part", tmp / "notes.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    old = time.time() - STALE_UPLOAD_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert await library.remove_stale_uploads() == 1
    assert sorted(p.name for p in tmp.iterdir()) == ["notes.txt", "upload-b.part"]


async def test_a_library_directory_that_cannot_be_written_is_a_clear_error(
    db: Database, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    library = Library(blocker / "library", db)
    with pytest.raises(LibraryDiskError, match="cannot be written"):
        await library.add(stream(CUBE), name="cube")
    missing = Library(tmp_path / "library", db)
    with pytest.raises(LibraryDiskError, match="cannot be read"):
        await missing.add(tmp_path / "no-such-file.gcode.3mf", name="cube")
