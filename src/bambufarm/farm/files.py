"""A printer's storage (SD card, internal storage) over FTPS: list, download, delete.

Each call is one short FTPS session with the fleet's TLS trust for that printer (CA and CN, or
its pin), on a small thread pool of its own (protocol/ftps.py says why FTPS needs threads), so
browsing files never waits behind the uploads of a dispatch burst, nor holds them up.

Remote paths are confined to the printer's storage root: every path is normalised to
`/dir/name`, and `..`, `.` and control characters are refused, so a name from a client can
never walk out of the directory it names. FTPS failures stay `FtpsError`s (the API maps them:
wrong code, not found, storage full, transfer broken off).
"""

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bambufarm.protocol.ftps import FtpsClient, ftps_executor, shutdown_executor
from bambufarm.protocol.ftps_replies import RemoteFile
from bambufarm.storage.errors import InvalidValue

if TYPE_CHECKING:
    from bambufarm.fleet.supervisor import Fleet

logger = logging.getLogger(__name__)

# Browsing is a person clicking: two sessions at once serve a few operators; more would only
# queue on the printers' single-threaded vsFTPd anyway.
FILE_WORKERS: Final = 2
# Listings and deletes answer within a second; downloads of timelapses take minutes.
FILES_TIMEOUT_S: Final = 30.0
MAX_PATH: Final = 1024
DOWNLOAD_PREFIX: Final = "download-"
MAX_PART: Final = 255


@dataclass(frozen=True, slots=True)
class PrinterFile:
    """One entry of a printer directory: its full path, size and time when the printer says."""

    path: str
    name: str
    size: int | None
    modified: datetime | None
    is_dir: bool


def remote_path(path: str, *, allow_root: bool = True) -> str:
    """`path` as `/dir/name` inside the printer's storage; `InvalidValue` if it cannot be."""
    if not isinstance(path, str) or len(path) > MAX_PATH:
        raise InvalidValue(f"a printer file path is at most {MAX_PATH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise InvalidValue("a printer file path must not contain control characters")
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    for part in parts:
        if part in (".", ".."):
            raise InvalidValue(
                f"printer file path {path[:80]!r} must not contain '.' or '..' components"
            )
        if len(part) > MAX_PART:
            raise InvalidValue(f"a printer file name is at most {MAX_PART} characters")
    if not parts and not allow_root:
        raise InvalidValue("give a file path, e.g. /cache/job.gcode.3mf, not the storage root")
    return "/" + "/".join(parts)


class PrinterFiles:
    """List, download and delete files on the fleet's printers over FTPS."""

    def __init__(
        self,
        fleet: "Fleet",
        scratch_dir: Path,
        *,
        workers: int = FILE_WORKERS,
        timeout: float = FILES_TIMEOUT_S,
    ) -> None:
        self._fleet = fleet
        self._scratch = scratch_dir
        self._timeout = timeout
        self._workers = workers
        self._executor = ftps_executor(workers)

    def clean_scratch(self) -> int:
        """Delete downloads a previous run left behind (a client that went away mid-transfer)."""
        removed = 0
        if not self._scratch.is_dir():
            return removed
        for leftover in self._scratch.glob(f"{DOWNLOAD_PREFIX}*"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    async def aclose(self) -> None:
        """Stop the worker threads once running calls end."""
        await shutdown_executor(self._executor)

    async def list(self, serial: str, path: str = "/") -> list[PrinterFile]:
        """The entries of directory `path` on the printer, directories first, then by name."""
        directory = remote_path(path)
        entries = await self._client(serial).list(directory)
        base = directory.rstrip("/")
        files = [_entry(base, entry) for entry in entries]
        return sorted(files, key=lambda f: (not f.is_dir, f.name.lower(), f.name))

    async def download(self, serial: str, path: str) -> Path:
        """Copy the printer's file at `path` to a scratch file; the caller deletes it."""
        remote = remote_path(path, allow_root=False)
        self._scratch.mkdir(parents=True, exist_ok=True)
        local = self._scratch / f"{DOWNLOAD_PREFIX}{serial}-{os.urandom(6).hex()}"
        await self._client(serial).download(remote, local)
        return local

    async def delete(self, serial: str, path: str) -> str:
        """Delete the file at `path` on the printer; returns the normalised path."""
        remote = remote_path(path, allow_root=False)
        await self._client(serial).delete(remote)
        logger.info("printer %s: deleted %s", serial, remote)
        return remote

    def _client(self, serial: str) -> FtpsClient:
        target = self._fleet.upload_target(serial)
        return FtpsClient(
            target.host,
            target.port,
            target.access_code,
            target.ssl_context,
            executor=self._executor,
            timeout=self._timeout,
            verify_peer=target.verify_peer,
        )


def _entry(base: str, entry: RemoteFile) -> PrinterFile:
    return PrinterFile(
        path=f"{base}/{entry.name}",
        name=entry.name,
        size=entry.size,
        modified=entry.modified,
        is_dir=entry.is_dir,
    )
