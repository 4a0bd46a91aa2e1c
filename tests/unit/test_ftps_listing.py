"""The FTPS client's LIST parser and reply-to-error mapping (protocol.md §2.1, §12 rule 15)."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol.errors import ProtocolError
from bambufarm.protocol.ftps_replies import (
    FtpsAuthError,
    FtpsError,
    FtpsNotFoundError,
    FtpsSessionReuseError,
    FtpsStorageFullError,
    FtpsTransferError,
    RemoteFile,
    error_for_reply,
    parse_list_line,
    parse_listing,
)
from bambufarm.simulator.ftps_data import format_list_line
from bambufarm.simulator.storage import Entry

NOW = datetime(2024, 6, 20, 12, 0, tzinfo=UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # vsFTPd on a P1S (protocol.md §2.1)
        (
            "-rw-r--r--    1 1000     1000      1632221 Jun 17 12:12 plate.gcode.3mf",
            RemoteFile("plate.gcode.3mf", 1632221, at(2024, 6, 17, 12, 12), False),
        ),
        # older than six months: the year instead of the time
        (
            "-rw-r--r--    1 0        0             123 Dec 03  2022 old file.3mf",
            RemoteFile("old file.3mf", 123, at(2022, 12, 3), False),
        ),
        # a recent date late in the year belongs to last year
        (
            "-rw-r--r--    1 0        0              10 Dec 30 23:59 new-year.gcode",
            RemoteFile("new-year.gcode", 10, at(2023, 12, 30, 23, 59), False),
        ),
        (
            "drwxr-xr-x    2 1000     1000         4096 Jan 01 00:00 timelapse",
            RemoteFile("timelapse", 4096, at(2024, 1, 1), True),
        ),
        # no group column, single-digit day
        (
            "-rw-r--r-- 1 root 42 Mar 5 08:07 a.3mf",
            RemoteFile("a.3mf", 42, at(2024, 3, 5, 8, 7), False),
        ),
        (
            "lrwxrwxrwx    1 0        0               4 Jun 01 10:00 link -> target",
            RemoteFile("link", 4, at(2024, 6, 1, 10), False),
        ),
        # a name with leading spaces keeps them (only one space separates it)
        (
            "-rw-r--r--    1 0 0 1 Jun 01 10:00  spaced",
            RemoteFile(" spaced", 1, at(2024, 6, 1, 10), False),
        ),
        # NLST-style oddities: P1 bare names, X1 full paths
        ("plate_1.gcode.3mf", RemoteFile("plate_1.gcode.3mf", None, None)),
        ("/sdcard/cache/123.3mf", RemoteFile("123.3mf", None, None)),
        ("total 24", None),
        ("", None),
        ("   \r\n", None),
        ("drwxr-xr-x 2 0 0 4096 Jun 01 10:00 .", None),
        ("drwxr-xr-x 2 0 0 4096 Jun 01 10:00 ..", None),
    ],
)
def test_list_lines(line: str, expected: RemoteFile | None) -> None:
    assert parse_list_line(line, NOW) == expected


@pytest.mark.parametrize(
    "line",
    [
        "-rw-r--r--    1 0 0 12 Foo 01 10:00 bad-month",
        "-rw-r--r--    1 0 0 12 Feb 31 10:00 no-such-day",
        "-rw-r--r--    1 0 0 twelve Jun 01 10:00 no-size",
        "-rw-r--r--",
    ],
)
def test_list_lines_that_look_like_ls_but_cannot_be_read(line: str) -> None:
    with pytest.raises(FtpsError, match="LIST line"):
        parse_list_line(line, NOW)


def test_feb_29_without_year_is_taken_from_the_last_leap_year() -> None:
    entry = parse_list_line("-rw-r--r-- 1 0 0 1 Feb 29 10:00 leap", at(2025, 3, 1))
    assert entry is not None
    assert entry.modified == at(2024, 2, 29, 10)


def test_listing_decodes_utf8_and_falls_back_to_latin1_per_line() -> None:
    body = (
        "-rw-r--r-- 1 0 0 1 Jun 01 10:00 Würfel.3mf\r\n".encode()
        + b"-rw-r--r-- 1 0 0 2 Jun 01 10:00 W\xfcrfel2.3mf\r\n"
        + b"total 2\r\n"
    )
    assert [e.name for e in parse_listing(body, NOW)] == ["Würfel.3mf", "Würfel2.3mf"]


# Files a printer can hold: any time in the last two years, sizes up to a large timelapse.
entries = st.builds(
    Entry,
    name=st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="/"),
        min_size=1,
        max_size=40,
    ).filter(lambda n: n.strip() == n and n not in (".", "..") and " -> " not in n),
    size=st.integers(0, 2**40),
    mtime=st.floats(NOW.timestamp() - 2 * 365 * 86400, NOW.timestamp(), allow_nan=False),
    is_dir=st.booleans(),
)


@given(entries)
def test_parses_what_the_simulated_printer_lists(entry: Entry) -> None:
    line = format_list_line(entry, NOW.timestamp())
    parsed = parse_list_line(line, NOW)
    assert parsed is not None
    assert parsed.name == entry.name
    assert parsed.is_dir == entry.is_dir
    assert parsed.size == (4096 if entry.is_dir else entry.size)
    stamp = datetime(*time.gmtime(entry.mtime)[:6], tzinfo=UTC)  # as the printer rounds it
    assert parsed.modified is not None
    if NOW - parsed.modified < timedelta(days=182):
        assert parsed.modified == stamp.replace(second=0, microsecond=0)
    else:
        assert parsed.modified == stamp.replace(hour=0, minute=0, second=0, microsecond=0)


@given(st.binary(max_size=400))
def test_any_bytes_give_entries_or_one_typed_error(data: bytes) -> None:
    try:
        files = parse_listing(data, NOW)
    except FtpsError:
        return
    assert all(isinstance(f, RemoteFile) and f.name for f in files)


@pytest.mark.parametrize(
    ("reply", "error", "advice"),
    [
        ("530 Login incorrect.", FtpsAuthError, "access code"),
        ("552 Could not store /x: storage full.", FtpsStorageFullError, "delete old files"),
        ("452 Insufficient storage.", FtpsStorageFullError, "delete old files"),
        ("522 SSL connection failed: session reuse required", FtpsSessionReuseError, "resume"),
        ("550 Failed to open file.", FtpsNotFoundError, "check the file name"),
        ("426 Failure reading network stream.", FtpsTransferError, "retry"),
        ("421 Timeout.", FtpsError, "retry"),
        ("502 Command not implemented.", FtpsError, "unexpected"),
    ],
)
def test_replies_map_to_typed_errors_that_say_what_to_do(
    reply: str, error: type[FtpsError], advice: str
) -> None:
    err = error_for_reply(reply, action="uploading x.3mf", where="printer 10.0.0.5:990")
    assert type(err) is error
    assert isinstance(err, ProtocolError)
    assert "printer 10.0.0.5:990" in str(err)
    assert advice in str(err)
