"""The FTPS server's pure parts: command lines, replies, login guard, LIST lines, commands."""

import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.simulator.ftps_commands import Commands, Reply, SessionState
from bambufarm.simulator.ftps_data import format_list_line, format_listing, format_names
from bambufarm.simulator.ftps_server import FtpCommandError, LoginGuard, parse_command
from bambufarm.simulator.storage import Entry, PrinterStorage


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"USER bblp\r\n", ("USER", "bblp")),
        (b"stor my file.3mf\r\n", ("STOR", "my file.3mf")),
        (b"PWD\n", ("PWD", "")),
        (b"CWD /caf\xc3\xa9\r\n", ("CWD", "/caf\u00e9")),
        (b"PASS \r\n", ("PASS", "")),
    ],
)
def test_parse_command(line: bytes, expected: tuple[str, str]) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe\r\n", "not valid UTF-8"),
        (b"\r\n", "3 or 4 letters"),
        (b"N0OP\r\n", "3 or 4 letters"),
        (b"NOOPS\r\n", "3 or 4 letters"),
        (b"\xc3\x89TAT\r\n", "3 or 4 letters"),
        (b"RETR a\x00b\r\n", "control characters"),
        (b"RETR a\rb\r\n", "control characters"),
        (b"RETR a\tb\r\n", "control characters"),
    ],
)
def test_parse_command_refuses_malformed_lines(line: bytes, message: str) -> None:
    with pytest.raises(FtpCommandError, match=message):
        parse_command(line)


@given(st.binary(max_size=64))
def test_parse_command_raises_only_its_own_error(line: bytes) -> None:
    try:
        verb, arg = parse_command(line)
    except FtpCommandError:
        return
    assert verb.isupper()
    assert "\n" not in arg
    assert "\r" not in arg


def test_reply_encoding() -> None:
    assert Reply(200, "NOOP ok.").encode() == b"200 NOOP ok.\r\n"
    assert Reply(550, "bad\r\nname").encode() == b"550 bad  name\r\n"
    assert Reply(211, "End", ("Features:", " EPSV")).encode() == (
        b"211-Features:\r\n EPSV\r\n211 End\r\n"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_login_guard_locks_after_max_failures_within_window() -> None:
    clock = FakeClock()
    guard = LoginGuard(clock, max_failures=3, window=60.0)
    for _ in range(2):
        guard.record_failure("10.0.0.1")
    assert not guard.locked("10.0.0.1")
    guard.record_failure("10.0.0.1")
    assert guard.locked("10.0.0.1")
    assert not guard.locked("10.0.0.2")
    clock.now += 60.0
    assert not guard.locked("10.0.0.1")


def test_login_guard_forgets_failures_spread_over_time() -> None:
    clock = FakeClock()
    guard = LoginGuard(clock, max_failures=3, window=60.0)
    for _ in range(10):
        guard.record_failure("10.0.0.1")
        clock.now += 25.0
    assert not guard.locked("10.0.0.1")


def test_login_guard_success_resets_and_memory_is_bounded() -> None:
    clock = FakeClock()
    guard = LoginGuard(clock, max_failures=2, max_addresses=3)
    guard.record_failure("a")
    guard.record_failure("a")
    assert guard.locked("a")
    guard.record_success("a")
    assert not guard.locked("a")
    guard.record_failure("x")
    guard.record_failure("x")
    for address in ("b", "c", "d"):
        guard.record_failure(address)
    # "x" was the oldest of four addresses with a capacity of three: forgotten.
    assert not guard.locked("x")


JUNE_20 = datetime.datetime(2024, 6, 20, tzinfo=datetime.UTC).timestamp()


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC).timestamp()


def test_list_line_recent_file_has_two_digit_day_and_time() -> None:
    entry = Entry("a.gcode.3mf", 1632221, _at(2024, 6, 7, 9, 5), is_dir=False)
    assert format_list_line(entry, JUNE_20) == (
        "-rw-r--r--    1 1000     1000      1632221 Jun 07 09:05 a.gcode.3mf"
    )


def test_list_line_old_file_and_directory() -> None:
    old = Entry("old.3mf", 5, _at(2023, 11, 30, 23, 59), is_dir=False)
    assert format_list_line(old, JUNE_20).endswith(" 5 Nov 30  2023 old.3mf")
    folder = Entry("cache", 0, _at(2024, 6, 19), is_dir=True)
    assert format_list_line(folder, JUNE_20).startswith(
        "drwxr-xr-x    1 1000     1000         4096 "
    )
    future = Entry("f", 1, _at(2025, 1, 1), is_dir=False)
    assert " Jan 01  2025 f" in format_list_line(future, JUNE_20)


def test_listing_bodies_end_lines_with_crlf() -> None:
    entries = (Entry("a", 1, JUNE_20, False), Entry("b", 2, JUNE_20, False))
    assert format_names(entries) == b"a\r\nb\r\n"
    assert format_listing(entries, JUNE_20).count(b"\r\n") == 2
    assert format_listing((), JUNE_20) == b""


@pytest.fixture
def commands(tmp_path: Path) -> tuple[Commands, SessionState, PrinterStorage]:
    storage = PrinterStorage(tmp_path, capacity_bytes=1_000_000)
    state = SessionState()
    return Commands(storage, state, allow_prot_c=False), state, storage


def test_commands_protection_level(commands: tuple[Commands, SessionState, PrinterStorage]) -> None:
    cmds, state, storage = commands
    assert cmds.prot("P") == Reply(200, "PROT now Private.")
    assert state.private
    assert cmds.prot("C").code == 536
    assert state.private
    assert cmds.prot("S").code == 504
    lenient = Commands(storage, state, allow_prot_c=True)
    assert lenient.prot("c") == Reply(200, "PROT now Clear.")
    assert not state.private


def test_commands_directories(commands: tuple[Commands, SessionState, PrinterStorage]) -> None:
    cmds, state, storage = commands
    assert cmds.mkd('we"ird') == Reply(257, '"/we""ird" created')
    assert cmds.cwd('we"ird').code == 250
    assert cmds.pwd("") == Reply(257, '"/we""ird" is the current directory')
    assert cmds.cdup("").code == 250
    assert state.cwd == "/"
    assert cmds.cdup("").code == 250  # at the root: stays there
    assert state.cwd == "/"
    storage.write_file("f.bin", b"12")
    assert cmds.cwd("f.bin").code == 550
    assert cmds.cwd("../..").code == 550
    assert state.cwd == "/"
    assert cmds.rmd('/we"ird').code == 250
    assert cmds.rmd("cache/../..").code == 550


def test_commands_files(commands: tuple[Commands, SessionState, PrinterStorage]) -> None:
    cmds, state, storage = commands
    storage.write_file("/model/f.bin", b"1234")
    assert cmds.size("/model/f.bin") == Reply(213, "4")
    assert cmds.size("/model").code == 550
    assert cmds.size("/nope").code == 550
    assert cmds.mdtm("/model/f.bin").code == 213
    assert len(cmds.mdtm("/model/f.bin").text) == 14
    assert cmds.rnto("x").code == 503
    assert cmds.rnfr("/nope").code == 550
    assert cmds.rnfr("/model/f.bin").code == 350
    assert state.rename_from == "/model/f.bin"
    assert cmds.rnto("/g.bin") == Reply(250, "Rename successful.")
    assert state.rename_from is None
    assert cmds.dele("/g.bin").code == 250
    assert cmds.dele("/g.bin").code == 550
    assert storage.used_bytes() == 0


def test_commands_settings(commands: tuple[Commands, SessionState, PrinterStorage]) -> None:
    cmds, _state, _storage = commands
    assert cmds.type("I").text == "Switching to Binary mode."
    assert cmds.type("A").text == "Switching to ASCII mode."
    assert cmds.type("E").code == 500
    assert cmds.opts("UTF8 ON").code == 200
    assert cmds.opts("MLST type;").code == 501
    assert cmds.stru("F").code == 200
    assert cmds.stru("R").code == 504
    assert cmds.mode("S").code == 200
    assert cmds.mode("B").code == 504
    assert set(cmds.handlers()) >= {"PWD", "CWD", "CDUP", "MKD", "RMD", "DELE", "SIZE", "RNFR"}
