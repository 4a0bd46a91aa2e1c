"""The simulated printer's implicit-FTPS server on port 990, vsFTPd-like (protocol.md §2, §12).

TLS from the first byte (no AUTH TLS), TLS 1.2 because the given context is capped, banner
`220 (vsFTPd 3.0.5)`, login `bblp` + access code. Commands without a data connection live in
ftps_commands, passive mode and transfers in ftps_data. Reply texts follow vsFTPd where clients
read them; refusals add the reason. Codes clients depend on:

    522  data channel not encrypted, or TLS session not resumed while resumption is required
    536  PROT C while clear data connections are not allowed (real A1 firmware may need C)
    552  upload beyond the storage capacity; the partial file is removed
    426  upload aborted (connection lost, or the `fail_uploads_after_bytes` fault)
    421  idle timeout, or too many failed logins from one address
    500  malformed, over-long or unknown command line (the session carries on)
"""

import asyncio
import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping

from .ftps_commands import NO_FAULTS, Commands, FtpsFaults, Reply, SessionState
from .ftps_data import Transfers
from .login_limit import LoginGuard
from .storage import PrinterStorage

__all__ = ["FtpCommandError", "FtpsFaults", "FtpsServer", "LoginGuard", "parse_command"]

logger = logging.getLogger(__name__)

BANNER = "(vsFTPd 3.0.5)"  # P2S capture; some clients send close_notify only for vsFTPd (rule 5)
USER = "bblp"
MAX_LINE = 4096  # vsftpd's VSFTP_MAX_COMMAND_LINE
MAX_FAILURES_PER_CONNECTION = 3  # vsftpd's max_login_fails
CONTROL_HANDSHAKE_TIMEOUT = 10.0
CONTROL_SHUTDOWN_TIMEOUT = 5.0

_PRE_LOGIN = frozenset({"USER", "PASS", "QUIT", "FEAT", "SYST", "OPTS", "PBSZ", "PROT", "NOOP"})


class FtpCommandError(ValueError):
    """A control line that is not a well-formed FTP command."""


def parse_command(line: bytes) -> tuple[str, str]:
    """Split one control line (CRLF or LF ended) into an upper-case verb and its argument."""
    text = line.removesuffix(b"\n").removesuffix(b"\r")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FtpCommandError("command line is not valid UTF-8") from err
    verb, _, arg = decoded.partition(" ")
    if not (verb.isascii() and verb.isalpha() and 3 <= len(verb) <= 4):
        raise FtpCommandError("command verb must be 3 or 4 letters")
    if any(ord(char) < 32 or ord(char) == 127 for char in arg):
        raise FtpCommandError("control characters in the argument")
    return verb.upper(), arg


class FtpsServer:
    """Implicit-FTPS server over one printer's storage; `faults` may be replaced at run time.

    `on_stored(path)` is called with the absolute FTP path (e.g. `/plate.gcode.3mf`) of every
    upload once it is committed, before the client gets `226`.
    """

    def __init__(
        self,
        storage: PrinterStorage,
        access_code: str,
        ssl_context: ssl.SSLContext,
        *,
        require_session_reuse: bool = True,
        allow_prot_c: bool = False,
        faults: FtpsFaults = NO_FAULTS,
        clock: Callable[[], float] = time.monotonic,
        idle_timeout: float = 300.0,
        on_stored: Callable[[str], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        validate_3mf: bool = True,
    ) -> None:
        if ssl_context.maximum_version in (
            ssl.TLSVersion.MAXIMUM_SUPPORTED,
            ssl.TLSVersion.TLSv1_3,
        ):
            # With TLS 1.3 session tickets clients lose the tail of uploads (protocol.md §12.2).
            raise ValueError("the FTPS ssl_context must be capped at TLS 1.2 (maximum_version)")
        self.storage = storage
        self.faults = faults
        self.on_stored = on_stored
        self.ssl_context = ssl_context
        self.require_session_reuse = require_session_reuse
        self.allow_prot_c = allow_prot_c
        self.idle_timeout = idle_timeout
        self.validate_3mf = validate_3mf
        self.clock = clock
        self.wall_clock = wall_clock
        self.login_guard = LoginGuard(clock)
        self._access_code = access_code.encode()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self, host: str, port: int) -> int:
        """Listen on `host`:`port` (0 = ephemeral) and return the bound port."""
        self._server = await asyncio.start_server(
            self._on_connect,
            host,
            port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=CONTROL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=CONTROL_SHUTDOWN_TIMEOUT,
            limit=MAX_LINE,
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        logger.debug("FTPS listening on %s:%d", host, bound)
        return bound

    async def close(self) -> None:
        """Stop listening and drop every control and data connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def closing(self) -> bool:
        """Whether close() has been called."""
        return self._closing

    def check_access_code(self, code: str) -> bool:
        """Constant-time comparison with the printer's access code."""
        return hmac.compare_digest(code.encode(), self._access_code)

    def notify_stored(self, path: str) -> None:
        """Tell the printer that `path` (absolute FTP path) finished uploading."""
        if self.on_stored is None:
            return
        try:
            self.on_stored(path)
        except Exception:
            logger.exception("on_stored callback failed for %s", path)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        session = _ControlSession(self, reader, writer)
        try:
            await session.run()
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # close() cancelled us. End normally: Python 3.11's stream callback calls
            # task.exception(), which raises (and logs an error) on a cancelled task.
            logger.debug("FTPS session from %s closed by shutdown", session.peer_host)
        except Exception:
            logger.exception("FTPS session from %s failed", session.peer_host)
        finally:
            if task is not None:
                self._sessions.discard(task)
            session.transfers.close()
            await session.close_control(graceful=not self._closing)


class _ControlSession:
    """One control connection: read lines, check login, dispatch to the command handlers."""

    def __init__(
        self, server: FtpsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self.peer_host: str = writer.get_extra_info("peername")[0]
        self._state = SessionState()
        self.transfers = Transfers(
            server,
            self._state,
            self._reply,
            peer_host=self.peer_host,
            local_host=writer.get_extra_info("sockname")[0],
        )
        self._commands: Mapping[str, Callable[[str], Reply]] = Commands(
            server.storage, self._state, allow_prot_c=server.allow_prot_c
        ).handlers()
        self._data_commands: Mapping[str, Callable[[str], Awaitable[None]]] = (
            self.transfers.handlers()
        )
        self._login_commands: Mapping[str, Callable[[str], Awaitable[None]]] = {
            "USER": self._user_cmd,
            "PASS": self._pass_cmd,
            "QUIT": self._quit_cmd,
        }
        self._user: str | None = None
        self._logged_in = False
        self._login_failures = 0
        self._done = False

    async def run(self) -> None:
        """Serve commands until QUIT, EOF, idle timeout or too many failed logins."""
        try:
            await self._reply(Reply(220, BANNER))
            while not self._done:
                try:
                    async with asyncio.timeout(self._server.idle_timeout):
                        line = await self._read_line()
                except TimeoutError:
                    await self._reply(Reply(421, "Timeout."))
                    return
                if line is None:
                    return
                try:
                    verb, arg = parse_command(line)
                except FtpCommandError as err:
                    await self._reply(Reply(500, f"Bad command line: {err}."))
                    continue
                await self._dispatch(verb, arg)
        except OSError as err:
            # The client vanished mid-reply: nothing left to answer.
            logger.debug("FTPS control connection from %s lost: %s", self.peer_host, err)

    async def close_control(self, *, graceful: bool) -> None:
        """Close the control connection (at once when the server is shutting down)."""
        if not graceful:
            self._writer.transport.abort()
            return
        self._writer.close()
        try:
            async with asyncio.timeout(CONTROL_SHUTDOWN_TIMEOUT):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            self._writer.transport.abort()

    async def _read_line(self) -> bytes | None:
        """The next line, None at EOF; an over-long line is consumed and answered with 500."""
        too_long = False
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as err:
                await self._reader.readexactly(err.consumed)
                too_long = True
                continue
            if not too_long:
                return line
            await self._reply(Reply(500, f"Command line too long (limit {MAX_LINE} bytes)."))
            too_long = False

    async def _dispatch(self, verb: str, arg: str) -> None:
        logger.debug("FTPS %s: %s %s", self.peer_host, verb, "****" if verb == "PASS" else arg)
        # RNTO must follow RNFR directly; any other command forgets the pending rename.
        if verb != "RNTO":
            self._state.rename_from = None
        login = self._login_commands.get(verb)
        if login is not None:
            await login(arg)
        elif not self._logged_in and verb not in _PRE_LOGIN:
            await self._reply(Reply(530, "Please login with USER and PASS."))
        elif verb in self._commands:
            await self._reply(self._commands[verb](arg))
        elif verb in self._data_commands:
            await self._data_commands[verb](arg)
        else:
            await self._reply(Reply(500, "Unknown command."))

    async def _reply(self, reply: Reply) -> None:
        self._writer.write(reply.encode())
        await self._writer.drain()

    async def _user_cmd(self, arg: str) -> None:
        if self._logged_in:
            await self._reply(Reply(530, "Can't change to another user."))
            return
        self._user = arg
        await self._reply(Reply(331, "Please specify the password."))

    async def _pass_cmd(self, arg: str) -> None:
        if self._logged_in:
            await self._reply(Reply(230, "Already logged in."))
            return
        if self._user is None:
            await self._reply(Reply(503, "Login with USER first."))
            return
        guard = self._server.login_guard
        if guard.locked(self.peer_host):
            logger.warning("FTPS login from %s refused: too many failures", self.peer_host)
            text = "Too many failed logins from your address; try again later."
            await self._reply(Reply(421, text))
            self._done = True
            return
        if self._server.faults.refuse_logins:
            await self._reply(Reply(530, "Login incorrect."))
            return
        if self._user == USER and self._server.check_access_code(arg):
            guard.record_success(self.peer_host)
            self._logged_in = True
            await self._reply(Reply(230, "Login successful."))
            return
        guard.record_failure(self.peer_host)
        self._login_failures += 1
        self._user = None
        logger.info("FTPS login failed from %s", self.peer_host)
        await self._reply(Reply(530, "Login incorrect."))
        if self._login_failures >= MAX_FAILURES_PER_CONNECTION:
            self._done = True

    async def _quit_cmd(self, arg: str) -> None:
        await self._reply(Reply(221, "Goodbye."))
        self._done = True
