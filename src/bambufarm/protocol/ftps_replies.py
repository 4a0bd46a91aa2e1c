"""What a printer's FTPS server answers, read without I/O: reply codes, LIST lines.

Negative replies become typed errors whose messages say what to do (`error_for_reply`); LIST
bodies in Unix `ls -l` form (vsFTPd's, protocol.md §2.1 and §12 rule 15) become RemoteFile
entries, with the year inferred for `hour:minute` dates; NLST-style bare names or full paths,
which some firmware returns, are tolerated. The I/O lives in `bambufarm.protocol.ftps`.

    ProtocolError
    └── FtpsError                   an FTPS operation on a printer failed
        ├── FtpsAuthError           530: wrong access code
        ├── FtpsStorageFullError    552/452: storage full
        ├── FtpsSessionReuseError   522: data connection without TLS session reuse
        ├── FtpsNotFoundError       550/553: no such file, or a name the printer refuses
        └── FtpsTransferError       425/426/451, a lost or silent connection, a short file
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bambufarm.protocol.errors import ProtocolError


class FtpsError(ProtocolError):
    """An FTPS operation on a printer failed; the message says what happened and what to do."""


class FtpsAuthError(FtpsError):
    """The printer refused the access code (530)."""


class FtpsStorageFullError(FtpsError):
    """The printer's storage is full (552/452); nothing was left behind."""


class FtpsSessionReuseError(FtpsError):
    """The printer refused a data connection that did not resume the control TLS session (522)."""


class FtpsNotFoundError(FtpsError):
    """The remote file or directory does not exist or cannot be used (550, 553)."""


class FtpsTransferError(FtpsError):
    """A data transfer broke off or the printer did not store all of it (425/426/451)."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One entry of a printer directory listing (size/time None for NLST-style bare names)."""

    name: str
    size: int | None
    modified: datetime | None
    is_dir: bool = False


def error_for_reply(reply: str, *, action: str, where: str) -> FtpsError:
    """The typed error for a printer's negative reply (e.g. "552 ...") to `action`."""
    code = reply[:3]
    said = f"{where} answered '{reply.strip()}' while {action}"
    if code == "530":
        return FtpsAuthError(
            f"{where} refused the access code (530): copy the 8-character LAN access code "
            "from the printer's screen (Settings, Network / WLAN) and try again"
        )
    if code in ("552", "452"):
        return FtpsStorageFullError(
            f"{said}: the printer's storage is full; delete old files (timelapses, cached "
            "jobs) or insert a larger SD card, then retry"
        )
    if code == "522":
        return FtpsSessionReuseError(
            f"{said}: the printer requires the data connection to resume the control TLS "
            "session; retry, and if it persists restart the printer"
        )
    if code in ("550", "553"):
        return FtpsNotFoundError(f"{said}: check the file name and that the storage is inserted")
    if code in ("425", "426", "451"):
        return FtpsTransferError(f"{said}: the transfer broke off; check the link and retry")
    if code == "421":
        return FtpsError(f"{said}: the printer closed the session; retry in a moment")
    return FtpsError(f"{said}: unexpected reply")


# --- LIST parsing (sans-IO) ---------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# `-rw-r--r--    1 1000     1000   1632221 Jun 17 12:12 name` (group column optional).
_LIST_LINE = re.compile(
    r"^(?P<kind>[-dlbcps])[-rwxsStTl]{9}\S*\s+\d+\s+\S+\s+(?:\S+\s+)?(?P<size>\d+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
    r"(?:(?P<hour>\d{1,2}):(?P<minute>\d{2})|(?P<year>\d{4}))\s(?P<name>.+)$"
)
_LOOKS_LIKE_LIST = re.compile(r"^[-dlbcps][-rwxsStTl]{9}")
_TOTAL_LINE = re.compile(r"^total\s+\d+$")
# `ls -l` shows hour:minute for the last ~6 months: its middle is ~91 days ago.
_RECENT_MIDDLE = timedelta(days=91)


def _when(match: re.Match[str], now: datetime) -> datetime:
    month = _MONTHS.index(match["month"].lower()) + 1
    day = int(match["day"])
    if match["year"] is not None:
        return datetime(int(match["year"]), month, day, tzinfo=UTC)
    hour, minute = int(match["hour"]), int(match["minute"])
    # No year: take the year that puts the time nearest the middle of ls's recent window.
    target = now - _RECENT_MIDDLE
    candidates = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, tzinfo=UTC))
        except ValueError:
            continue  # Feb 29 outside a leap year
    if not candidates:
        raise ValueError("no such date")
    return min(candidates, key=lambda when: abs(when - target))


def parse_list_line(line: str, now: datetime) -> RemoteFile | None:
    """One LIST line as a RemoteFile; None for blank, `total`, `.` and `..` lines."""
    text = line.rstrip("\r\n")
    if not text.strip() or _TOTAL_LINE.match(text):
        return None
    match = _LIST_LINE.match(text)
    if match is None:
        if _LOOKS_LIKE_LIST.match(text):
            raise FtpsError(f"LIST line {text[:120]!r} looks like `ls -l` but cannot be read")
        # NLST-style bare name; X1 firmware sends full paths, P1 bare names (protocol.md §2.1).
        name = text.strip().rstrip("/").rsplit("/", 1)[-1]
        return RemoteFile(name, None, None) if name not in ("", ".", "..") else None
    name = match["name"]
    if match["kind"] == "l":
        name = name.split(" -> ", 1)[0]
    if name in (".", ".."):
        return None
    try:
        modified = _when(match, now)
    except ValueError as err:
        raise FtpsError(f"LIST line {text[:120]!r} has an impossible date") from err
    return RemoteFile(name, int(match["size"]), modified, match["kind"] == "d")


def parse_listing(data: bytes, now: datetime) -> list[RemoteFile]:
    """A whole LIST reply body (UTF-8, or Latin-1 per line when not UTF-8)."""
    files = []
    for raw in data.splitlines():
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("latin-1")  # never fails: SD cards carry names from anywhere
        entry = parse_list_line(line, now)
        if entry is not None:
            files.append(entry)
    return files
