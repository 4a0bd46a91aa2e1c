"""SSDP discovery datagrams (protocol.md §4): NOTIFY, M-SEARCH and the search reply.

Printers announce themselves with `NOTIFY * HTTP/1.1` datagrams on UDP 2021 whose headers carry
the serial (`USN`), the bare IPv4 (`Location`) and Bambu's `Dev*.bambu.com` identity headers.
Some clients send an M-SEARCH instead of waiting; a printer-side responder answers it with a
unicast `HTTP/1.1 200 OK` carrying the same headers, `ST:` for `NT:` and no `NTS:`.
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from bambufarm.protocol.errors import SsdpError

SSDP_PORT = 2021
NT_PRINTER = "urn:bambulab-com:device:3dprinter:1"
# OBFA's farm notes write the type without "device:" (protocol.md §0.3); accept it when parsing.
NT_PRINTER_ABBREVIATED = "urn:bambulab-com:3dprinter:1"
PRINTER_TYPES = frozenset({NT_PRINTER, NT_PRINTER_ABBREVIATED})
SEARCH_ALL = "ssdp:all"
# A real NOTIFY is about 450 bytes; 4 KiB leaves room for long names while refusing floods.
MAX_DATAGRAM_SIZE = 4096

# Informational only: printers write the multicast group here but send to 255.255.255.255.
_HOST = "239.255.255.250:1990"
_SERVER = "UPnP/1.0"
_CACHE_CONTROL = "max-age=1800"
_LINE_BREAK = re.compile(r"\r?\n")


class ConnectType(StrEnum):
    """How the printer is connected: LAN-only mode, cloud mode or a Bambu farm."""

    LAN = "lan"
    CLOUD = "cloud"
    FARM = "farm"


class BindState(StrEnum):
    """Whether the printer is bound to a cloud account or a farm."""

    FREE = "free"
    OCCUPIED = "occupied"


@dataclass(frozen=True, slots=True)
class SsdpNotify:
    """One printer announcement (NOTIFY or search reply): who it is and where."""

    serial: str
    model_code: str
    name: str
    location: str  # bare IPv4, no scheme or port
    connect: ConnectType
    bind: BindState
    version: str
    signal: int | None  # Wi-Fi RSSI in dBm; absent on wired printers and some firmware
    sec_link: str
    interface: str
    dev_cap: int
    alive: bool = True  # False for `ssdp:byebye`


@dataclass(frozen=True, slots=True)
class SsdpSearch:
    """An M-SEARCH asking Bambu printers (or everything) to answer."""

    search_target: str


def format_notify(notify: SsdpNotify) -> bytes:
    """The NOTIFY datagram a printer sends for this announcement (`ssdp:byebye` when not alive)."""
    nts = "ssdp:alive" if notify.alive else "ssdp:byebye"
    headers = (
        ("Host", _HOST),
        ("Server", _SERVER),
        ("Location", notify.location),
        ("NT", NT_PRINTER),
        ("NTS", nts),
        *_identity_headers(notify),
    )
    return _render("NOTIFY * HTTP/1.1", headers)


def format_search_response(notify: SsdpNotify) -> bytes:
    """The unicast reply to an M-SEARCH: the NOTIFY headers with `ST:` and without `NTS:`."""
    headers = (
        ("Server", _SERVER),
        ("Location", notify.location),
        ("ST", NT_PRINTER),
        *_identity_headers(notify),
    )
    return _render("HTTP/1.1 200 OK", headers)


def format_search() -> bytes:
    """An M-SEARCH for Bambu printers."""
    headers = (
        ("Host", _HOST),
        ("MAN", '"ssdp:discover"'),
        ("MX", "3"),
        ("ST", NT_PRINTER),
    )
    return _render("M-SEARCH * HTTP/1.1", headers)


def parse_datagram(data: bytes, source_ip: str) -> SsdpNotify | SsdpSearch:
    """Read a Bambu NOTIFY, search reply or M-SEARCH; anything else raises SsdpError."""
    if len(data) > MAX_DATAGRAM_SIZE:
        raise SsdpError(f"SSDP datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_SIZE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Names typed on the printer are UTF-8, but older firmware is not known to be careful.
        text = data.decode("latin-1")
    start_line, headers = _split(text)
    kind = start_line.upper().split()
    if kind[:1] == ["M-SEARCH"]:
        target = headers.get("st", "")
        if target not in PRINTER_TYPES and target != SEARCH_ALL:
            raise SsdpError(f"not a Bambu datagram: M-SEARCH for {target!r}")
        return SsdpSearch(search_target=target)
    if kind[:1] == ["NOTIFY"]:
        device_type = headers.get("nt", "")
        alive = _alive(headers.get("nts", "ssdp:alive"))
    elif kind[:1] and kind[0].startswith("HTTP/") and kind[1:2] == ["200"]:
        device_type = headers.get("st", "")
        alive = True
    else:
        raise SsdpError(f"not a Bambu datagram: start line {start_line[:60]!r}")
    if device_type not in PRINTER_TYPES:
        raise SsdpError(f"not a Bambu datagram: device type {device_type[:80]!r}")
    return _notify(headers, source_ip, alive=alive)


def _identity_headers(notify: SsdpNotify) -> tuple[tuple[str, str], ...]:
    if not notify.serial or not notify.model_code:
        raise SsdpError("an SSDP announcement needs a serial (USN) and a model code")
    signal = () if notify.signal is None else (("DevSignal.bambu.com", str(notify.signal)),)
    return (
        ("USN", notify.serial),
        ("Cache-Control", _CACHE_CONTROL),
        ("DevModel.bambu.com", notify.model_code),
        ("DevName.bambu.com", notify.name),
        *signal,
        ("DevConnect.bambu.com", str(notify.connect)),
        ("DevBind.bambu.com", str(notify.bind)),
        ("Devseclink.bambu.com", notify.sec_link),
        ("DevInf.bambu.com", notify.interface),
        ("DevVersion.bambu.com", notify.version),
        ("DevCap.bambu.com", str(notify.dev_cap)),
    )


def _render(start_line: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    lines = [start_line]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise SsdpError(f"SSDP header {name} cannot carry a line break: {value!r}")
        if value != value.strip(" \t"):
            raise SsdpError(f"SSDP header {name} cannot start or end with blanks: {value!r}")
        lines.append(f"{name}: {value}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SsdpError(f"SSDP headers are not encodable as UTF-8: {err}") from err
    if len(data) > MAX_DATAGRAM_SIZE:
        raise SsdpError(f"SSDP datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_SIZE}")
    return data


def _split(text: str) -> tuple[str, MappingProxyType[str, str]]:
    lines = _LINE_BREAK.split(text)
    start_line = lines[0].strip()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            break  # end of headers; an SSDP body, if any, is ignored
        name, colon, value = line.partition(":")
        if not colon:
            raise SsdpError(f"SSDP header line without ':': {line[:80]!r}")
        # First occurrence wins; names are case-insensitive (printers write `Devseclink`).
        headers.setdefault(name.strip().lower(), value.strip(" \t"))
    return start_line, MappingProxyType(headers)


def _alive(nts: str) -> bool:
    match nts.lower():
        case "ssdp:alive":
            return True
        case "ssdp:byebye":
            return False
    raise SsdpError(f"unknown NTS {nts[:40]!r}: expected ssdp:alive or ssdp:byebye")


def _notify(headers: MappingProxyType[str, str], source_ip: str, *, alive: bool) -> SsdpNotify:
    serial = headers.get("usn", "")
    if not serial:
        raise SsdpError("Bambu SSDP datagram has no USN (serial)")
    model_code = headers.get("devmodel.bambu.com", "")
    if not model_code:
        raise SsdpError(f"Bambu SSDP datagram from {serial!r} has no DevModel.bambu.com")
    connect_text = headers.get("devconnect.bambu.com", "").lower()
    try:
        connect = ConnectType(connect_text)
    except ValueError:
        raise SsdpError(
            f"DevConnect.bambu.com {connect_text[:40]!r} from {serial!r} is not lan/cloud/farm"
        ) from None
    bind_text = headers.get("devbind.bambu.com", "").lower()
    try:
        bind = BindState(bind_text)
    except ValueError:
        raise SsdpError(
            f"DevBind.bambu.com {bind_text[:40]!r} from {serial!r} is not free/occupied"
        ) from None
    return SsdpNotify(
        serial=serial,
        model_code=model_code,
        name=headers.get("devname.bambu.com", ""),
        # Some firmware replies omit Location (OBN): the sender's address is the printer's.
        location=headers.get("location") or source_ip,
        connect=connect,
        bind=bind,
        version=headers.get("devversion.bambu.com", ""),
        signal=_optional_int(headers.get("devsignal.bambu.com", "")),
        sec_link=headers.get("devseclink.bambu.com", ""),
        interface=headers.get("devinf.bambu.com", ""),
        dev_cap=_optional_int(headers.get("devcap.bambu.com", "")) or 0,
        alive=alive,
    )


def _optional_int(text: str) -> int | None:
    # RSSI and DevCap are cosmetic: a value we cannot read must not hide the printer.
    digits = text.removesuffix("dBm").strip()
    try:
        return int(digits, 10)
    except ValueError:
        return None
