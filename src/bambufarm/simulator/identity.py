"""Who a simulated printer is: serial, model, access code, firmware and AMS hardware.

The identity is fixed for the printer's life; what changes while it runs (temperatures, jobs,
tray contents) lives in the printer state machine. `version_modules()` builds the
`info.get_version` module list from it (protocol.md §1.6), so that the modules always match
the AMS block of the reports.
"""

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bambufarm.protocol.models import SERIAL_LENGTH, PrinterModel, ReportMode

from .quirks import ScenarioError

_FIRMWARE = re.compile(r"^\d{2}\.\d{2}\.\d{2}\.\d{2}$")
_COLOUR = re.compile(r"^#?([0-9A-Fa-f]{6})([0-9A-Fa-f]{2})?$")
_MAX_INDEX = 999_999_999  # nine digits after the six-character prefix block
AMS_HT_FIRST_ID = 128  # AMS HT units are numbered 128, 129, ... (protocol.md §1.5.5)

# Plausible current firmware per model (only the format matters to clients; HA compares these
# against its "authorization firmware" thresholds, protocol.md §9.1).
_DEFAULT_FIRMWARE = {
    "X1C": "01.08.02.00",
    "X1": "01.08.02.00",
    "X1E": "01.01.02.00",
    "P1P": "01.08.00.00",
    "P1S": "01.08.00.00",
    "P2S": "01.00.01.00",
    "A1 mini": "01.04.00.00",
    "A1": "01.04.00.00",
    "A2L": "01.00.00.00",
    "H2D": "01.01.01.00",
    "H2D Pro": "01.01.01.00",
    "H2S": "01.01.00.00",
    "H2C": "01.00.00.00",
    "X2D": "01.00.00.00",
}


class AmsKind(StrEnum):
    """AMS hardware generations; the value is the get_version module name stem."""

    AMS = "ams"  # AMS (first generation), 4 slots
    AMS_LITE = "ams_f1"  # A1 / A1 mini AMS Lite, 4 slots
    AMS_2_PRO = "n3f"  # AMS 2 Pro, 4 slots
    AMS_HT = "n3s"  # AMS HT, 1 slot, unit ids from 128

    @property
    def slots(self) -> int:
        """Number of filament slots in one unit."""
        return 1 if self is AmsKind.AMS_HT else 4

    @property
    def product_name(self) -> str:
        """The get_version product name stem, e.g. "AMS 2 Pro"."""
        return _AMS_PRODUCT[self]

    @property
    def hw_ver(self) -> str:
        """A plausible get_version hardware version for the unit."""
        return _AMS_HW[self]


_AMS_PRODUCT = {
    AmsKind.AMS: "AMS",
    AmsKind.AMS_LITE: "AMS Lite",
    AmsKind.AMS_2_PRO: "AMS 2 Pro",
    AmsKind.AMS_HT: "AMS HT",
}
_AMS_HW = {
    AmsKind.AMS: "AMS08",
    AmsKind.AMS_LITE: "AMS_F102",
    AmsKind.AMS_2_PRO: "N3F05",
    AmsKind.AMS_HT: "N3S05",
}


@dataclass(frozen=True, slots=True)
class TraySpec:
    """The spool in one slot at power-on; `material == ""` means the slot is empty."""

    material: str = ""  # tray_type, e.g. "PLA"
    colour: str = "FFFFFFFF"  # RRGGBBAA; "#RRGGBB" and "RRGGBB" are accepted and normalised
    remain: int = -1  # percent 0-100; -1 = unknown (non-RFID spools)
    weight_g: int = 0  # spool net weight; 0 = unknown (non-RFID spools report "0")
    info_idx: str = ""  # Bambu preset id, e.g. "GFA00"
    sub_brand: str = ""  # e.g. "PLA Basic"
    bambu: bool = False  # a Bambu RFID spool (tag_uid/tray_uuid non-zero)

    def __post_init__(self) -> None:
        match = _COLOUR.match(self.colour)
        if match is None:
            raise ScenarioError(f"tray colour {self.colour!r} is not #RRGGBB or RRGGBBAA")
        rgb, alpha = match.groups()
        object.__setattr__(self, "colour", (rgb + (alpha or "FF")).upper())
        if not -1 <= self.remain <= 100:
            raise ScenarioError(f"tray remain {self.remain} is not a percentage (or -1)")
        if self.weight_g < 0:
            raise ScenarioError(f"tray weight {self.weight_g} g is negative")

    @property
    def empty(self) -> bool:
        """True when no spool is loaded."""
        return not self.material


@dataclass(frozen=True, slots=True)
class AmsUnitSpec:
    """One AMS unit attached to the printer."""

    unit_id: int  # 0-3 for AMS / AMS Lite / AMS 2 Pro, 128+ for AMS HT
    kind: AmsKind
    trays: tuple[TraySpec, ...]
    humidity: int = 4  # wire index 1-5, 5 = driest (protocol.md §1.5.5)
    temp_c: float = 24.0

    def __post_init__(self) -> None:
        if len(self.trays) != self.kind.slots:
            raise ScenarioError(
                f"{self.kind.product_name} unit {self.unit_id} needs {self.kind.slots} trays, "
                f"got {len(self.trays)}"
            )
        is_ht = self.kind is AmsKind.AMS_HT
        valid = (
            AMS_HT_FIRST_ID <= self.unit_id < AMS_HT_FIRST_ID + 8
            if is_ht
            else 0 <= self.unit_id < 4
        )
        if not valid:
            expected = "128-135" if is_ht else "0-3"
            raise ScenarioError(
                f"{self.kind.product_name} unit id {self.unit_id} is outside {expected}"
            )
        if not 1 <= self.humidity <= 5:
            raise ScenarioError(f"AMS humidity index {self.humidity} is outside 1-5")

    def global_tray_id(self, slot: int) -> int:
        """The tray id used in ams_mapping / tray_now: unit*4+slot, or the unit id for AMS HT."""
        return self.unit_id if self.kind is AmsKind.AMS_HT else self.unit_id * 4 + slot


@dataclass(frozen=True, slots=True)
class PrinterIdentity:
    """The fixed identity of one simulated printer."""

    serial: str
    model: PrinterModel
    name: str
    access_code: str = field(repr=False)  # never in logs (design.md §4.8)
    firmware: str = ""  # get_version ota sw_ver; "" = the model's default
    ams: tuple[AmsUnitSpec, ...] = ()
    # External spool holders: vt_tray on single-nozzle models, vir_slot[] (one per nozzle,
    # ids 255 main/right then 254 deputy/left) on dual-nozzle models. Missing ones are empty.
    external: tuple[TraySpec, ...] = ()
    ip: str = "127.0.0.1"  # reported in net.info[0].ip

    def __post_init__(self) -> None:
        if len(self.serial) != SERIAL_LENGTH or not self.serial.isalnum():
            raise ScenarioError(f"serial {self.serial!r} is not 15 letters and digits")
        if self.serial[:3].upper() != self.model.serial_prefix:
            raise ScenarioError(
                f"serial {self.serial!r} does not start with the {self.model.name} "
                f"prefix {self.model.serial_prefix!r}; clients decide the model from it"
            )
        if len(self.access_code) != 8 or not self.access_code.isascii():
            raise ScenarioError("access code must be 8 ASCII characters")
        if not self.firmware:
            object.__setattr__(
                self, "firmware", _DEFAULT_FIRMWARE.get(self.model.name, "01.00.00.00")
            )
        if not _FIRMWARE.match(self.firmware):
            raise ScenarioError(f"firmware {self.firmware!r} is not of the form 01.08.00.00")
        ids = [unit.unit_id for unit in self.ams]
        if len(set(ids)) != len(ids):
            raise ScenarioError(f"AMS unit ids {ids} repeat")
        if len(self.external) > self.model.nozzles:
            raise ScenarioError(
                f"{self.model.name} has {self.model.nozzles} external spool holder(s), "
                f"got {len(self.external)}"
            )
        try:
            address = ipaddress.IPv4Address(self.ip)
        except ValueError:
            raise ScenarioError(f"printer address {self.ip!r} is not an IPv4 address") from None
        object.__setattr__(self, "ip", str(address))

    @property
    def ip_wire(self) -> int:
        """The address as `net.info[].ip`: the four bytes read as a little-endian integer."""
        return int.from_bytes(ipaddress.IPv4Address(self.ip).packed, "little")

    def external_trays(self) -> tuple[TraySpec, ...]:
        """One spec per external holder (model.nozzles of them), empty where none was given."""
        missing = self.model.nozzles - len(self.external)
        return self.external + (TraySpec(),) * missing

    def hardware_id(self, part: str, length: int) -> str:
        """A stable pseudo-random hex id for a part of this printer (tag_uid, tray_uuid, sn)."""
        digest = hashlib.blake2b(f"{self.serial}/{part}".encode(), digest_size=16).hexdigest()
        return digest[:length].upper()

    def version_modules(self) -> list[dict[str, Any]]:
        """The `info.get_version` module list: ota, main boards and one entry per AMS unit."""
        sn = self.serial
        modules: list[dict[str, Any]] = [
            _module("ota", self.firmware, "OTA", sn, product_name=self.model.product_name),
        ]
        if self.model.report_mode is ReportMode.FULL:  # X1 family: Linux AP board (rv1126)
            hw = "AP02" if self.model.name == "X1E" else "AP05"
            modules.append(_module("rv1126", "00.00.28.55", hw, sn, project_name=self.model.code))
        elif self.model.sdcard_url:  # P1 / A1: ESP32 main board named by model code
            modules.append(
                _module("esp32", "01.11.35.43", "AP04", sn, project_name=self.model.code)
            )
        else:  # P2S / H2 family
            modules.append(_module("ap", "00.00.50.02", "AP05", sn))
        modules.append(
            _module("mc", "00.00.29.75", "MC07", self.hardware_id("mc", 15), loader="00.00.00.23")
        )
        modules.append(_module("th", "00.00.09.95", "TH09", self.hardware_id("th", 15)))
        if self.ams and self.ams[0].kind is not AmsKind.AMS_LITE:
            modules.append(_module("ahb", "00.00.09.75", "AHB02", self.hardware_id("ahb", 15)))
        for unit in self.ams:
            # Product names count units from 1 within a kind ("AMS (1)", "AMS HT (1)").
            number = unit.unit_id - (AMS_HT_FIRST_ID if unit.kind is AmsKind.AMS_HT else 0) + 1
            modules.append(
                _module(
                    f"{unit.kind.value}/{unit.unit_id}",
                    "00.00.06.49",
                    unit.kind.hw_ver,
                    self.hardware_id(f"ams{unit.unit_id}", 15),
                    product_name=f"{unit.kind.product_name} ({number})",
                )
            )
        return modules


def _module(
    name: str,
    sw_ver: str,
    hw_ver: str,
    sn: str,
    *,
    product_name: str = "",
    project_name: str = "",
    loader: str = "00.00.00.00",
) -> dict[str, Any]:
    # BD: slicers expect at least name, product_name, sw_ver, sw_new_ver, sn, hw_ver, flag.
    module: dict[str, Any] = {
        "name": name,
        "product_name": product_name,
        "sw_ver": sw_ver,
        "sw_new_ver": "",
        "hw_ver": hw_ver,
        "loader_ver": loader,
        "sn": sn,
        "flag": 0,
        "visible": bool(product_name),
    }
    if project_name:
        module["project_name"] = project_name
    return module


def make_serial(model: PrinterModel, index: int) -> str:
    """A serial for the `index`-th simulated printer of a model, with the model's real prefix."""
    if not 0 <= index <= _MAX_INDEX:
        raise ScenarioError(f"printer index {index} is outside 0-{_MAX_INDEX}")
    return f"{model.serial_prefix}00A{index:09d}"


def default_ams(model: PrinterModel) -> tuple[AmsUnitSpec, ...]:
    """The AMS a typical printer of this model is sold with, with a mix of spools loaded."""
    trays = (
        TraySpec("PLA", "#FFFFFF", remain=82, weight_g=1000, info_idx="GFA00",
                 sub_brand="PLA Basic", bambu=True),
        TraySpec("PLA", "#000000", remain=100, weight_g=1000, info_idx="GFA00",
                 sub_brand="PLA Basic", bambu=True),
        TraySpec("PETG", "#161616", info_idx="GFG99"),
        TraySpec(),
    )  # fmt: skip
    if model.name in ("A1", "A1 mini"):
        return (AmsUnitSpec(0, AmsKind.AMS_LITE, trays),)
    if model.name.startswith("H2") or model.name == "X2D":
        ht = (TraySpec("PETG", "#FF6A13", remain=60, weight_g=1000, info_idx="GFG02", bambu=True),)
        return (
            AmsUnitSpec(0, AmsKind.AMS_2_PRO, trays),
            AmsUnitSpec(AMS_HT_FIRST_ID, AmsKind.AMS_HT, ht, humidity=5),
        )
    if model.name == "A2L":
        return (AmsUnitSpec(0, AmsKind.AMS_2_PRO, trays),)
    return (AmsUnitSpec(0, AmsKind.AMS, trays),)


def default_identity(
    model: PrinterModel,
    index: int,
    *,
    access_code: str,
    ip: str = "127.0.0.1",
    name: str | None = None,
) -> PrinterIdentity:
    """A ready-made identity: right serial prefix, default firmware and the model's usual AMS."""
    return PrinterIdentity(
        serial=make_serial(model, index),
        model=model,
        name=name or f"{model.name} #{index}",
        access_code=access_code,
        ams=default_ams(model),
        ip=ip,
    )
