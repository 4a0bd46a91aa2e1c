"""One blocking FTPS session with stdlib ftplib, as printers need it (protocol.md §2.1, §12).

Implicit TLS (wrapped at connect), login as `bblp`, `PBSZ 0` + `PROT P`, `TYPE I`; data
connections by PASV to the control host (the announced address may be 0.0.0.0), their TLS
handshake after the `150` and resuming the control connection's session (vsFTPd's
`require_ssl_reuse`), and close_notify at the end. Used only by `bambufarm.protocol.ftps`, whose
FtpsClient runs these sessions on its executor's threads; `Abort` is how the event loop stops
one.
"""

import ftplib
import logging
import socket
import ssl
import struct
from collections.abc import Callable

logger = logging.getLogger(__name__)

USER = "bblp"
CHUNK = 64 * 1024
# The close_notify exchange and a reply after a dropped data connection come at once from a
# healthy printer; some A1 firmware never answers, so wait only this long.
SHORT_WAIT = 5.0
# SO_LINGER on with 0 s: close() sends a TCP reset.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class CancelledByCaller(Exception):  # noqa: N818 - named for what happened
    """The event loop gave up on this operation."""


# Everything a blocking step may raise: ftplib replies, socket/TLS errors, EOF, cancellation.
FAILURES: tuple[type[BaseException], ...] = (*ftplib.all_errors, CancelledByCaller)


class Abort:
    """Lets the event loop stop a worker that is blocked in a socket call.

    Normally abort() shuts every socket of the operation down. An upload's data connection is
    different: it is reset instead (SO_LINGER 0), because a printer takes a plain end of file
    for a complete upload (protocol.md §12.3) while a reset makes it drop the bytes; the control
    connection stays up so that the worker hears the printer's verdict before it deletes the
    temporary file. While the worker waits for the final reply of a fully sent upload, abort()
    touches nothing: the worker deletes the file once the printer has answered.
    """

    def __init__(self) -> None:
        self.requested = False
        self._sockets: list[socket.socket] = []
        self._upload: socket.socket | None = None
        self._awaiting_verdict = False

    def track(self, sock: socket.socket) -> None:
        """Remember `sock` so that abort() can unblock it (at once if already aborted)."""
        self._sockets.append(sock)
        if self.requested:
            _shutdown(sock)

    def upload_data(self, conn: socket.socket | None) -> None:
        """Mark `conn` as the data connection of an upload (None: it is closed)."""
        self._upload = conn
        if conn is not None and self.requested:
            _reset(conn)

    def awaiting_verdict(self, waiting: bool) -> None:
        """Mark the wait for the final reply after every byte was sent."""
        self._awaiting_verdict = waiting

    def abort(self) -> None:
        """Called from the event loop: make the worker give up as soon as it can."""
        self.requested = True
        upload = self._upload
        if self._awaiting_verdict:
            return
        if upload is not None:
            _reset(upload)
            return
        for sock in tuple(self._sockets):
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        # The base method on the file descriptor: SSLSocket.shutdown would touch the TLS
        # object that the worker thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError as err:
        logger.debug("socket already closed: %s", err)


def _reset(sock: socket.socket) -> None:
    """Wake the worker; its close() then sends a TCP reset (even after this FIN)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    except OSError as err:
        logger.debug("socket already closed: %s", err)
        return
    _shutdown(sock)


class Session(ftplib.FTP_TLS):
    """ftplib with implicit TLS and a session-resuming data channel to the control host."""

    def __init__(self, context: ssl.SSLContext, timeout: float, abort: Abort | None) -> None:
        super().__init__(context=context, timeout=timeout)
        self._abort = abort
        self._control: ssl.SSLSocket | None = None

    def _track(self, sock: socket.socket) -> None:
        if self._abort is not None:
            self._abort.track(sock)

    def open(
        self,
        address: tuple[str, int],
        server_hostname: str,
        access_code: str,
        verify_peer: Callable[[ssl.SSLSocket], object] | None,
    ) -> None:
        """Connect with TLS from the first byte, check the peer, log in, PROT P, TYPE I."""
        raw = socket.create_connection(address, self.timeout)
        try:
            self.sock = self._control = self.context.wrap_socket(
                raw, server_hostname=server_hostname
            )
        except BaseException:
            raw.close()
            raise
        self._track(self.sock)
        if verify_peer is not None:
            verify_peer(self.sock)  # before the access code is sent
        self.af = self.sock.family
        self.host = self.sock.getpeername()[0]
        self.file = self.sock.makefile("r", encoding=self.encoding, errors="replace")
        self.welcome = self.getresp()
        self.login(USER, access_code)
        self.prot_p()
        self.voidcmd("TYPE I")

    @property
    def control(self) -> ssl.SSLSocket:
        """The control connection (TLS from the first byte)."""
        if self._control is None or self.sock is None:
            raise EOFError("the control connection is closed")
        return self._control

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        """PASV, connect to the control host, send `cmd`, then TLS resuming the session."""
        _, port = ftplib.parse227(self.sendcmd("PASV"))  # noqa: S321 - TLS-only FTP
        # The PASV address may be 0.0.0.0 or unreachable (protocol.md §2.1): use the control host.
        conn = socket.create_connection((self.host, port), self.timeout)
        try:
            self._track(conn)
            tls = self._start_data(conn, cmd)
        except BaseException:
            conn.close()
            raise
        self._track(tls)
        return tls, -1

    def _start_data(self, conn: socket.socket, cmd: str) -> ssl.SSLSocket:
        reply = self.sendcmd(cmd)
        if reply.startswith("2"):
            reply = self.getresp()  # some servers send 200 before the 150
        if not reply.startswith("1"):
            raise ftplib.error_reply(reply)  # noqa: S321 - TLS-only FTP
        control = self.control
        try:
            # Handshake only after 150 (protocol.md §2.1), resuming the control session.
            return self.context.wrap_socket(
                conn, server_hostname=control.server_hostname, session=control.session
            )
        except OSError as err:
            # vsFTPd drops the handshake and says why on the control connection (522).
            said = self.pending_reply(SHORT_WAIT) or "522 data connection TLS failed"
            raise ftplib.error_perm(said) from err  # noqa: S321 - TLS-only FTP

    def pending_reply(self, wait: float) -> str | None:
        """The next reply within `wait` seconds (negative replies as text), None if none."""
        control = self.control
        control.settimeout(wait)
        try:
            return self.getresp()
        except ftplib.Error as err:
            return str(err)
        except (OSError, EOFError) as err:
            logger.debug("no reply from %s: %s", self.host, err)
            return None
        finally:
            control.settimeout(self.timeout)

    def read_data(self, cmd: str, sink: Callable[[bytes], object]) -> int:
        """Run a data command that downloads (LIST, RETR); feed every chunk to `sink`."""
        conn, _ = self.ntransfercmd(cmd)
        received = 0
        with conn:
            while chunk := conn.recv(CHUNK):
                sink(chunk)
                received += len(chunk)
            close_notify(conn)
        self.voidresp()
        return received


def close_notify(conn: socket.socket) -> None:
    """End a data connection with TLS close_notify, not waiting long for the printer's answer."""
    if not isinstance(conn, ssl.SSLSocket):
        return
    conn.settimeout(SHORT_WAIT)
    try:
        conn.unwrap()
    except OSError as err:
        # Some A1 firmware never answers close_notify; the bytes are sent either way.
        logger.debug("data connection closed without close_notify answer: %s", err)


def remote_size(session: Session, remote: str) -> int:
    """The size of `remote` by SIZE (213); any other reply raises the ftplib error."""
    reply = session.sendcmd(f"SIZE {remote}")
    if not reply.startswith("213 ") or not reply[4:].strip().isdigit():
        raise ftplib.error_reply(reply)  # noqa: S321 - TLS-only FTP
    return int(reply[4:].strip())


def quit_quietly(session: Session) -> None:
    """QUIT, or just close when the printer has already hung up."""
    try:
        session.quit()
    except ftplib.all_errors as err:
        # Everything is stored; a printer that hangs up before 221 changes nothing.
        logger.debug("QUIT failed: %s", err)
        session.close()
