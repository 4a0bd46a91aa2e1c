"""The print library's rows: file contents (blobs) by sha256, and the named entries over them.

A blob is one distinct `.gcode.3mf` content with its parsed metadata (`ThreeMF`, kept as JSON
and handed back as the same frozen dataclasses). An entry is a name in a folder, with tags,
pointing at a blob; several entries may share one. Files on disk are `bambufarm.jobs.library`'s
business: these functions only keep the rows, in the caller's transaction.

Names are display names, never paths: the bytes on disk are named by their hash, so a name may
hold any printable text except `/` and `\\`. Folders are `/`-separated names ("" is the top).
"""

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code
from bambufarm.protocol.threemf import Plate, PlateFilament, PlateObject, ThreeMF
from bambufarm.storage.errors import AlreadyExists, InvalidValue, NotFound, StorageError
from bambufarm.storage.job_tables import JobRow, LibraryBlobRow, LibraryFileRow, LibraryTagRow
from bambufarm.storage.paging import DEFAULT_LIMIT, Page, check_window
from bambufarm.storage.unset import UNSET, Unset

MAX_NAME: Final = 255
MAX_FOLDER: Final = 255
MAX_TAG: Final = 64
# A tag list is for filtering ("customer-a", "petg", "rush"); dozens would be a misuse.
MAX_TAGS: Final = 32
_SHA256_HEX: Final = frozenset("0123456789abcdef")
_META_VERSION: Final = 1


class LibraryFileNotFound(NotFound):
    """No library entry with this id."""


class BlobNotFound(NotFound):
    """No stored file content with this sha256."""


class DuplicateFileName(AlreadyExists):
    """Another file already has this name in this folder."""


class FileInUse(StorageError):  # noqa: N818 - named for what happened
    """The last entry of a file that unfinished jobs still need cannot be deleted."""


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """One stored file content and what its 3MF says."""

    sha256: str
    size: int
    printer_model: str  # model code, e.g. "C12"
    nozzle_diameter: float | None
    plate_count: int
    prediction_s: int | None  # all plates
    weight_g: float | None  # all plates
    metadata: ThreeMF
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LibraryFileRecord:
    """A library entry: its name, folder and tags, and the content it names."""

    id: int
    name: str
    folder: str
    tags: tuple[str, ...]  # sorted
    blob: BlobRecord
    created_at: datetime
    updated_at: datetime

    @property
    def sha256(self) -> str:
        """The content's hash: what jobs and the disk name it by."""
        return self.blob.sha256


@dataclass(frozen=True, slots=True)
class FileChanges:
    """What to change on an entry; UNSET keeps a field."""

    name: str | Unset = UNSET
    folder: str | Unset = UNSET
    tags: tuple[str, ...] | Unset = UNSET


@dataclass(frozen=True, slots=True)
class RemovedFile:
    """An entry that was deleted, and whether its content went with it (no entry left)."""

    file: LibraryFileRecord
    blob_removed: bool


def check_sha256(sha256: str) -> str:
    """A lower-case 64-digit hex sha256, or `InvalidValue`."""
    value = sha256.strip().lower()
    if len(value) != 64 or not set(value) <= _SHA256_HEX:
        raise InvalidValue(f"{sha256[:80]!r} is not a sha256 (64 hex digits)")
    return value


def check_file_name(name: str) -> str:
    """A display name: 1-255 printable characters without `/` or `\\`, trimmed."""
    value = name.strip()
    if not 0 < len(value) <= MAX_NAME:
        raise InvalidValue(f"file name must be 1 to {MAX_NAME} characters, not {len(value)}")
    if not value.isprintable() or "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidValue(
            f"file name {value[:80]!r} must be printable text without '/' or '\\' "
            "(put files in folders with the folder field)"
        )
    return value


def check_folder(folder: str) -> str:
    """A folder path: names joined by `/`, without empty, `.` or `..` parts; "" is the top."""
    parts = [part.strip() for part in folder.strip().strip("/").split("/")]
    if parts == [""]:
        return ""
    for part in parts:
        if not part or part in (".", "..") or not part.isprintable() or "\\" in part:
            raise InvalidValue(
                f"folder {folder[:80]!r} must be names separated by '/', without empty, "
                "'.' or '..' parts"
            )
    value = "/".join(parts)
    if len(value) > MAX_FOLDER:
        raise InvalidValue(f"folder must be at most {MAX_FOLDER} characters, not {len(value)}")
    return value


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags trimmed, de-duplicated and sorted; each 1-64 printable characters."""
    values = set()
    for tag in tags:
        value = tag.strip()
        if not 0 < len(value) <= MAX_TAG or not value.isprintable():
            raise InvalidValue(f"tag {tag[:80]!r} must be 1 to {MAX_TAG} printable characters")
        values.add(value)
    if len(values) > MAX_TAGS:
        raise InvalidValue(f"a file can have at most {MAX_TAGS} tags, not {len(values)}")
    return tuple(sorted(values))


async def put_blob(
    session: AsyncSession, sha256: str, size: int, metadata: ThreeMF, *, now: datetime
) -> BlobRecord:
    """Store a content's row unless it exists, and lock it for the rest of the transaction."""
    sha = check_sha256(sha256)
    if metadata.printer_model_id is None:
        raise InvalidValue("a library file must name the printer model it was sliced for")
    try:
        model = model_by_code(metadata.printer_model_id).code
    except ModelError as err:
        raise InvalidValue(str(err)) from None
    values = {
        "sha256": sha,
        "size": size,
        "printer_model": model,
        "nozzle_diameter": metadata.nozzle_diameter,
        "plate_count": len(metadata.plates),
        "prediction_s": _total_s(p.prediction_s for p in metadata.plates),
        "weight_g": _total_g(p.weight_g for p in metadata.plates),
        "meta": metadata_to_json(metadata),
        "created_at": now,
    }
    # Two uploads of one content may race (several server processes): the loser's insert is
    # a no-op instead of an integrity error, and both go on with the winner's row.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            postgresql.insert(LibraryBlobRow).values(values).on_conflict_do_nothing()
        )
    else:
        await session.execute(sqlite.insert(LibraryBlobRow).values(values).on_conflict_do_nothing())
    blob = await lock_blob(session, sha)
    if blob is None:  # deleted between the two statements by a racing delete on PostgreSQL
        raise StorageError(f"file {sha} was deleted while it was being added; add it again")
    return blob


async def lock_blob(session: AsyncSession, sha256: str) -> BlobRecord | None:
    """The content's row, locked until the transaction ends (PostgreSQL row lock); None if absent.

    SQLite needs no row lock: every write transaction holds the database's single write lock.
    """
    row = await session.scalar(
        select(LibraryBlobRow)
        .where(LibraryBlobRow.sha256 == check_sha256(sha256))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return _blob(row) if row is not None else None


async def get_blob(session: AsyncSession, sha256: str) -> BlobRecord:
    """The content with this hash; `BlobNotFound` if the library has none."""
    row = await session.get(LibraryBlobRow, check_sha256(sha256))
    if row is None:
        raise BlobNotFound(f"no file with sha256 {sha256[:64]} in the library")
    return _blob(row)


async def get_blobs(session: AsyncSession, sha256s: Iterable[str]) -> Mapping[str, BlobRecord]:
    """The contents with these hashes (those that exist), by hash: one query for a queue."""
    wanted = sorted({check_sha256(s) for s in sha256s})
    if not wanted:
        return MappingProxyType({})
    rows = await session.scalars(select(LibraryBlobRow).where(LibraryBlobRow.sha256.in_(wanted)))
    return MappingProxyType({row.sha256: _blob(row) for row in rows})


async def add_file(
    session: AsyncSession,
    sha256: str,
    *,
    name: str,
    folder: str = "",
    tags: Iterable[str] = (),
    now: datetime | None = None,
) -> LibraryFileRecord:
    """A new entry for a stored content; `DuplicateFileName` if the folder has that name."""
    blob = await get_blob(session, sha256)
    name, folder, tag_list = check_file_name(name), check_folder(folder), check_tags(tags)
    if await find_file(session, folder=folder, name=name) is not None:
        raise _duplicate(folder, name)
    at = now or datetime.now(UTC)
    row = LibraryFileRow(sha256=blob.sha256, name=name, folder=folder, created_at=at, updated_at=at)
    session.add(row)
    await session.flush()
    await _set_tags(session, row.id, tag_list)
    return _file(row, blob, tag_list)


async def find_file(session: AsyncSession, *, folder: str, name: str) -> LibraryFileRecord | None:
    """The entry with this name in this folder, or None."""
    row = await session.scalar(
        select(LibraryFileRow).where(
            LibraryFileRow.folder == check_folder(folder),
            LibraryFileRow.name == check_file_name(name),
        )
    )
    return await _load(session, row) if row is not None else None


async def get_file(session: AsyncSession, file_id: int) -> LibraryFileRecord:
    """The entry with this id; `LibraryFileNotFound` if there is none."""
    return await _load(session, await _file_row(session, file_id))


async def list_files(
    session: AsyncSession,
    *,
    folder: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    printer_model: str | None = None,
    sha256: str | None = None,
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> Page[LibraryFileRecord]:
    """Entries by folder then name; `folder` lists one folder only (not its subfolders)."""
    check_window(offset, limit)
    query = select(LibraryFileRow, LibraryBlobRow).join(
        LibraryBlobRow, LibraryBlobRow.sha256 == LibraryFileRow.sha256
    )
    if folder is not None:
        query = query.where(LibraryFileRow.folder == check_folder(folder))
    if tag is not None:
        tagged = select(LibraryTagRow.file_id).where(LibraryTagRow.tag == tag.strip())
        query = query.where(LibraryFileRow.id.in_(tagged))
    if search:
        query = query.where(LibraryFileRow.name.icontains(search, autoescape=True))
    if printer_model is not None:
        query = query.where(LibraryBlobRow.printer_model == printer_model)
    if sha256 is not None:
        query = query.where(LibraryFileRow.sha256 == check_sha256(sha256))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    ordered = query.order_by(LibraryFileRow.folder, LibraryFileRow.name, LibraryFileRow.id)
    pairs = list(await session.execute(ordered.offset(offset).limit(limit)))
    tags = await _tags_of(session, [file_row.id for file_row, _ in pairs])
    items = tuple(
        _file(file_row, _blob(blob_row), tags.get(file_row.id, ())) for file_row, blob_row in pairs
    )
    return Page(items, total or 0, offset, limit)


async def list_folders(session: AsyncSession) -> tuple[str, ...]:
    """Every folder that holds a file, and their parents, sorted; "" (the top) is not listed."""
    folders: set[str] = set()
    for folder in await session.scalars(select(LibraryFileRow.folder).distinct()):
        parts = folder.split("/") if folder else []
        folders.update("/".join(parts[:n]) for n in range(1, len(parts) + 1))
    return tuple(sorted(folders))


async def update_file(
    session: AsyncSession, file_id: int, changes: FileChanges, *, now: datetime | None = None
) -> LibraryFileRecord:
    """Rename, move or retag an entry; `DuplicateFileName` if the new place is taken."""
    row = await _file_row(session, file_id)
    name = row.name if isinstance(changes.name, Unset) else check_file_name(changes.name)
    folder = row.folder if isinstance(changes.folder, Unset) else check_folder(changes.folder)
    if (name, folder) != (row.name, row.folder):
        other = await find_file(session, folder=folder, name=name)
        if other is not None and other.id != row.id:
            raise _duplicate(folder, name)
        row.name, row.folder = name, folder
    if not isinstance(changes.tags, Unset):
        await _set_tags(session, row.id, check_tags(changes.tags))
    row.updated_at = now or datetime.now(UTC)
    await session.flush()
    return await _load(session, row)


async def remove_file(
    session: AsyncSession, file_id: int, *, busy_states: Collection[str]
) -> RemovedFile:
    """Delete an entry, and its content's row when no entry is left.

    The content's row is locked first, so a job created at the same time either sees the
    content (and this refuses) or fails its foreign key. `FileInUse` when this is the last
    entry and jobs in `busy_states` print the content.
    """
    record = await get_file(session, file_id)
    await lock_blob(session, record.sha256)
    others = await session.scalar(
        select(func.count())
        .select_from(LibraryFileRow)
        .where(LibraryFileRow.sha256 == record.sha256, LibraryFileRow.id != file_id)
    )
    if others:
        await session.execute(delete(LibraryFileRow).where(LibraryFileRow.id == file_id))
        return RemovedFile(record, blob_removed=False)
    busy = list(
        await session.scalars(
            select(JobRow.id)
            .where(
                JobRow.file_sha256 == record.sha256,
                JobRow.state.in_(sorted(str(s) for s in busy_states)),
            )
            .order_by(JobRow.id)
            .limit(11)
        )
    )
    if busy:
        shown = ", ".join(str(i) for i in busy[:10]) + (", …" if len(busy) > 10 else "")
        raise FileInUse(
            f"{record.name!r} is needed by unfinished jobs ({shown}); cancel them or let them "
            "finish, then delete it"
        )
    await session.execute(delete(LibraryFileRow).where(LibraryFileRow.id == file_id))
    # Finished jobs keep their name and lose the file (file_sha256 SET NULL by the schema).
    await session.execute(delete(LibraryBlobRow).where(LibraryBlobRow.sha256 == record.sha256))
    return RemovedFile(record, blob_removed=True)


def metadata_to_json(metadata: ThreeMF) -> dict[str, Any]:
    """A 3MF's metadata as a JSON object (tuples become lists), tagged with its format version."""
    return {"v": _META_VERSION, **dataclasses.asdict(metadata)}


def metadata_from_json(data: Mapping[str, Any]) -> ThreeMF:
    """The `ThreeMF` that `metadata_to_json` stored; `StorageError` if the JSON is damaged."""
    if data.get("v") != _META_VERSION:
        raise StorageError(
            f"stored 3MF metadata has format {data.get('v')!r}, not {_META_VERSION}; it was "
            "written by another bambufarm version: delete the file and add it again"
        )
    try:
        return ThreeMF(
            plates=tuple(_plate(p) for p in data["plates"]),
            sliced=bool(data["sliced"]),
            printer_model_id=data["printer_model_id"],
            nozzle_diameter=data["nozzle_diameter"],
            application=data["application"],
            client_version=data["client_version"],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise StorageError(
            f"stored 3MF metadata is damaged ({type(err).__name__}: {err}); delete the file "
            "and add it again"
        ) from None


def _plate(p: Mapping[str, Any]) -> Plate:
    return Plate(
        index=int(p["index"]),
        gcode_path=str(p["gcode_path"]),
        gcode_size=int(p["gcode_size"]),
        gcode_md5=p["gcode_md5"],
        prediction_s=p["prediction_s"],
        weight_g=p["weight_g"],
        filaments=tuple(
            PlateFilament(
                slot=int(f["slot"]),
                tray_info_idx=f["tray_info_idx"],
                type=f["type"],
                color=f["color"],
                used_g=f["used_g"],
                used_m=f["used_m"],
            )
            for f in p["filaments"]
        ),
        objects=tuple(
            PlateObject(identify_id=int(o["identify_id"]), name=str(o["name"]))
            for o in p["objects"]
        ),
        thumbnail_path=p["thumbnail_path"],
        bed_type=p["bed_type"],
        total_layers=p["total_layers"],
        estimated_time_s=p["estimated_time_s"],
    )


def _total_s(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _total_g(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 3) if known else None


def _duplicate(folder: str, name: str) -> DuplicateFileName:
    where = f"folder {folder!r}" if folder else "the top folder"
    return DuplicateFileName(
        f"{where} already has a file named {name!r}; rename one of them or delete the old one"
    )


async def _file_row(session: AsyncSession, file_id: int) -> LibraryFileRow:
    row = await session.get(LibraryFileRow, file_id)
    if row is None:
        raise LibraryFileNotFound(f"no library file with id {file_id}")
    return row


async def _load(session: AsyncSession, row: LibraryFileRow) -> LibraryFileRecord:
    blob = await get_blob(session, row.sha256)
    tags = await _tags_of(session, [row.id])
    return _file(row, blob, tags.get(row.id, ()))


async def _tags_of(session: AsyncSession, file_ids: list[int]) -> dict[int, tuple[str, ...]]:
    if not file_ids:
        return {}
    found: dict[int, list[str]] = {}
    rows = await session.execute(
        select(LibraryTagRow.file_id, LibraryTagRow.tag)
        .where(LibraryTagRow.file_id.in_(file_ids))
        .order_by(LibraryTagRow.tag)
    )
    for file_id, tag in rows:
        found.setdefault(file_id, []).append(tag)
    return {file_id: tuple(tags) for file_id, tags in found.items()}


async def _set_tags(session: AsyncSession, file_id: int, tags: tuple[str, ...]) -> None:
    await session.execute(delete(LibraryTagRow).where(LibraryTagRow.file_id == file_id))
    if tags:
        await session.execute(
            insert(LibraryTagRow), [{"file_id": file_id, "tag": tag} for tag in tags]
        )


def _blob(row: LibraryBlobRow) -> BlobRecord:
    return BlobRecord(
        sha256=row.sha256,
        size=row.size,
        printer_model=row.printer_model,
        nozzle_diameter=row.nozzle_diameter,
        plate_count=row.plate_count,
        prediction_s=row.prediction_s,
        weight_g=row.weight_g,
        metadata=metadata_from_json(row.meta),
        created_at=row.created_at,
    )


def _file(row: LibraryFileRow, blob: BlobRecord, tags: tuple[str, ...]) -> LibraryFileRecord:
    return LibraryFileRecord(
        id=row.id,
        name=row.name,
        folder=row.folder,
        tags=tags,
        blob=blob,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
