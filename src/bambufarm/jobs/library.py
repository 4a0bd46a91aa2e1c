"""The print library: sliced `.gcode.3mf` files stored once by content, named by the operator.

`Library(root, db)` keeps the bytes under `root` and the rows in the database:

* `add` streams an upload (or copies a local file) into `root/tmp/` while hashing it, with a
  size cap, then checks it the way a printer would need it: a safe archive (`read_3mf`
  checks every entry's name, size and ratio), sliced (plate G-code present), for a printer
  model we know. Only then is it moved to `root/<sha[:2]>/<sha>.gcode.3mf`. The same content
  uploaded twice is stored once; each name, folder and tag set is an entry pointing at it.
  A refused upload leaves nothing behind.
* `delete` removes an entry, and the bytes when no entry is left (refused while unfinished
  jobs still need them); `rename`, `move` and `tag` change entries only.
* `thumbnail` reads one plate's PNG out of the stored archive on demand, capped.

File I/O runs on the event loop in bounded steps, not on threads (design.md §4.2): each step
reads or writes one chunk of at most 1 MiB of a local file (about a millisecond on an SD card
or SSD) and yields to the loop between chunks; `read_3mf` and `read_entry` read the central
directory and a few small entries (capped by `ArchiveLimits`), never a plate's G-code body.
"""

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final, TypeAlias
from uuid import uuid4

from bambufarm.jobs.model import UNFINISHED
from bambufarm.protocol.errors import ModelError, ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.models import model_by_code
from bambufarm.protocol.threemf import DEFAULT_LIMITS, ArchiveLimits, ThreeMF, read_3mf, read_entry
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.library import (
    BlobRecord,
    FileChanges,
    LibraryFileRecord,
    add_file,
    check_file_name,
    check_folder,
    check_sha256,
    check_tags,
    find_file,
    get_blob,
    get_file,
    list_files,
    list_folders,
    put_blob,
    remove_file,
    update_file,
)
from bambufarm.storage.paging import DEFAULT_LIMIT, Page

logger = logging.getLogger(__name__)

# A 20-hour multi-colour print is ~150 MB of G-code, ~30 MB once deflated; 256 MiB leaves
# room for many plates without letting one upload fill a Raspberry Pi's SD card.
DEFAULT_MAX_BYTES: Final = 256 * 1024**2
# The most a local file read or write takes per step on the loop (see the module docstring).
CHUNK_BYTES: Final = 1024**2
# Bambu plate thumbnails are 512x512 PNGs of ~50-200 KB.
MAX_THUMBNAIL_BYTES: Final = 4 * 1024**2
# An upload's temporary file untouched this long belongs to a process that died.
STALE_UPLOAD_S: Final = 3600.0
SUFFIX: Final = ".gcode.3mf"
_PART: Final = ".part"

# What the library hands out: an entry with its content's metadata.
LibraryFile: TypeAlias = LibraryFileRecord


class UploadTooLarge(UnsafeArchiveError):  # noqa: N818 - named for what happened
    """An upload larger than the library's cap; nothing of it was kept."""


class LibraryDiskError(StorageError):
    """The library directory cannot be written or read (disk full, permissions, file gone)."""


@dataclass(frozen=True, slots=True)
class _Staged:
    path: Path
    sha256: str
    size: int


class Library:
    """Sliced files stored by content under `root`, with their metadata in `db`."""

    def __init__(
        self,
        root: Path,
        db: Database,
        *,
        limits: ArchiveLimits = DEFAULT_LIMITS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._root = root
        self._db = db
        self._limits = limits
        self._max_bytes = max_bytes
        self._clock = clock

    @property
    def root(self) -> Path:
        """The directory holding the files."""
        return self._root

    def path_of(self, sha256: str) -> Path:
        """Where the content with this hash is stored (whether or not it is there)."""
        sha = check_sha256(sha256)  # 64 hex digits: nothing that could leave the root
        return self._root / sha[:2] / f"{sha}{SUFFIX}"

    async def add(
        self,
        source: AsyncIterable[bytes] | os.PathLike[str],
        *,
        name: str,
        folder: str = "",
        tags: Iterable[str] = (),
        max_bytes: int | None = None,
    ) -> LibraryFile:
        """Store a sliced file under `name` in `folder`; the same name and content is a no-op.

        Refused with the reader's reason (`ThreeMFError`, `UnsafeArchiveError`,
        `NotSlicedError`, `ModelError`), `UploadTooLarge`, or `DuplicateFileName` when the
        folder already has that name for other content.
        """
        name, folder, tag_list = check_file_name(name), check_folder(folder), check_tags(tags)
        cap = self._max_bytes if max_bytes is None else max_bytes
        staged = await self._stage(source, cap)
        try:
            metadata = self._check(staged.path)
            async with self._db.session() as session:
                await put_blob(session, staged.sha256, staged.size, metadata, now=self._clock())
                existing = await find_file(session, folder=folder, name=name)
                if existing is not None and existing.sha256 == staged.sha256:
                    self._install(staged)  # also restores a file lost from disk
                    return existing
                record = await add_file(
                    session, staged.sha256, name=name, folder=folder, tags=tag_list,
                    now=self._clock(),
                )  # fmt: skip
                # Moved into place while the content's row is locked (or, on SQLite, while
                # this transaction holds the write lock), so a concurrent delete of the same
                # content cannot remove the file between this rename and the commit.
                self._install(staged)
        finally:
            _remove_quietly(staged.path)
        logger.info("library: added %s as %r (%d bytes)", staged.sha256[:12], name, staged.size)
        return record

    async def get(self, file_id: int) -> LibraryFile:
        """The entry with this id (`LibraryFileNotFound`)."""
        async with self._db.session(readonly=True) as session:
            return await get_file(session, file_id)

    async def content(self, sha256: str) -> BlobRecord:
        """The stored content with this hash and its metadata (`BlobNotFound`)."""
        async with self._db.session(readonly=True) as session:
            return await get_blob(session, sha256)

    async def list(
        self,
        *,
        folder: str | None = None,
        tag: str | None = None,
        search: str | None = None,
        printer_model: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[LibraryFile]:
        """Entries by folder and name, filtered by folder, tag, name text and printer model."""
        async with self._db.session(readonly=True) as session:
            return await list_files(
                session, folder=folder, tag=tag, search=search, printer_model=printer_model,
                offset=offset, limit=limit,
            )  # fmt: skip

    async def folders(self) -> tuple[str, ...]:
        """Every folder holding files (and their parents), sorted."""
        async with self._db.session(readonly=True) as session:
            return await list_folders(session)

    async def rename(self, file_id: int, name: str) -> LibraryFile:
        """Give an entry a new name in its folder (`DuplicateFileName` if taken)."""
        return await self._update(file_id, FileChanges(name=name))

    async def move(self, file_id: int, folder: str) -> LibraryFile:
        """Move an entry to another folder ("" is the top)."""
        return await self._update(file_id, FileChanges(folder=folder))

    async def tag(self, file_id: int, tags: Iterable[str]) -> LibraryFile:
        """Replace an entry's tags."""
        return await self._update(file_id, FileChanges(tags=check_tags(tags)))

    async def delete(self, file_id: int) -> None:
        """Delete an entry, and its bytes with the last entry (`FileInUse` while jobs need them)."""
        async with self._db.session() as session:
            removed = await remove_file(session, file_id, busy_states=UNFINISHED)
            if removed.blob_removed:
                # Unlinked before the commit, while the row lock (or SQLite's write lock) keeps
                # a concurrent add of the same content waiting. Should the commit then fail, the
                # row outlives its file: `local_path` says so, and adding the file restores it.
                self._unlink(removed.file.sha256)
        logger.info("library: deleted %r (file %s)", removed.file.name, removed.file.sha256[:12])

    async def local_path(self, sha256: str) -> Path:
        """The path of a stored content for an upload to a printer (`LibraryDiskError` if gone)."""
        blob = await self.content(sha256)
        path = self.path_of(blob.sha256)
        if not path.is_file():
            raise LibraryDiskError(
                f"the library file {path} is missing from disk; add the file again to restore it"
            )
        return path

    async def thumbnail(
        self, sha256: str, plate: int, *, max_bytes: int = MAX_THUMBNAIL_BYTES
    ) -> bytes:
        """One plate's PNG thumbnail (`ThreeMFError` when the plate has none)."""
        blob = await self.content(sha256)
        entry = blob.metadata.plate(plate).thumbnail_path
        if entry is None:
            raise ThreeMFError(f"plate {plate} of this file has no thumbnail")
        path = await self.local_path(blob.sha256)
        try:
            return read_entry(path, entry, max_bytes=max_bytes, limits=self._limits)
        except OSError as err:
            raise LibraryDiskError(f"the library file {path} cannot be read: {err}") from err

    async def remove_stale_uploads(self) -> int:
        """Delete temporary upload files left by a process that died; returns how many."""
        removed = 0
        cutoff = time.time() - STALE_UPLOAD_S
        try:
            candidates = list(self._tmp.glob(f"*{_PART}"))
        except OSError as err:
            raise LibraryDiskError(f"the library directory {self._tmp} cannot be read") from err
        for path in candidates:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another process cleaned it up first
            except OSError as err:
                raise LibraryDiskError(f"stale upload {path} cannot be removed: {err}") from err
        return removed

    @property
    def _tmp(self) -> Path:
        return self._root / "tmp"

    async def _update(self, file_id: int, changes: FileChanges) -> LibraryFile:
        async with self._db.session() as session:
            return await update_file(session, file_id, changes, now=self._clock())

    async def _stage(self, source: AsyncIterable[bytes] | os.PathLike[str], cap: int) -> _Staged:
        """Copy `source` into a new temporary file, hashing it; nothing is left on failure."""
        path = self._tmp / f"upload-{uuid4().hex}{_PART}"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            out = path.open("xb")
        except OSError as err:
            raise _disk_error(self._tmp, err) from err
        try:
            with out:
                return await _copy(source, out, path, cap)
        except BaseException:
            # Also on cancellation: a client that hangs up mid-upload leaves nothing behind.
            _remove_quietly(path)
            raise

    def _check(self, path: Path) -> ThreeMF:
        """The staged file's metadata if it is a safe, sliced 3MF for a known printer model."""
        try:
            metadata = read_3mf(path, limits=self._limits).require_sliced()
        except OSError as err:
            raise _disk_error(path, err) from err
        code = metadata.printer_model_id
        if code is None:
            raise ModelError(
                "the file does not say which printer model it was sliced for; slice it again "
                "in Bambu Studio or OrcaSlicer with a Bambu Lab printer selected"
            )
        try:
            model_by_code(code)
        except ModelError:
            raise ModelError(
                f"the file is sliced for printer model {code!r}, which this farm does not "
                "know; slice it for one of its printers"
            ) from None
        return metadata

    def _install(self, staged: _Staged) -> None:
        final = self.path_of(staged.sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            # Atomic on one file system (tmp/ is inside root): readers see old or new bytes,
            # and both are the same content.
            staged.path.replace(final)
        except OSError as err:
            raise _disk_error(final, err) from err

    def _unlink(self, sha256: str) -> None:
        path = self.path_of(sha256)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise _disk_error(path, err) from err


async def _copy(
    source: AsyncIterable[bytes] | os.PathLike[str], out: BinaryIO, path: Path, cap: int
) -> _Staged:
    """Write `source` to `out` chunk by chunk, hashing it and refusing more than `cap` bytes."""
    digest = hashlib.sha256()
    size = 0
    async with aclosing(_chunks(source)) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise UploadTooLarge(
                    f"the file is larger than the library's limit of {_mib(cap)}; "
                    "raise the limit or split the plates into smaller files"
                )
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as err:
                raise _disk_error(path, err) from err
    if size == 0:
        raise ThreeMFError("the file is empty; upload a sliced .gcode.3mf")
    return _Staged(path, digest.hexdigest(), size)


async def _chunks(source: AsyncIterable[bytes] | os.PathLike[str]) -> AsyncGenerator[bytes, None]:
    """The source's bytes in chunks; a local file is read 1 MiB per step, yielding between."""
    if isinstance(source, AsyncIterable):
        async for chunk in source:
            # A source may hand over one huge chunk: write it 1 MiB per step all the same.
            view = memoryview(chunk)
            for start in range(0, len(view), CHUNK_BYTES):
                yield bytes(view[start : start + CHUNK_BYTES])
                await asyncio.sleep(0)
        return
    path = Path(source)
    try:
        # A local file read 1 MiB per step on the loop, as the module docstring explains.
        handle: BinaryIO = path.open("rb")  # noqa: ASYNC230
    except OSError as err:
        raise LibraryDiskError(f"{path} cannot be read: {err.strerror or err}") from err
    with handle:
        while True:
            try:
                chunk = handle.read(CHUNK_BYTES)
            except OSError as err:
                raise LibraryDiskError(f"{path} cannot be read: {err.strerror or err}") from err
            if not chunk:
                return
            yield chunk
            await asyncio.sleep(0)  # let other tasks run between 1 MiB reads


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        # Only a leftover temporary file: `remove_stale_uploads` gets it later.
        logger.warning("library: temporary file %s cannot be removed: %s", path, err)


def _disk_error(path: Path, err: OSError) -> LibraryDiskError:
    return LibraryDiskError(
        f"the library directory cannot be written at {path}: {err.strerror or err}; "
        "free space or fix its permissions and retry"
    )


def _mib(size: int) -> str:
    return f"{size / 1024**2:g} MiB"
