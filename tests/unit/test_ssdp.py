"""SSDP NOTIFY / M-SEARCH / search reply: formatting, parsing, and hostile input."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol.errors import SsdpError
from bambufarm.protocol.ssdp import (
    MAX_DATAGRAM_SIZE,
    NT_PRINTER,
    NT_PRINTER_ABBREVIATED,
    BindState,
    ConnectType,
    SsdpNotify,
    SsdpSearch,
    format_notify,
    format_search,
    format_search_response,
    parse_datagram,
)

CAPTURE = (
    b"NOTIFY * HTTP/1.1\r\n"
    b"Host: 239.255.255.250:1990\r\n"
    b"Server: Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8\r\n"
    b"Location: 192.168.1.50\r\n"
    b"NT: urn:bambulab-com:device:3dprinter:1\r\n"
    b"NTS: ssdp:alive\r\n"
    b"USN: 01P00A123456789\r\n"
    b"Cache-Control: max-age=1800\r\n"
    b"DevModel.bambu.com: C12\r\n"
    b"DevName.bambu.com: Shop P1S\r\n"
    b"DevSignal.bambu.com: -52\r\n"
    b"DevConnect.bambu.com: lan\r\n"
    b"DevBind.bambu.com: free\r\n"
    b"Devseclink.bambu.com: secure\r\n"
    b"DevInf.bambu.com: wlan0\r\n"
    b"DevVersion.bambu.com: 01.08.00.00\r\n"
    b"DevCap.bambu.com: 1\r\n"
    b"\r\n"
)

EXPECTED = SsdpNotify(
    serial="01P00A123456789",
    model_code="C12",
    name="Shop P1S",
    location="192.168.1.50",
    connect=ConnectType.LAN,
    bind=BindState.FREE,
    version="01.08.00.00",
    signal=-52,
    sec_link="secure",
    interface="wlan0",
    dev_cap=1,
    alive=True,
)


def test_parses_a_captured_notify() -> None:
    assert parse_datagram(CAPTURE, "192.168.1.99") == EXPECTED


def test_header_names_are_case_insensitive_and_bare_lf_is_accepted() -> None:
    shouted = b"\n".join(
        line.split(b":", 1)[0].upper() + b":" + line.split(b":", 1)[1] if b":" in line else line
        for line in CAPTURE.split(b"\r\n")[1:]
    )
    data = b"NOTIFY * HTTP/1.1\n" + shouted
    assert parse_datagram(data, "192.168.1.99") == EXPECTED


def test_missing_location_falls_back_to_the_source_address() -> None:
    data = CAPTURE.replace(b"Location: 192.168.1.50\r\n", b"")
    assert parse_datagram(data, "10.0.0.7").location == "10.0.0.7"


def test_missing_signal_is_none() -> None:
    data = CAPTURE.replace(b"DevSignal.bambu.com: -52\r\n", b"")
    assert parse_datagram(data, "10.0.0.7").signal is None  # type: ignore[union-attr]


def test_unreadable_signal_does_not_hide_the_printer() -> None:
    data = CAPTURE.replace(b"-52", b"strong")
    assert parse_datagram(data, "10.0.0.7") == dataclasses.replace(EXPECTED, signal=None)


def test_abbreviated_farm_type_is_accepted() -> None:
    data = CAPTURE.replace(NT_PRINTER.encode(), NT_PRINTER_ABBREVIATED.encode())
    assert parse_datagram(data, "10.0.0.7") == EXPECTED


def test_byebye_is_not_alive() -> None:
    data = CAPTURE.replace(b"ssdp:alive", b"ssdp:byebye")
    assert parse_datagram(data, "10.0.0.7") == dataclasses.replace(EXPECTED, alive=False)


def test_utf8_name_and_latin1_fallback() -> None:
    utf8 = CAPTURE.replace(b"Shop P1S", "Werkstatt Süd ✓".encode())
    assert parse_datagram(utf8, "10.0.0.7").name == "Werkstatt Süd ✓"  # type: ignore[union-attr]
    latin1 = CAPTURE.replace(b"Shop P1S", "Süd".encode("latin-1"))
    assert parse_datagram(latin1, "10.0.0.7").name == "Süd"  # type: ignore[union-attr]


def test_format_notify_matches_the_capture_layout() -> None:
    data = format_notify(EXPECTED)
    assert data.startswith(b"NOTIFY * HTTP/1.1\r\n")
    assert data.endswith(b"\r\n\r\n")
    assert b"\r\nNT: urn:bambulab-com:device:3dprinter:1\r\n" in data
    assert b"\r\nNTS: ssdp:alive\r\n" in data
    assert b"\r\nDevseclink.bambu.com: secure\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_byebye_is_formatted() -> None:
    data = format_notify(dataclasses.replace(EXPECTED, alive=False))
    assert b"\r\nNTS: ssdp:byebye\r\n" in data


def test_search_response_has_st_and_no_nts() -> None:
    data = format_search_response(EXPECTED)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nST: urn:bambulab-com:device:3dprinter:1\r\n" in data
    assert b"NTS:" not in data
    assert b"\r\nNT:" not in data


def test_search_roundtrip() -> None:
    data = format_search()
    assert data.startswith(b"M-SEARCH * HTTP/1.1\r\n")
    assert b'MAN: "ssdp:discover"' in data
    assert parse_datagram(data, "127.0.0.1") == SsdpSearch(search_target=NT_PRINTER)


def test_search_for_everything_is_a_search() -> None:
    data = b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\n\r\n'
    assert parse_datagram(data, "127.0.0.1") == SsdpSearch(search_target="ssdp:all")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\nUSN: uuid:1\r\n\r\n",
            "not a Bambu datagram",
        ),
        (
            b"NOTIFY * HTTP/1.1\r\nNT: urn:bambulab-com:farm:server:1\r\nNTS: ssdp:alive\r\n\r\n",
            "not a Bambu datagram",
        ),
        (
            b"M-SEARCH * HTTP/1.1\r\nST: urn:dial-multiscreen-org:service:dial:1\r\n\r\n",
            "not a Bambu datagram",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a Bambu datagram"),
        (b"", "not a Bambu datagram"),
        (CAPTURE.replace(b"USN: 01P00A123456789\r\n", b""), "no USN"),
        (CAPTURE.replace(b"DevModel.bambu.com: C12\r\n", b""), "DevModel"),
        (CAPTURE.replace(b"DevConnect.bambu.com: lan", b"DevConnect.bambu.com: wifi"), "lan/cloud"),
        (CAPTURE.replace(b"DevBind.bambu.com: free\r\n", b""), "free/occupied"),
        (CAPTURE.replace(b"ssdp:alive", b"ssdp:update"), "unknown NTS"),
        (CAPTURE.replace(b"Server:", b"Server"), "without ':'"),
        (CAPTURE + b"X" * MAX_DATAGRAM_SIZE, "exceeds"),
    ],
)
def test_bad_datagrams_raise_ssdp_error(data: bytes, message: str) -> None:
    with pytest.raises(SsdpError, match=message):
        parse_datagram(data, "127.0.0.1")


@pytest.mark.parametrize(
    "change",
    [
        {"name": "evil\r\nNTS: ssdp:byebye"},
        {"name": " padded"},
        {"serial": ""},
        {"model_code": ""},
        {"name": "\ud800"},
        {"name": "x" * MAX_DATAGRAM_SIZE},
    ],
)
def test_format_refuses_values_that_cannot_round_trip(change: dict[str, str]) -> None:
    with pytest.raises(SsdpError):
        format_notify(dataclasses.replace(EXPECTED, **change))  # type: ignore[arg-type]


def _header_text(*, allow_empty: bool = True) -> st.SearchStrategy[str]:
    text = st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        min_size=0 if allow_empty else 1,
        max_size=40,
    )
    return text.filter(lambda value: value == value.strip(" \t") and (allow_empty or value))


notifies = st.builds(
    SsdpNotify,
    serial=_header_text(allow_empty=False),
    model_code=_header_text(allow_empty=False),
    name=_header_text(),
    location=_header_text(allow_empty=False),
    connect=st.sampled_from(ConnectType),
    bind=st.sampled_from(BindState),
    version=_header_text(),
    signal=st.none() | st.integers(min_value=-120, max_value=0),
    sec_link=_header_text(),
    interface=_header_text(),
    dev_cap=st.integers(min_value=0, max_value=2**31),
    alive=st.booleans(),
)


@given(notifies)
def test_notify_format_parse_identity(notify: SsdpNotify) -> None:
    assert parse_datagram(format_notify(notify), "127.0.0.9") == notify


@given(notifies)
def test_search_response_format_parse_identity(notify: SsdpNotify) -> None:
    parsed = parse_datagram(format_search_response(notify), "127.0.0.9")
    assert parsed == dataclasses.replace(notify, alive=True)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_ssdp_error(data: bytes) -> None:
    try:
        result = parse_datagram(data, "127.0.0.1")
    except SsdpError:
        return
    assert isinstance(result, SsdpNotify | SsdpSearch)


@given(notifies, st.data())
def test_mangled_notify_raises_only_ssdp_error(notify: SsdpNotify, data: st.DataObject) -> None:
    raw = bytearray(format_notify(notify))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        result = parse_datagram(bytes(raw), "127.0.0.1")
    except SsdpError:
        return
    assert isinstance(result, SsdpNotify | SsdpSearch)
