"""HMS health codes and `print_error` values (protocol.md §8): decoding, never Bambu's texts.

An HMS entry is two uint32s. `attr` holds module id (bits 31-24), module instance (23-16) and
part (15-8); `code` holds severity (31-16) and message code (15-0). Printed, they are four
groups of four hex digits: attr 0x03000100 + code 0x00010007 → `HMS_0300_0100_0001_0007`.
`print_error` is one uint32 printed as eight hex digits (`0300400C`, shown `0300_400C`).

Bambu's descriptions are fetched at run time by whoever shows them (§8.3); this module
carries only the few `print_error` explanations the farm acts on, in our own words.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from bambufarm.protocol.errors import HmsError

UINT32_MAX = 0xFFFF_FFFF
WIKI_BASE = "https://wiki.bambulab.com/en"
# Bounds the list a report may carry: printers show a handful of active conditions at once.
MAX_HMS_ENTRIES = 1024


class Severity(StrEnum):
    """HMS severity from the top 16 bits of `code`."""

    FATAL = "fatal"
    SERIOUS = "serious"
    COMMON = "common"
    INFO = "info"
    UNKNOWN = "unknown"  # a level this table does not know (not 1-4)


_SEVERITIES: Mapping[int, Severity] = MappingProxyType(
    {1: Severity.FATAL, 2: Severity.SERIOUS, 3: Severity.COMMON, 4: Severity.INFO}
)

MODULE_AMS = 0x07
MODULE_AMS_LITE = 0x12
MODULE_AMS_HT = 0x18
AMS_MODULES = frozenset({MODULE_AMS, MODULE_AMS_LITE, MODULE_AMS_HT})
# 0x12 and 0x18 are inferred from the message database's texts (§8.1).
MODULE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0x03: "motion controller",
        0x05: "mainboard",
        MODULE_AMS: "AMS",
        0x08: "toolhead",
        0x0C: "AI camera",
        MODULE_AMS_LITE: "AMS Lite",
        MODULE_AMS_HT: "AMS HT",
    }
)

_HMS_TEXT = re.compile(
    r"(?:HMS[_-]?)?([0-9A-F]{4})[_-]?([0-9A-F]{4})[_-]?([0-9A-F]{4})[_-]?([0-9A-F]{4})"
)
_ERROR_TEXT = re.compile(r"([0-9A-F]{4})[_-]?([0-9A-F]{4})")
_SERIES = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")


def _uint32(name: str, value: object) -> int:
    """`value` if it is an int (not a bool) from 0 to 2^32-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
        raise HmsError(f"{name} must be an integer from 0 to {UINT32_MAX}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class HmsCode:
    """One HMS condition, decoded from its `attr`/`code` pair."""

    attr: int
    code: int

    def __post_init__(self) -> None:
        """Refuse values outside uint32, so that every instance prints as 16 hex digits."""
        _uint32("attr", self.attr)
        _uint32("code", self.code)

    @classmethod
    def from_wire(cls, attr: int, code: int) -> "HmsCode":
        """Decode an `hms[]` entry's `attr` and `code` (raises HmsError outside uint32)."""
        return cls(_uint32("attr", attr), _uint32("code", code))

    @classmethod
    def parse(cls, text: str) -> "HmsCode":
        """Read `HMS_0300_0100_0001_0007`, `0300_0100_0001_0007` or `0300010000010007`."""
        match = _HMS_TEXT.fullmatch(text.strip().upper()) if isinstance(text, str) else None
        if match is None:
            raise HmsError(f"HMS code must look like HMS_0300_0100_0001_0007, got {text!r}")
        a_hi, a_lo, c_hi, c_lo = (int(group, 16) for group in match.groups())
        return cls((a_hi << 16) | a_lo, (c_hi << 16) | c_lo)

    @property
    def module_id(self) -> int:
        """The module byte (0x03 motion controller, 0x07 AMS, ...)."""
        return self.attr >> 24

    @property
    def module_instance(self) -> int:
        """Which unit of the module (for AMS modules: the AMS unit, 0 = "AMS A")."""
        return (self.attr >> 16) & 0xFF

    @property
    def part(self) -> int:
        """The part byte of `attr`."""
        return (self.attr >> 8) & 0xFF

    @property
    def severity(self) -> Severity:
        """Fatal, serious, common or info."""
        return _SEVERITIES.get(self.code >> 16, Severity.UNKNOWN)

    @property
    def message_code(self) -> int:
        """The low 16 bits of `code`: which message of the module."""
        return self.code & 0xFFFF

    @property
    def module_name(self) -> str:
        """A short English name for the module, or its id in hex when unknown."""
        return MODULE_NAMES.get(self.module_id, f"module 0x{self.module_id:02X}")

    @property
    def is_ams(self) -> bool:
        """True for conditions raised by an AMS, AMS Lite or AMS HT."""
        return self.module_id in AMS_MODULES

    @property
    def ams_unit(self) -> int | None:
        """The AMS unit (0-based) for AMS conditions, else None."""
        return self.module_instance if self.is_ams else None

    @property
    def ams_slot(self) -> int | None:
        """The slot (0-based) for AMS conditions: the part byte's low nibble (inferred, §8.1)."""
        return self.part & 0x0F if self.is_ams else None

    @property
    def key(self) -> str:
        """16 upper-case hex digits: stable identity for de-duplication and lookups."""
        return f"{self.attr:08X}{self.code:08X}"

    @property
    def display(self) -> str:
        """The code as printers and the wiki show it: `0300_0100_0001_0007`."""
        k = self.key
        return f"{k[0:4]}_{k[4:8]}_{k[8:12]}_{k[12:16]}"

    @property
    def prefixed(self) -> str:
        """The code with its `HMS_` prefix: `HMS_0300_0100_0001_0007`."""
        return f"HMS_{self.display}"

    @property
    def summary(self) -> str:
        """A fallback description from the code alone, for when no text is available."""
        where = self.module_name
        if self.ams_unit is not None:
            where = f"{where} {self.ams_unit + 1} slot {(self.ams_slot or 0) + 1}"
        return f"{self.severity.value} condition {self.display} ({where})"

    def wiki_url(self, series: str) -> str:
        """The wiki page for this code under a model series path such as "x1", "h2", "p2s"."""
        path = series.strip().lower() if isinstance(series, str) else ""
        if not _SERIES.fullmatch(path):
            raise HmsError(f"series must be a wiki path such as 'x1' or 'p2s', got {series!r}")
        return f"{WIKI_BASE}/{path}/troubleshooting/hmscode/{self.display}"

    def __str__(self) -> str:
        """The `HMS_…` form."""
        return self.prefixed


def parse_hms_list(value: object) -> tuple[HmsCode, ...]:
    """The codes of a report's `print.hms` list (extra keys such as `ts_unix` are ignored)."""
    if not isinstance(value, list):
        raise HmsError(f"hms must be a list of {{attr, code}} objects, got {type(value).__name__}")
    if len(value) > MAX_HMS_ENTRIES:
        raise HmsError(f"hms lists {len(value)} entries; at most {MAX_HMS_ENTRIES} are accepted")
    codes: list[HmsCode] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise HmsError(f"hms[{index}] must be an object with attr and code, got {entry!r}")
        attr = _uint32(f"hms[{index}].attr", entry.get("attr"))
        codes.append(HmsCode(attr, _uint32(f"hms[{index}].code", entry.get("code"))))
    return tuple(codes)


# --- print_error -----------------------------------------------------------------------------

PRINT_ERROR_CANCELLED = 0x0300400C

# A few codes the farm reacts to, described in our own words (§8.2).
_PRINT_ERROR_TEXTS: Mapping[int, str] = MappingProxyType(
    {
        PRINT_ERROR_CANCELLED: "The print job was cancelled, from the printer or by a client.",
        0x0300400D: "The printer could not pick the job up again after a power loss.",
        0x03008015: "The external spool has run out of filament.",
        0x07008006: "The AMS could not push filament into the extruder.",
        0x0500C010: (
            "The printer could not read or write its storage card; "
            "an incomplete upload is a common cause."
        ),
    }
)


@dataclass(frozen=True, slots=True)
class PrintError:
    """A `print_error` value: the printer's reason for failing or stopping a job."""

    value: int

    def __post_init__(self) -> None:
        """Refuse values outside uint32."""
        _uint32("print_error", self.value)

    @classmethod
    def from_int(cls, value: int) -> "PrintError":
        """Decode the report's integer (50348044 → `0300400C`); raises HmsError outside uint32."""
        return cls(_uint32("print_error", value))

    @classmethod
    def parse(cls, text: str) -> "PrintError":
        """Read `0300400C`, `0300_400C` or `0300-400C` (as `system.uiop` carries it)."""
        match = _ERROR_TEXT.fullmatch(text.strip().upper()) if isinstance(text, str) else None
        if match is None:
            raise HmsError(f"print error must look like 0300_400C, got {text!r}")
        return cls(int(match.group(1) + match.group(2), 16))

    @property
    def hex(self) -> str:
        """Eight upper-case hex digits, the form of Bambu's error table: `0300400C`."""
        return f"{self.value:08X}"

    @property
    def key(self) -> str:
        """Stable identity for de-duplication and lookups (the hex form)."""
        return self.hex

    @property
    def display(self) -> str:
        """The form printers show: `0300_400C`."""
        return f"{self.hex[:4]}_{self.hex[4:]}"

    @property
    def module_id(self) -> int:
        """The module byte, as in HMS codes (0x03 motion controller, 0x07 AMS, ...)."""
        return self.value >> 24

    @property
    def is_cancel(self) -> bool:
        """True for 0300400C, which the printer raises when a job is stopped on purpose."""
        return self.value == PRINT_ERROR_CANCELLED

    @property
    def known(self) -> bool:
        """True when `description` is one of ours rather than the fallback."""
        return self.value in _PRINT_ERROR_TEXTS

    @property
    def description(self) -> str:
        """What the code means, or a fallback naming the code."""
        return _PRINT_ERROR_TEXTS.get(self.value, f"Printer error {self.display}.")

    def __str__(self) -> str:
        """The displayed form."""
        return self.display


def parse_print_error(value: object) -> PrintError | None:
    """A report's `print_error`: None for 0 (no error), HmsError for non-uint32 values."""
    code = _uint32("print_error", value)
    return None if code == 0 else PrintError(code)
