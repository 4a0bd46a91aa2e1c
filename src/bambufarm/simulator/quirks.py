"""Named behaviours of one simulated printer, like firmware flags, settable from a scenario file.

Only the printer-level quirks act in the printer state machine (`secured`, `stale`, `hms`,
`print_error`); the fleet wiring reads the rest to configure the broker (`max_mqtt_clients`,
`refuse_request_subscription`), the FTPS server (`ftps_*`) and the clock (`time_scale`).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bambufarm.protocol.models import PrinterModel

# protocol.md §12.4: real X1 and P1 firmware runs vsFTPd with require_ssl_reuse; newer models
# are not documented either way, so they default to the lenient behaviour.
_SESSION_REUSE_NAMES = frozenset({"X1C", "X1", "X1E", "P1P", "P1S"})

_HMS_TEXT = re.compile(r"^(?:HMS_)?([0-9A-F]{4})_?([0-9A-F]{4})_?([0-9A-F]{4})_?([0-9A-F]{4})$")
_UINT32_MAX = 0xFFFF_FFFF


class ScenarioError(ValueError):
    """A simulator scenario value (quirk, identity, tray) that cannot be used."""


@dataclass(frozen=True, slots=True)
class HmsEntry:
    """One active HMS condition as the printer reports it in `print.hms[]` (protocol.md §8.1)."""

    attr: int
    code: int

    def __post_init__(self) -> None:
        for name, value in (("attr", self.attr), ("code", self.code)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScenarioError(f"HMS {name} must be an integer, got {value!r}")
            if not 0 <= value <= _UINT32_MAX:
                raise ScenarioError(f"HMS {name} {value} is not an unsigned 32-bit value")

    @classmethod
    def parse(cls, text: str) -> "HmsEntry":
        """An entry from its code string, e.g. "HMS_0700_2000_0002_0001" or "0700200000020001"."""
        match = _HMS_TEXT.match(text.strip().upper())
        if match is None:
            raise ScenarioError(
                f"HMS code {text!r} is not of the form 0700_2000_0002_0001 (four groups of 4 hex)"
            )
        a_hi, a_lo, c_hi, c_lo = (int(group, 16) for group in match.groups())
        return cls(attr=(a_hi << 16) | a_lo, code=(c_hi << 16) | c_lo)

    @property
    def text(self) -> str:
        """The code as printed by Bambu's tools, e.g. "0700_2000_0002_0001"."""
        return (
            f"{self.attr >> 16:04X}_{self.attr & 0xFFFF:04X}_"
            f"{self.code >> 16:04X}_{self.code & 0xFFFF:04X}"
        )

    def to_wire(self) -> dict[str, int]:
        """The `{"attr", "code"}` object of a report."""
        return {"attr": self.attr, "code": self.code}


@dataclass(frozen=True, slots=True)
class Quirks:
    """Firmware-like options and faults of one simulated printer."""

    # fun bit 29 set: unsigned `print.*` commands are refused (protocol.md §9).
    secured: bool = False
    # Broker connection limit (P-series are said to manage about 5); None = unlimited.
    max_mqtt_clients: int | None = None
    # The broker refuses SUBSCRIBE to device/<serial>/request (a client must not need it).
    refuse_request_subscription: bool = False
    # The printer stays connected but publishes nothing (hung push task).
    stale: bool = False
    # FTPS data connections must reuse the control TLS session (vsFTPd require_ssl_reuse);
    # None = the model's default (X1/P1 on, protocol.md §12.4).
    ftps_require_session_reuse: bool | None = None
    # FTPS upload throttle in bytes per second; None = as fast as the link allows.
    ftps_write_rate: int | None = None
    # Drop the FTPS data connection after this many bytes of one upload; None = never.
    ftps_fail_after_bytes: int | None = None
    # HMS conditions active from power-on.
    hms: tuple[HmsEntry, ...] = ()
    # print_error from power-on (0 = none).
    print_error: int = 0
    # Simulated seconds per real second for this printer's clock.
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("secured", "refuse_request_subscription", "stale"):
            _check_bool(name, getattr(self, name))
        if self.ftps_require_session_reuse is not None:
            _check_bool("ftps_require_session_reuse", self.ftps_require_session_reuse)
        _check_optional_positive_int("max_mqtt_clients", self.max_mqtt_clients)
        _check_optional_positive_int("ftps_write_rate", self.ftps_write_rate)
        _check_optional_positive_int("ftps_fail_after_bytes", self.ftps_fail_after_bytes, zero=True)
        if not isinstance(self.hms, tuple) or not all(isinstance(h, HmsEntry) for h in self.hms):
            raise ScenarioError("hms must be a tuple of HmsEntry")
        if isinstance(self.print_error, bool) or not isinstance(self.print_error, int):
            raise ScenarioError(f"print_error must be an integer, got {self.print_error!r}")
        if not 0 <= self.print_error <= _UINT32_MAX:
            raise ScenarioError(f"print_error {self.print_error} is not an unsigned 32-bit value")
        scale = self.time_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ScenarioError(f"time_scale must be a positive number, got {scale!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Quirks":
        """Quirks from a scenario-file mapping; unknown keys and wrong types are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScenarioError(
                f"unknown quirk(s) {', '.join(unknown)}; known quirks: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "hms" in values:
            values["hms"] = _parse_hms_list(values["hms"])
        if "print_error" in values and isinstance(values["print_error"], str):
            values["print_error"] = _parse_print_error(values["print_error"])
        return cls(**values)

    def session_reuse_for(self, model: PrinterModel) -> bool:
        """Whether this printer's FTPS server demands TLS session reuse on data connections."""
        if self.ftps_require_session_reuse is not None:
            return self.ftps_require_session_reuse
        return model.name in _SESSION_REUSE_NAMES


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ScenarioError(f"quirk {name} must be true or false, got {value!r}")


def _check_optional_positive_int(name: str, value: object, *, zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        floor = "non-negative" if zero else "positive"
        raise ScenarioError(f"quirk {name} must be a {floor} integer or null, got {value!r}")


def _parse_hms_list(raw: object) -> tuple[HmsEntry, ...]:
    if not isinstance(raw, list | tuple):
        raise ScenarioError(f"quirk hms must be a list, got {type(raw).__name__}")
    entries: list[HmsEntry] = []
    for item in raw:
        if isinstance(item, HmsEntry):
            entries.append(item)
        elif isinstance(item, str):
            entries.append(HmsEntry.parse(item))
        elif isinstance(item, Mapping) and set(item) == {"attr", "code"}:
            entries.append(HmsEntry(attr=item["attr"], code=item["code"]))
        else:
            raise ScenarioError(
                f"HMS entry {item!r} must be a code string like 0700_2000_0002_0001 "
                'or {"attr": int, "code": int}'
            )
    return tuple(entries)


def _parse_print_error(text: str) -> int:
    # Scenario files may name the error as Bambu shows it: "0300400C" or "0300_400C".
    cleaned = text.strip().replace("_", "").replace("-", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise ScenarioError(f"print_error {text!r} is not 8 hex digits such as 0300400C") from None
