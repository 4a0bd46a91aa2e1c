"""FTPS client for printers (protocol.md §2): implicit TLS 1.2 with data-channel session reuse.

Why threads: printers run vsFTPd with `require_ssl_reuse=YES`, so every data connection must
resume the control connection's TLS session, and asyncio's TLS has no hook to pass an
`ssl.SSLSession`. So this module drives stdlib `ftplib` (the blocking session in ftps_session)
on a bounded ThreadPoolExecutor that the caller owns; it is the one module of bambufarm that
uses threads (design.md §3, §4.2). The API is async: each call runs one short FTP session
(connect, log in, one action, QUIT) on a worker, progress arrives on the event loop, and a
cancelled call stops its worker at once (see ftps_session.Abort). Replies and listings are read
by the sans-IO ftps_replies.

Uploads go to a hidden temporary name and are renamed onto the final name only when complete,
so a failed or interrupted upload never leaves a partial file under the final name; the
temporary file is then deleted (best effort, reported in the error). A1 firmware may never send
`226` after an upload and P2S may answer `426` for a complete file (protocol.md §2.1), so a
missing or temporary final reply is followed by a `SIZE` check on a fresh session. The access
code is never logged and never appears in an error.
"""

import asyncio
import ftplib
import io
import logging
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from bambufarm.protocol.ftps_replies import (
    FtpsAuthError,
    FtpsError,
    FtpsNotFoundError,
    FtpsSessionReuseError,
    FtpsStorageFullError,
    FtpsTransferError,
    RemoteFile,
    error_for_reply,
    parse_listing,
)
from bambufarm.protocol.ftps_session import (
    CHUNK,
    FAILURES,
    SHORT_WAIT,
    Abort,
    CancelledByCaller,
    Session,
    close_notify,
    quit_quietly,
    remote_size,
)

__all__ = [
    "FtpsAuthError",
    "FtpsClient",
    "FtpsError",
    "FtpsNotFoundError",
    "FtpsSessionReuseError",
    "FtpsStorageFullError",
    "FtpsTransferError",
    "RemoteFile",
    "UploadResult",
    "error_for_reply",
    "ftps_executor",
    "shutdown_executor",
]

logger = logging.getLogger(__name__)

# Hidden while in flight (vsFTPd's LIST leaves dotfiles out); not the simulator's `.upload-`.
TEMP_PREFIX = ".bambufarm-"
TEMP_SUFFIX = ".part"
# Removing a partial upload after a failure: the caller is already waiting for the error.
CLEANUP_TIMEOUT = 10.0

# Everything an upload step may raise, our own checks included.
UPLOAD_FAILURES: tuple[type[BaseException], ...] = (*FAILURES, FtpsError)

T = TypeVar("T")
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class UploadResult:
    """A finished upload: size, seconds from STOR to the printer's confirmation, bytes/s."""

    bytes: int
    seconds: float
    throughput: float


# --- executor -----------------------------------------------------------------------------------


def ftps_executor(max_workers: int) -> ThreadPoolExecutor:
    """A bounded executor for FtpsClient: one worker per transfer that may run at once."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bambufarm-ftps")


async def shutdown_executor(executor: Executor) -> None:
    """Stop `executor`, waiting for running transfers without blocking the event loop."""
    executor.shutdown(wait=False, cancel_futures=True)
    # shutdown(wait=True) joins the workers; run it off the loop (on asyncio's default pool).
    await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)


# --- blocking side (runs on the executor) -------------------------------------------------------


def _send(conn: socket.socket, stream: BinaryIO, total: int, report: Progress, abort: Abort) -> int:
    sent = 0
    while chunk := stream.read(CHUNK):
        conn.sendall(chunk)
        sent += len(chunk)
        report(sent, total)
        if abort.requested:
            raise CancelledByCaller
    return sent


@contextmanager
def _source(local: Path | bytes) -> Iterator[tuple[BinaryIO, int]]:
    if isinstance(local, bytes):
        yield io.BytesIO(local), len(local)
        return
    try:
        stream = local.open("rb")
    except OSError as err:
        raise FtpsError(f"cannot read the file to upload, {local}: {err.strerror}") from err
    with stream:
        yield stream, os.fstat(stream.fileno()).st_size


def _split_remote(remote: str) -> tuple[str, str]:
    if not remote or any(char in remote for char in "\r\n\x00"):
        raise FtpsError(f"remote name {remote!r} must be non-empty without CR, LF or NUL")
    directory, _, name = remote.rpartition("/")
    if not name:
        raise FtpsError(f"remote name {remote!r} names a directory, not a file")
    return (directory + "/" if remote.count("/") else ""), name


# --- the async client ---------------------------------------------------------------------------


class FtpsClient:
    """Async FTPS client for one printer; every call is one short session on `executor`."""

    def __init__(
        self,
        host: str,
        port: int,
        access_code: str,
        ssl_context: ssl.SSLContext,
        *,
        executor: Executor,
        timeout: float = 60.0,
        completion_timeout: float | None = None,
        server_hostname: str | None = None,
        verify_peer: Callable[[ssl.SSLSocket], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ssl_context.maximum_version in (
            ssl.TLSVersion.MAXIMUM_SUPPORTED,
            ssl.TLSVersion.TLSv1_3,
        ):
            # With TLS 1.3 the data session cannot be resumed reliably and uploads lose their
            # tail (protocol.md §12.2); printers speak 1.2.
            raise ValueError(
                "the FTPS ssl_context must be capped at TLS 1.2: "
                "set context.maximum_version = ssl.TLSVersion.TLSv1_2"
            )
        self.host = host
        self.port = port
        self._access_code = access_code
        self._context = ssl_context
        self._executor = executor
        self._timeout = timeout
        # H2D may take 30+ s to send 226 (protocol.md §2.1); A1 firmware may never send it.
        self._completion_timeout = timeout if completion_timeout is None else completion_timeout
        self._server_hostname = host if server_hostname is None else server_hostname
        # E.g. fleet.tls.check_peer (CN == serial, pins); runs on the worker, before login.
        self._verify_peer = verify_peer
        self._clock = clock
        self._wall_clock = wall_clock
        self._where = f"printer {host}:{port}"

    def __repr__(self) -> str:
        return f"FtpsClient({self.host!r}, {self.port})"

    # --- async API ------------------------------------------------------------------------------

    async def upload(
        self,
        local: Path | bytes,
        remote_name: str,
        *,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload a file or bytes to `remote_name`; nothing appears under that name on failure."""
        directory, name = _split_remote(remote_name)
        temp = f"{directory}{TEMP_PREFIX}{secrets.token_hex(4)}-{name}{TEMP_SUFFIX}"
        loop = asyncio.get_running_loop()

        def report(sent: int, total: int) -> None:
            # On the worker thread: hand the call to the loop, where callers expect it.
            if progress is None:
                return
            try:
                loop.call_soon_threadsafe(progress, sent, total)
            except RuntimeError:
                logger.debug("event loop closed: upload progress %d/%d dropped", sent, total)

        result = await self._run(
            lambda abort: self._upload(abort, local, remote_name, temp, report)
        )
        logger.info(
            "uploaded %s to %s: %d bytes in %.2f s (%.0f kB/s)",
            remote_name,
            self._where,
            result.bytes,
            result.seconds,
            result.throughput / 1000,
        )
        return result

    async def download(self, remote: str, local: Path) -> int:
        """Download `remote` into `local` (written to a temporary file, then renamed)."""
        _split_remote(remote)
        return await self._run(lambda abort: self._download(abort, remote, local))

    async def delete(self, remote: str) -> None:
        """Delete the remote file `remote`."""
        _split_remote(remote)
        await self._run(
            lambda abort: self._in_session(
                abort, f"deleting {remote}", lambda session: session.voidcmd(f"DELE {remote}")
            )
        )

    async def size(self, remote: str) -> int:
        """The size in bytes of the remote file `remote`."""
        _split_remote(remote)
        return await self._run(
            lambda abort: self._in_session(
                abort, f"asking the size of {remote}", lambda session: remote_size(session, remote)
            )
        )

    async def list(self, path: str = "/") -> list[RemoteFile]:
        """The entries of the remote directory `path`."""
        if any(char in path for char in "\r\n\x00"):
            raise FtpsError(f"remote path {path!r} must not contain CR, LF or NUL")
        chunks: list[bytes] = []
        await self._run(
            lambda abort: self._in_session(
                abort, f"listing {path}", lambda s: s.read_data(f"LIST {path}", chunks.append)
            )
        )
        data = b"".join(chunks)
        return parse_listing(data, datetime.fromtimestamp(self._wall_clock(), UTC))

    async def _run(self, work: Callable[[Abort], T]) -> T:
        abort = Abort()
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, abort)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            abort.abort()
            future.add_done_callback(self._log_abandoned)
            # Let the worker close its sockets and remove a partial upload before we go.
            await asyncio.wait([future], timeout=CLEANUP_TIMEOUT + SHORT_WAIT)
            raise

    def _log_abandoned(self, future: "asyncio.Future[Any]") -> None:
        # Retrieves the outcome of a call whose caller is gone (no "never retrieved" warning).
        if not future.cancelled() and future.exception() is not None:
            logger.debug("cancelled FTPS call to %s ended: %s", self._where, future.exception())

    # --- blocking side --------------------------------------------------------------------------

    def _connect(self, abort: Abort | None, timeout: float | None = None) -> Session:
        if abort is not None and abort.requested:
            raise CancelledByCaller
        session = Session(self._context, self._timeout if timeout is None else timeout, abort)
        try:
            session.open(
                (self.host, self.port), self._server_hostname, self._access_code, self._verify_peer
            )
        except BaseException:
            session.close()
            raise
        return session

    def _error(self, err: BaseException, action: str) -> FtpsError:
        """Any failure of ftplib, TLS or the socket as a typed FtpsError."""
        where = self._where
        if isinstance(err, FtpsError):
            return err
        if isinstance(err, CancelledByCaller):
            return FtpsError(f"{action} on {where} was cancelled")
        if isinstance(err, ftplib.Error):
            return error_for_reply(str(err), action=action, where=where)
        if isinstance(err, ssl.SSLCertVerificationError):
            return FtpsError(
                f"the TLS certificate of {where} failed verification ({err.verify_message}): "
                "check the configured CA and the printer's serial"
            )
        if isinstance(err, ssl.SSLError):
            return FtpsError(f"TLS with {where} failed while {action}: {err.reason or err}")
        if isinstance(err, TimeoutError):
            return FtpsTransferError(
                f"{where} did not answer within {self._timeout:g} s while {action}: "
                "check that it is on and reachable"
            )
        if isinstance(err, ConnectionRefusedError):
            return FtpsError(
                f"{where} refused the connection while {action}: check the address and that "
                "the printer is on (FTPS listens on port 990)"
            )
        if isinstance(err, EOFError):
            return FtpsTransferError(f"{where} closed the connection while {action}; retry")
        if isinstance(err, OSError):
            return FtpsTransferError(f"connection to {where} failed while {action}: {err}")
        return FtpsError(f"{action} on {where} failed: {err!r}")

    def _in_session(self, abort: Abort, action: str, work: Callable[[Session], T]) -> T:
        """Run `work` in a fresh logged-in session, failures as typed errors."""
        try:
            with self._connect(abort) as session:
                return work(session)
        except FAILURES as err:
            raise self._error(err, action) from err

    def _download(self, abort: Abort, remote: str, local: Path) -> int:
        temp = local.with_name(f".{local.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            with self._connect(abort) as session, temp.open("wb") as out:
                received = session.read_data(f"RETR {remote}", out.write)
            temp.replace(local)
        except FAILURES as err:
            temp.unlink(missing_ok=True)
            raise self._error(err, f"downloading {remote}") from err
        return received

    def _upload(
        self, abort: Abort, local: Path | bytes, remote: str, temp: str, report: Progress
    ) -> UploadResult:
        action = f"uploading {remote}"
        session: Session | None = None
        storing = False
        try:
            with _source(local) as (stream, total):
                session = self._connect(abort)
                started = self._clock()
                storing = True
                doubt = self._store(
                    session, temp, stream=stream, total=total, report=report, abort=abort
                )
                seconds = self._clock() - started
                if doubt is not None:
                    # The reply stream is out of step: check on a fresh session.
                    session.close()
                    session = self._connect(abort)
                    self._verify(session, temp, total, doubt)
                session.rename(temp, remote)
            quit_quietly(session)
        except UPLOAD_FAILURES as err:
            if session is not None:
                session.close()
            error = self._error(err, action)
            if not storing:
                raise error from err
            note = self._remove_partial(temp)
            raise type(error)(f"{error} ({note})") from err
        return UploadResult(total, seconds, total / seconds if seconds > 0 else float(total))

    def _store(
        self,
        session: Session,
        temp: str,
        *,
        stream: BinaryIO,
        total: int,
        report: Progress,
        abort: Abort,
    ) -> str | None:
        """Send the bytes; None once the printer confirms, else what it did instead."""
        conn, _ = session.ntransfercmd(f"STOR {temp}")
        sent = 0
        abort.upload_data(conn)
        try:
            with conn:
                sent = _send(conn, stream, total, report, abort)
                close_notify(conn)
        except (OSError, CancelledByCaller) as err:
            # The data connection is gone; the printer's reply says why (552 full, 426 ...)
            # and that it is done with the file, which can then be deleted.
            reply = session.pending_reply(SHORT_WAIT)
            if abort.requested:
                raise CancelledByCaller from err
            if reply and reply[:1] in ("4", "5"):
                raise ftplib.error_perm(reply) from err  # noqa: S321 - TLS-only FTP
            raise
        finally:
            abort.upload_data(None)
        if sent != total:
            raise FtpsError(f"the local file changed size during the upload ({sent} != {total})")
        session.control.settimeout(self._completion_timeout)
        abort.awaiting_verdict(True)
        try:
            session.voidresp()
        except TimeoutError:
            return f"sent no reply within {self._completion_timeout:g} s"
        except ftplib.error_temp as err:
            # P2S firmware answers 426 for complete files (protocol.md §2.1).
            return f"answered '{err}'"
        finally:
            abort.awaiting_verdict(False)
            session.control.settimeout(self._timeout)
        if abort.requested:
            raise CancelledByCaller  # stored, but the caller gave up: it will be deleted
        return None

    def _verify(self, session: Session, temp: str, total: int, doubt: str) -> None:
        """After a missing or 4xx final reply: accept the upload only if SIZE says complete."""
        logger.info("%s %s after an upload; checking its size", self._where, doubt)
        try:
            stored = remote_size(session, temp)
        except ftplib.error_perm as err:
            if not str(err).startswith("550"):
                raise
            stored = 0  # the printer discarded it
        if stored != total:
            raise FtpsTransferError(
                f"{self._where} {doubt} after the upload and kept {stored} of {total} bytes; "
                "check the link and retry"
            )

    def _remove_partial(self, temp: str) -> str:
        """Best effort: delete the temporary upload; say how that went."""
        try:
            with self._connect(None, CLEANUP_TIMEOUT) as session:
                session.delete(temp)
        except ftplib.error_perm as err:
            if str(err).startswith("550"):
                return "no partial file was left on the printer"
            return f"could not remove the partial file {temp}: {err}"
        except ftplib.all_errors as err:
            logger.warning("could not remove partial upload %s from %s: %s", temp, self._where, err)
            return f"could not remove the partial file {temp}: {err}"
        return f"the partial file {temp} was removed"
