"""Uploads to printers over FTPS: one transfer per printer at a time, a global limit.

A printer's vsFTPd writes to an SD card at ~50-150 KB/s (protocol.md §2.1): two transfers to
one printer only share that and race for its storage, so a per-printer lock serialises them.
Across the fleet a semaphore caps the transfers in flight (default 4), so a dispatch burst to a
hundred printers neither floods the server's uplink nor queues a hundred threads; a transfer
waiting for its printer does not hold one of those slots. The transfers run on a thread pool
owned here and sized to the limit (protocol/ftps.py says why FTPS needs threads).

Errors are fleet errors that name the printer: a refused access code is `AuthFailed`,
everything else `UploadFailed`, with the FTPS error (storage full, transfer broken off, ...) as
`__cause__`. Either way nothing is left under the target name on the printer.
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from bambufarm.fleet.errors import AuthFailed, UploadFailed
from bambufarm.protocol.ftps import (
    FtpsAuthError,
    FtpsClient,
    FtpsError,
    UploadResult,
    ftps_executor,
    shutdown_executor,
)

__all__ = ["UploadResult", "UploadTarget", "Uploader"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 4

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """Where one printer's FTPS server is and how to log in (the context capped at TLS 1.2)."""

    serial: str
    host: str
    port: int
    access_code: str = field(repr=False)
    ssl_context: ssl.SSLContext = field(repr=False)
    # E.g. `lambda sock: fleet.tls.check_peer(serial, sock, policy, pins)`; runs before login.
    verify_peer: Callable[[ssl.SSLSocket], object] | None = field(default=None, repr=False)


class Uploader:
    """Runs uploads to printers: one per printer at a time, `max_concurrent` in all."""

    def __init__(
        self,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        executor_workers: int | None = None,
        timeout: float = 60.0,
        completion_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        workers = max_concurrent if executor_workers is None else executor_workers
        if workers < max_concurrent:
            # Each transfer holds a worker for its whole length: fewer would stall the rest.
            raise ValueError(
                f"executor_workers ({workers}) must be at least max_concurrent ({max_concurrent})"
            )
        self.max_concurrent = max_concurrent
        self._executor = ftps_executor(workers)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._locks: dict[str, asyncio.Lock] = {}
        self._timeout = timeout
        self._completion_timeout = completion_timeout
        self._clock = clock
        self._active: set[str] = set()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def active(self) -> frozenset[str]:
        """Serials of the printers receiving a file right now."""
        return frozenset(self._active)

    def busy(self, serial: str) -> bool:
        """Whether an upload to `serial` is running or waiting for its turn."""
        lock = self._locks.get(serial)
        return lock is not None and lock.locked()

    async def upload(
        self,
        printer: UploadTarget,
        local: Path | bytes,
        remote_name: str,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload `local` to `remote_name` on `printer`, waiting for its turn; measured."""
        serial = printer.serial
        if self._closed:
            raise UploadFailed(f"printer {serial}: the uploader is closed", serial=serial)
        lock = self._locks.setdefault(serial, asyncio.Lock())
        # The printer's lock first: a transfer queued behind its printer holds no global slot.
        async with lock, self._slots:
            self._active.add(serial)
            try:
                return await self._client(printer).upload(local, remote_name, progress=progress)
            except FtpsAuthError as err:
                raise AuthFailed(f"printer {serial}: {err}", serial=serial) from err
            except FtpsError as err:
                raise UploadFailed(
                    f"printer {serial}: upload of {remote_name} failed: {err}", serial=serial
                ) from err
            finally:
                self._active.discard(serial)

    async def aclose(self) -> None:
        """Refuse new uploads and stop the worker threads once running transfers end."""
        self._closed = True
        await shutdown_executor(self._executor)

    def _client(self, printer: UploadTarget) -> FtpsClient:
        return FtpsClient(
            printer.host,
            printer.port,
            printer.access_code,
            printer.ssl_context,
            executor=self._executor,
            timeout=self._timeout,
            completion_timeout=self._completion_timeout,
            verify_peer=printer.verify_peer,
            clock=self._clock,
        )
