"""FTP commands of the simulated printer that need no data connection: each returns a Reply.

Directory and file commands go through PrinterStorage, so every path is confined to the
printer's storage; a refusal (escape, missing file, ...) is a 550 that says what was wrong.
"""

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from .storage import PrinterStorage, StorageError, normalize_path

_FEATURES = (" EPSV", " MDTM", " PASV", " PBSZ", " PROT", " SIZE", " UTF8")


@dataclass(frozen=True, slots=True)
class FtpsFaults:
    """Injected misbehaviour: a write-rate cap ("slow"), aborted uploads, refused logins."""

    write_rate_bytes_per_s: int | None = None
    fail_uploads_after_bytes: int | None = None
    refuse_logins: bool = False


NO_FAULTS = FtpsFaults()


@dataclass(frozen=True, slots=True)
class Reply:
    """One FTP reply; `lines` makes it multi-line (`211-Features:` ... `211 End`)."""

    code: int
    text: str
    lines: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The reply as sent on the wire, CRLF ended; CR/LF inside the text become spaces."""
        text = self.text.replace("\r", " ").replace("\n", " ")
        if not self.lines:
            return f"{self.code} {text}\r\n".encode()
        first, *rest = self.lines
        body = "".join(f"{line}\r\n" for line in rest)
        return f"{self.code}-{first}\r\n{body}{self.code} {text}\r\n".encode()


class ServerSide(Protocol):
    """What a session needs from its server (FtpsServer provides it)."""

    storage: PrinterStorage
    faults: FtpsFaults
    ssl_context: ssl.SSLContext
    require_session_reuse: bool
    allow_prot_c: bool
    idle_timeout: float
    validate_3mf: bool
    clock: Callable[[], float]
    wall_clock: Callable[[], float]

    def notify_stored(self, path: str) -> None:
        """Tell the printer that `path` finished uploading."""


class SessionState:
    """What one control connection has set up: directory, protection level, pending rename."""

    def __init__(self) -> None:
        self.cwd = "/"
        self.private = False
        self.rename_from: str | None = None


def _quote(path: str) -> str:
    """A path inside a 257 reply: double quotes doubled (RFC 959)."""
    return '"' + path.replace('"', '""') + '"'


class Commands:
    """Session settings and directory/file commands, answered at once."""

    def __init__(self, storage: PrinterStorage, state: SessionState, *, allow_prot_c: bool) -> None:
        self._storage = storage
        self._state = state
        self._allow_prot_c = allow_prot_c

    def handlers(self) -> Mapping[str, Callable[[str], Reply]]:
        """Verb → handler."""
        return MappingProxyType(
            {
                "FEAT": self.feat,
                "SYST": self.syst,
                "OPTS": self.opts,
                "NOOP": self.noop,
                "PBSZ": self.pbsz,
                "PROT": self.prot,
                "TYPE": self.type,
                "STRU": self.stru,
                "MODE": self.mode,
                "ALLO": self.allo,
                "ABOR": self.abor,
                "PWD": self.pwd,
                "CWD": self.cwd,
                "CDUP": self.cdup,
                "MKD": self.mkd,
                "RMD": self.rmd,
                "DELE": self.dele,
                "SIZE": self.size,
                "MDTM": self.mdtm,
                "RNFR": self.rnfr,
                "RNTO": self.rnto,
            }
        )

    # --- settings -----------------------------------------------------------------------------

    def feat(self, arg: str) -> Reply:
        """The extensions we implement."""
        return Reply(211, "End", ("Features:", *_FEATURES))

    def syst(self, arg: str) -> Reply:
        """System type, as vsFTPd answers it."""
        return Reply(215, "UNIX Type: L8")

    def opts(self, arg: str) -> Reply:
        """Only `OPTS UTF8 ON`: names are always UTF-8."""
        if arg.upper().split() in (["UTF8", "ON"], ["UTF8"]):
            return Reply(200, "Always in UTF8 mode.")
        return Reply(501, "Option not understood.")

    def noop(self, arg: str) -> Reply:
        """Keep-alive."""
        return Reply(200, "NOOP ok.")

    def pbsz(self, arg: str) -> Reply:
        """Protection buffer size: always 0 for TLS."""
        return Reply(200, "PBSZ set to 0.")

    def prot(self, arg: str) -> Reply:
        """Data protection level: P always, C only when allowed (real A1 firmware may need C)."""
        level = arg.strip().upper()
        if level == "P":
            self._state.private = True
            return Reply(200, "PROT now Private.")
        if level == "C" and self._allow_prot_c:
            self._state.private = False
            return Reply(200, "PROT now Clear.")
        if level == "C":
            return Reply(536, "PROT C is not allowed; use PROT P.")
        return Reply(504, "PROT: unknown protection level.")

    def type(self, arg: str) -> Reply:
        """Transfer type; bytes are stored unchanged either way (vsFTPd's default)."""
        kind = arg.strip().upper()
        if kind in ("I", "L 8"):
            return Reply(200, "Switching to Binary mode.")
        if kind in ("A", "A N"):
            return Reply(200, "Switching to ASCII mode.")
        return Reply(500, "Unrecognised TYPE command.")

    def stru(self, arg: str) -> Reply:
        """File structure: F only."""
        if arg.strip().upper() == "F":
            return Reply(200, "Structure set to F.")
        return Reply(504, "Bad STRU command.")

    def mode(self, arg: str) -> Reply:
        """Transfer mode: S only."""
        if arg.strip().upper() == "S":
            return Reply(200, "Mode set to S.")
        return Reply(504, "Bad MODE command.")

    def allo(self, arg: str) -> Reply:
        """Space reservation: capacity is checked while storing instead."""
        return Reply(202, "ALLO command ignored.")

    def abor(self, arg: str) -> Reply:
        """Transfers run to completion before the next command is read."""
        return Reply(225, "No transfer to ABOR.")

    # --- directories and files ----------------------------------------------------------------

    def pwd(self, arg: str) -> Reply:
        """The current directory."""
        return Reply(257, f"{_quote(self._state.cwd)} is the current directory")

    def cwd(self, arg: str) -> Reply:
        """Change directory (inside the storage only)."""
        try:
            path = normalize_path(self._state.cwd, arg)
            is_dir = self._storage.stat(path).is_dir
        except StorageError as err:
            return Reply(550, f"Failed to change directory: {err}.")
        if not is_dir:
            return Reply(550, f"Failed to change directory: not a directory: {path}.")
        self._state.cwd = path
        return Reply(250, "Directory successfully changed.")

    def cdup(self, arg: str) -> Reply:
        """Parent directory; at the root vsFTPd's chroot keeps the client there and says yes."""
        return self.cwd(".." if self._state.cwd != "/" else "/")

    def mkd(self, arg: str) -> Reply:
        """Create a directory."""
        try:
            path = normalize_path(self._state.cwd, arg)
            self._storage.mkdir(path)
        except StorageError as err:
            return Reply(550, f"Create directory operation failed: {err}.")
        return Reply(257, f"{_quote(path)} created")

    def rmd(self, arg: str) -> Reply:
        """Remove an empty directory."""
        try:
            self._storage.rmdir(normalize_path(self._state.cwd, arg))
        except StorageError as err:
            return Reply(550, f"Remove directory operation failed: {err}.")
        return Reply(250, "Remove directory operation successful.")

    def dele(self, arg: str) -> Reply:
        """Delete a file."""
        try:
            self._storage.delete(normalize_path(self._state.cwd, arg))
        except StorageError as err:
            return Reply(550, f"Delete operation failed: {err}.")
        return Reply(250, "Delete operation successful.")

    def size(self, arg: str) -> Reply:
        """Size of a file in bytes."""
        try:
            entry = self._storage.stat(normalize_path(self._state.cwd, arg))
        except StorageError as err:
            return Reply(550, f"Could not get file size: {err}.")
        if entry.is_dir:
            return Reply(550, f"Could not get file size: is a directory: {arg}.")
        return Reply(213, str(entry.size))

    def mdtm(self, arg: str) -> Reply:
        """Modification time, UTC, as YYYYMMDDHHMMSS."""
        try:
            entry = self._storage.stat(normalize_path(self._state.cwd, arg))
        except StorageError as err:
            return Reply(550, f"Could not get file modification time: {err}.")
        return Reply(213, time.strftime("%Y%m%d%H%M%S", time.gmtime(entry.mtime)))

    def rnfr(self, arg: str) -> Reply:
        """First half of a rename: remember the source."""
        try:
            path = normalize_path(self._state.cwd, arg)
            found = self._storage.exists(path)
        except StorageError as err:
            return Reply(550, f"RNFR command failed: {err}.")
        if not found:
            return Reply(550, f"RNFR command failed: no such file or directory: {path}.")
        self._state.rename_from = path
        return Reply(350, "Ready for RNTO.")

    def rnto(self, arg: str) -> Reply:
        """Second half of a rename; must follow RNFR directly."""
        source, self._state.rename_from = self._state.rename_from, None
        if source is None:
            return Reply(503, "RNFR required first.")
        try:
            self._storage.rename(source, normalize_path(self._state.cwd, arg))
        except StorageError as err:
            return Reply(550, f"Rename failed: {err}.")
        return Reply(250, "Rename successful.")
