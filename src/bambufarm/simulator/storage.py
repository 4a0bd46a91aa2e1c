"""A simulated printer's storage (SD card / USB stick): confined paths, a capacity, atomic uploads.

Every name a client sends is an FTP-style path (absolute from the storage root, or relative to
a current directory). It is normalised here and never leaves `root`: `..` above the root, NUL or
line breaks, and names of in-flight upload files are refused with a typed error.

Uploads go to a hidden temporary file in the target directory and are renamed over the target
only on `commit()`, so a failed, aborted or over-capacity upload leaves no partial file.

    StorageError            an operation that cannot be done (missing file, not empty, ...)
    ├── PathEscapeError     a path that would leave the storage root
    ├── InvalidNameError    a name with NUL / CR / LF, or the name of an in-flight upload
    └── StorageFullError    a write that would exceed the capacity
"""

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

# Directories a printer's SD card carries from the factory (protocol.md §2.2).
STANDARD_DIRS = ("cache", "model", "timelapse")

# In-flight uploads are dotfiles: hidden from listings and refused as names.
TEMP_PREFIX = ".upload-"

# What a printer's SD card sustains over FTPS (protocol.md §2.1: ~50-150 KB/s seen on P1/A1);
# a realistic profile passes it as the write-rate cap, tests run uncapped.
SD_CARD_BYTES_PER_S = 160_000

_FORBIDDEN_CHARS = frozenset("\x00\r\n")


class StorageError(Exception):
    """A storage operation that cannot be done; the message says why."""


class PathEscapeError(StorageError):
    """A path that would leave the storage root."""


class InvalidNameError(StorageError):
    """A name that cannot be stored: control characters or an in-flight upload's name."""


class StorageFullError(StorageError):
    """A write that would exceed the storage capacity."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or directory as a listing shows it."""

    name: str
    size: int
    mtime: float
    is_dir: bool


def normalize_path(cwd: str, name: str) -> str:
    """Join an FTP path onto `cwd` and normalise it to `/a/b`; raise if it leaves the root."""
    for text in (cwd, name):
        if _FORBIDDEN_CHARS.intersection(text):
            raise InvalidNameError(f"path {text!r} contains NUL, CR or LF")
    joined = name if name.startswith("/") else f"{cwd}/{name}"
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathEscapeError(f"path {name!r} leaves the storage root")
            parts.pop()
            continue
        if part.startswith(TEMP_PREFIX):
            raise InvalidNameError(f"name {part!r} is reserved for uploads in progress")
        parts.append(part)
    return "/" + "/".join(parts)


class WriteThrottle:
    """Paces writes to a byte rate (an SD card takes ~160 KB/s); says how long to wait."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rate: int | None = None
        self._start = 0.0
        self._bytes = 0

    def delay_after(self, nbytes: int, rate: int | None) -> float:
        """Count `nbytes` just written at `rate` B/s (None = uncapped); return seconds to wait."""
        if rate is None or rate <= 0:
            self._rate = None
            return 0.0
        if rate != self._rate:
            # A new rate (a fault switched on mid-transfer) starts a fresh budget from now.
            self._rate = rate
            self._start = self._clock()
            self._bytes = 0
        self._bytes += nbytes
        due = self._start + self._bytes / rate
        return max(0.0, due - self._clock())


class Upload:
    """One upload in progress: write chunks, then `commit()`; leaving without commit discards."""

    def __init__(self, storage: "PrinterStorage", target: Path, temp: Path, fh: BinaryIO) -> None:
        self._storage = storage
        self._target = target
        self._temp = temp
        self._fh: BinaryIO | None = fh
        self.written = 0

    @property
    def temp_path(self) -> Path:
        """The hidden file the bytes go to until commit (for checks before committing)."""
        return self._temp

    def flush(self) -> None:
        """Push buffered bytes to the temporary file so that it can be read back."""
        if self._fh is not None:
            self._fh.flush()

    def write(self, data: bytes) -> None:
        """Append `data`; raise StorageFullError (and write nothing) past the capacity."""
        if self._fh is None:
            raise StorageError("upload is already finished")
        self._storage._reserve(len(data))
        self.written += len(data)
        self._fh.write(data)

    def commit(self) -> None:
        """Flush to disk and atomically rename the upload over its target name."""
        if self._fh is None:
            raise StorageError("upload is already finished")
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            replaced = self._target.stat().st_size if self._target.is_file() else 0
            os.replace(self._temp, self._target)
        except OSError as err:
            self._discard()
            raise StorageError(f"cannot store {self._target.name}: {err.strerror}") from err
        self._storage._release(replaced)

    def abort(self) -> None:
        """Drop the upload and its temporary file; a no-op after commit or abort."""
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        fh.close()
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()
        self._storage._release(self.written)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class PrinterStorage:
    """A directory standing in for a printer's SD card, with a capacity in bytes."""

    def __init__(self, root: Path, *, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._capacity = capacity_bytes
        for name in STANDARD_DIRS:
            (self._root / name).mkdir(exist_ok=True)
        self._used = self._scan()

    @property
    def root(self) -> Path:
        """The directory on the host that holds the files."""
        return self._root

    @property
    def total_bytes(self) -> int:
        """The capacity."""
        return self._capacity

    def used_bytes(self) -> int:
        """Bytes in files (uploads in progress included), re-counted from disk."""
        self._used = self._scan()
        return self._used

    def free_bytes(self) -> int:
        """Capacity not yet used."""
        return max(0, self._capacity - self.used_bytes())

    def resolve(self, cwd: str, name: str) -> Path:
        """Host path of `name` seen from FTP directory `cwd`; raises if it leaves the root."""
        relative = normalize_path(cwd, name).lstrip("/")
        path = self._root / relative if relative else self._root
        # A symlink placed inside the root must not lead outside it either.
        if not path.resolve().is_relative_to(self._root):
            raise PathEscapeError(f"path {name!r} leaves the storage root")
        return path

    def exists(self, name: str) -> bool:
        """Whether a file or directory `name` (from the root) exists."""
        return self.resolve("/", name).exists()

    def stat(self, name: str) -> Entry:
        """Size, mtime and kind of `name`."""
        path = self.resolve("/", name)
        try:
            st = path.stat()
        except OSError as err:
            raise StorageError(f"no such file or directory: {name}") from err
        return Entry(path.name, 0 if path.is_dir() else st.st_size, st.st_mtime, path.is_dir())

    def list_dir(self, name: str) -> tuple[Entry, ...]:
        """Entries of directory `name`, sorted by name, hidden files left out."""
        path = self.resolve("/", name)
        if not path.is_dir():
            raise StorageError(f"not a directory: {name}")
        entries = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):  # removed while we listed
                st = child.stat()
                is_dir = child.is_dir()
                entries.append(Entry(child.name, 0 if is_dir else st.st_size, st.st_mtime, is_dir))
        return tuple(entries)

    def open_for_read(self, name: str) -> BinaryIO:
        """Open file `name` for reading in binary mode."""
        path = self.resolve("/", name)
        if not path.is_file():
            raise StorageError(f"no such file: {name}")
        try:
            return path.open("rb")
        except OSError as err:
            raise StorageError(f"cannot open {name}: {err.strerror}") from err

    def begin_upload(self, name: str) -> Upload:
        """Start writing file `name` through a temporary file in the same directory."""
        target = self.resolve("/", name)
        if target == self._root or target.is_dir():
            raise StorageError(f"is a directory: {name}")
        if not target.parent.is_dir():
            raise StorageError(f"no such directory: {target.parent.name}")
        temp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"
        try:
            fh = temp.open("xb")
        except OSError as err:
            raise StorageError(f"cannot create {name}: {err.strerror}") from err
        self._used = self._scan()
        return Upload(self, target, temp, fh)

    def write_file(self, name: str, data: bytes) -> None:
        """Store `data` as file `name` in one step (capacity-checked, atomic)."""
        with self.begin_upload(name) as upload:
            upload.write(data)
            upload.commit()

    def delete(self, name: str) -> None:
        """Remove file `name`."""
        path = self.resolve("/", name)
        if not path.is_file():
            raise StorageError(f"no such file: {name}")
        with _as_storage_error(f"cannot delete {name}"):
            path.unlink()
        self._used = self._scan()

    def mkdir(self, name: str) -> None:
        """Create directory `name` (its parent must exist)."""
        path = self.resolve("/", name)
        with _as_storage_error(f"cannot create directory {name}"):
            path.mkdir()

    def rmdir(self, name: str) -> None:
        """Remove empty directory `name`."""
        path = self.resolve("/", name)
        if path == self._root:
            raise StorageError("cannot remove the storage root")
        with _as_storage_error(f"cannot remove directory {name}"):
            path.rmdir()

    def rename(self, source: str, target: str) -> None:
        """Rename `source` to `target`; an existing target file is replaced."""
        src = self.resolve("/", source)
        dst = self.resolve("/", target)
        if self._root in (src, dst):
            raise StorageError("cannot rename the storage root")
        if not src.exists():
            raise StorageError(f"no such file or directory: {source}")
        with _as_storage_error(f"cannot rename {source} to {target}"):
            src.rename(dst)
        self._used = self._scan()

    def _reserve(self, nbytes: int) -> None:
        if self._used + nbytes > self._capacity:
            raise StorageFullError(
                f"storage full: {self._capacity - self._used} bytes free, {nbytes} more needed"
            )
        self._used += nbytes

    def _release(self, nbytes: int) -> None:
        self._used = max(0, self._used - nbytes)

    def _scan(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self._root):
            for file in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, file)).st_size
        return total


@contextlib.contextmanager
def _as_storage_error(what: str) -> Iterator[None]:
    """Turn an OSError from the file system into a StorageError that says what failed."""
    try:
        yield
    except OSError as err:
        raise StorageError(f"{what}: {err.strerror}") from err
