"""The FTPS data channel of the simulated printer: passive listeners, TLS, STOR/RETR/LIST/NLST.

Passive only (protocol.md §2.1): each PASV/EPSV opens one listener on the control connection's
local address (rule 6 of protocol.md §12) for one transfer. The accepted TCP socket is not read
until the data command has been answered with `150`; only then does the TLS handshake run, with
the server's own SSL context so that the client can resume the control connection's session
(`522` when it does not and resumption is required, rule 4). An upload ends at EOF whether or
not the client sent close_notify (rule 3) and is answered `226` only once the file is committed.
"""

import asyncio
import logging
import socket
import ssl
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType

from .ftps_commands import Reply, ServerSide, SessionState
from .storage import (
    Entry,
    InvalidNameError,
    PathEscapeError,
    StorageError,
    StorageFullError,
    Upload,
    WriteThrottle,
    normalize_path,
)

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024

# Buffered bytes before the data socket stops being read (back-pressure towards the client).
_READ_LIMIT = 256 * 1024

# vsftpd's default accept_timeout is 60 s; clients connect right after PASV, so 30 s is plenty.
ACCEPT_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 30.0
# A client that never answers our close_notify must not hold a transfer open for asyncio's 30 s.
SHUTDOWN_TIMEOUT = 10.0

# English month names whatever the process locale is (strftime's %b follows LC_TIME).
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# `ls -l` shows the year instead of the time for files older than ~6 months (GNU ls rule).
_SIX_MONTHS = 182 * 24 * 3600


class PassiveListener:
    """A one-shot listening socket for a passive-mode data connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(cls, host: str) -> "PassiveListener":
        """Listen on an ephemeral port of `host` (the control connection's local address)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((host, 0))
            sock.listen(1)
        except OSError:
            sock.close()
            raise
        return cls(sock)

    @property
    def port(self) -> int:
        """The port clients must connect to."""
        port: int = self._sock.getsockname()[1]
        return port

    async def accept(self, peer_host: str) -> socket.socket:
        """Accept the data connection from `peer_host`; connections from elsewhere are dropped."""
        loop = asyncio.get_running_loop()
        while True:
            conn, address = await loop.sock_accept(self._sock)
            if address[0] == peer_host:
                return conn
            # vsftpd's pasv_promiscuous=NO: a stranger must not steal the transfer.
            logger.warning("data connection from %s refused: control is %s", address[0], peer_host)
            conn.close()

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()


class DataChannel:
    """One open data connection (TLS or clear) as a pair of asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> "DataChannel":
        """Take over an accepted socket, running the server-side TLS handshake if asked."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            if ssl_context is None:
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
            else:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol,
                    sock,
                    ssl=ssl_context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                    ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
                )
        except BaseException:
            sock.close()
            raise
        return cls(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    @property
    def session_reused(self) -> bool:
        """Whether the client resumed a TLS session (always False on a clear channel)."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        return bool(ssl_object is not None and ssl_object.session_reused)

    async def read(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at end of file (close_notify or a bare TCP FIN alike)."""
        return await self._reader.read(size)

    async def write(self, data: bytes) -> None:
        """Send `data`, waiting while the client is slow to take it."""
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        """Close gracefully (TLS close_notify), giving up after SHUTDOWN_TIMEOUT seconds."""
        self._writer.close()
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            # The bytes were already delivered or refused; a peer that vanished is not an error.
            logger.debug("data connection did not close cleanly", exc_info=True)
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._writer.transport.abort()


def format_list_line(entry: Entry, now: float) -> str:
    """One `ls -l` line as vsFTPd writes it: two-digit day, UTC, time or year (rule 15)."""
    mode = "drwxr-xr-x" if entry.is_dir else "-rw-r--r--"
    size = 4096 if entry.is_dir else entry.size
    stamp = time.gmtime(entry.mtime)
    recent = now - _SIX_MONTHS < entry.mtime <= now + 3600
    tail = f"{stamp.tm_hour:02d}:{stamp.tm_min:02d}" if recent else f" {stamp.tm_year}"
    when = f"{_MONTHS[stamp.tm_mon - 1]} {stamp.tm_mday:02d} {tail}"
    return f"{mode}    1 1000     1000     {size:>8} {when} {entry.name}"


def format_listing(entries: tuple[Entry, ...], now: float) -> bytes:
    """A whole LIST body, CRLF line ends."""
    return b"".join(f"{format_list_line(e, now)}\r\n".encode() for e in entries)


def format_names(entries: tuple[Entry, ...]) -> bytes:
    """A whole NLST body: bare names as P1 firmware sends them, CRLF line ends."""
    return b"".join(f"{e.name}\r\n".encode() for e in entries)


class Transfers:
    """The passive-mode and data commands of one control connection."""

    def __init__(
        self,
        server: ServerSide,
        state: SessionState,
        reply: Callable[[Reply], Awaitable[None]],
        *,
        peer_host: str,
        local_host: str,
    ) -> None:
        self._server = server
        self._storage = server.storage
        self._state = state
        self._reply = reply
        self._peer_host = peer_host
        self._local_host = local_host
        self._listener: PassiveListener | None = None
        self._channel: DataChannel | None = None

    def handlers(self) -> Mapping[str, Callable[[str], Awaitable[None]]]:
        """Verb → handler."""
        return MappingProxyType(
            {
                "PASV": self.pasv,
                "EPSV": self.epsv,
                "PORT": self.port,
                "EPRT": self.port,
                "STOR": self.stor,
                "RETR": self.retr,
                "LIST": self.list_files,
                "NLST": self.name_list,
            }
        )

    def close(self) -> None:
        """Drop the passive listener and any open data connection."""
        self._drop_listener()
        if self._channel is not None:
            self._channel.abort()
            self._channel = None

    # --- passive mode -------------------------------------------------------------------------

    async def pasv(self, arg: str) -> None:
        """Open a passive listener and announce it as h1,h2,h3,h4,p1,p2 (IPv4 only)."""
        if ":" in self._local_host:
            await self._reply(Reply(500, "PASV is IPv4 only; use EPSV."))
            return
        port = await self._open_listener()
        if port is not None:
            numbers = self._local_host.replace(".", ",")
            text = f"Entering Passive Mode ({numbers},{port >> 8},{port & 255})."
            await self._reply(Reply(227, text))

    async def epsv(self, arg: str) -> None:
        """Open a passive listener and announce its port only (|||port|)."""
        if arg.strip().upper() == "ALL":
            await self._reply(Reply(200, "EPSV ALL ok."))
            return
        port = await self._open_listener()
        if port is not None:
            await self._reply(Reply(229, f"Entering Extended Passive Mode (|||{port}|)"))

    async def port(self, arg: str) -> None:
        """Active mode: printers do not support it."""
        await self._reply(Reply(502, "Active mode is not supported; use PASV or EPSV."))

    async def _open_listener(self) -> int | None:
        self._drop_listener()
        try:
            self._listener = PassiveListener.open(self._local_host)
        except OSError as err:
            await self._reply(Reply(425, f"Cannot open a passive port: {err.strerror}."))
            return None
        return self._listener.port

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # --- opening the data connection ----------------------------------------------------------

    async def _data_ready(self) -> bool:
        """Refuse a data command without PASV or without encryption (the PASV is used up)."""
        if self._listener is None:
            await self._reply(Reply(425, "Use PASV or EPSV first."))
            return False
        if not self._state.private and not self._server.allow_prot_c:
            self._drop_listener()
            await self._reply(Reply(522, "Data connections must be encrypted."))
            return False
        return True

    async def _refuse(self, reply: Reply) -> None:
        self._drop_listener()
        await self._reply(reply)

    async def _open_data(self, preliminary: str) -> DataChannel | None:
        """Accept the passive connection, answer 150, then run the TLS handshake."""
        listener, self._listener = self._listener, None
        if listener is None:
            await self._reply(Reply(425, "Use PASV or EPSV first."))
            return None
        try:
            async with asyncio.timeout(ACCEPT_TIMEOUT):
                sock = await listener.accept(self._peer_host)
        except TimeoutError:
            await self._reply(Reply(425, "Failed to establish connection."))
            return None
        finally:
            listener.close()
        await self._reply(Reply(150, preliminary))
        context = self._server.ssl_context if self._state.private else None
        try:
            channel = await DataChannel.open(sock, context)
        except (OSError, TimeoutError) as err:
            logger.info("FTPS data handshake with %s failed: %s", self._peer_host, err)
            await self._reply(Reply(522, "SSL connection failed."))
            return None
        if (
            context is not None
            and self._server.require_session_reuse
            and not channel.session_reused
        ):
            channel.abort()
            await self._reply(Reply(522, "SSL connection failed: session reuse required"))
            return None
        self._channel = channel
        return channel

    async def _send(self, channel: DataChannel, chunks: Iterable[bytes]) -> bool:
        """Send every chunk and close the channel; on failure answer 426 and return False."""
        try:
            for chunk in chunks:
                async with asyncio.timeout(self._server.idle_timeout):
                    await channel.write(chunk)
        except (OSError, TimeoutError):
            await self._abort(channel, Reply(426, "Failure writing network stream."))
            return False
        await channel.close()
        self._channel = None
        return True

    async def _abort(self, channel: DataChannel, reply: Reply) -> None:
        channel.abort()
        self._channel = None
        await self._reply(reply)

    # --- transfers ----------------------------------------------------------------------------

    async def stor(self, arg: str) -> None:
        """Upload into a temporary file; committed (and announced) only when complete."""
        if not await self._data_ready():
            return
        try:
            path = normalize_path(self._state.cwd, arg)
            upload = self._storage.begin_upload(path)
        except StorageError as err:
            await self._refuse(Reply(550, f"Could not create file: {err}."))
            return
        with upload:
            channel = await self._open_data("Ok to send data.")
            if channel is not None:
                await self._receive(channel, upload, path)

    async def _receive(self, channel: DataChannel, upload: Upload, path: str) -> None:
        throttle = WriteThrottle(self._server.clock)
        while True:
            try:
                async with asyncio.timeout(self._server.idle_timeout):
                    chunk = await channel.read(CHUNK)
            except (OSError, TimeoutError):
                await self._abort(channel, Reply(426, "Failure reading network stream."))
                return
            if not chunk:
                break
            faults = self._server.faults
            limit = faults.fail_uploads_after_bytes
            if limit is not None and upload.written + len(chunk) > limit:
                logger.info("FTPS upload of %s failed by fault after %d bytes", path, limit)
                await self._abort(channel, Reply(426, "Failure reading network stream."))
                return
            try:
                upload.write(chunk)
            except StorageFullError as err:
                await self._abort(channel, Reply(552, f"Could not store {path}: {err}."))
                return
            except (StorageError, OSError) as err:
                await self._abort(channel, Reply(451, f"Failure writing to local file: {err}."))
                return
            delay = throttle.delay_after(len(chunk), faults.write_rate_bytes_per_s)
            if delay > 0:
                await asyncio.sleep(delay)
        # EOF, after close_notify or a bare FIN alike (rule 3): finish the channel, then store.
        await channel.close()
        self._channel = None
        if self._server.validate_3mf and path.lower().endswith(".3mf"):
            upload.flush()
            if not zipfile.is_zipfile(upload.temp_path):
                text = "Upload is not a complete 3MF (ZIP) archive; discarded."
                await self._reply(Reply(451, text))
                return
        try:
            upload.commit()
        except StorageError as err:
            await self._reply(Reply(451, f"Failure writing to local file: {err}."))
            return
        self._server.notify_stored(path)
        await self._reply(Reply(226, "Transfer complete."))

    async def retr(self, arg: str) -> None:
        """Download a file."""
        if not await self._data_ready():
            return
        try:
            path = normalize_path(self._state.cwd, arg)
            size = self._storage.stat(path).size
            fh = self._storage.open_for_read(path)
        except StorageError as err:
            await self._refuse(Reply(550, f"Failed to open file: {err}."))
            return
        with fh:
            name = path.rsplit("/", 1)[-1]
            text = f"Opening BINARY mode data connection for {name} ({size} bytes)."
            channel = await self._open_data(text)
            if channel is not None and await self._send(channel, iter(lambda: fh.read(CHUNK), b"")):
                await self._reply(Reply(226, "Transfer complete."))

    async def list_files(self, arg: str) -> None:
        """Directory listing in `ls -l` form (rule 15)."""
        await self._listing(arg, names_only=False)

    async def name_list(self, arg: str) -> None:
        """Bare names."""
        await self._listing(arg, names_only=True)

    async def _listing(self, arg: str, *, names_only: bool) -> None:
        if not await self._data_ready():
            return
        # Clients send `LIST -la` or `LIST -l /cache`: options are ignored, as vsFTPd does.
        words = arg.split(" ", 1)
        target = (words[1] if len(words) > 1 else "") if arg.startswith("-") else arg
        try:
            path = normalize_path(self._state.cwd, target)
        except (PathEscapeError, InvalidNameError) as err:
            await self._refuse(Reply(550, f"Permission denied: {err}."))
            return
        try:
            entry = self._storage.stat(path)
            entries = self._storage.list_dir(path) if entry.is_dir else (entry,)
        except StorageError:
            entries = ()  # vsFTPd lists nothing (and still says 226) for a missing path
        if names_only:
            body = format_names(entries)
        else:
            body = format_listing(entries, self._server.wall_clock())
        channel = await self._open_data("Here comes the directory listing.")
        if channel is not None and await self._send(channel, (body,)):
            await self._reply(Reply(226, "Directory send OK."))
