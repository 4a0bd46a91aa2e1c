"""The typed view of a printer's filament system: AMS units, trays, external spools.

Built from `print.ams`, `print.vt_tray` and `print.vir_slot` (protocol.md §1.5.5, §1.5.6).
Wire ids are strings ("0"-"3", "128", "254"); here they are ints. Global tray ids follow
`tray_now`: `unit*4 + slot` for AMS and AMS Lite units 0-3, the unit id itself (128-135) for
the single-slot AMS HT, 254/255 for external spools.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bambufarm.protocol.coerce import to_float, to_hex, to_int, to_str

# AMS HT units are numbered from 128 and hold one spool each (protocol.md §1.5.5, §1.6).
AMS_HT_FIRST_ID = 128
SLOTS_PER_AMS = 4
EXTERNAL_TRAY_IDS = (254, 255)
NO_TRAY = 255
_HUMIDITY_INDEX_MAX = 5

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AmsTray:
    """One filament slot: an AMS tray or an external spool holder (§1.5.6)."""

    id: int
    state: int | None = None  # legacy 0-3 or extended 8-11 (+ transient RFID-scan values)
    type: str = ""  # material ("PLA"); empty = no spool or metadata cleared
    sub_brand: str = ""
    info_idx: str = ""  # Bambu filament preset id, e.g. "GFA00"
    id_name: str = ""  # RFID product/colour SKU, e.g. "A00-W1"
    color: str = ""  # RRGGBBAA, upper case
    weight_g: int | None = None  # net spool weight from RFID; 0 for non-RFID spools
    diameter: float | None = None
    remain: int = -1  # percent 0-100, -1 unknown
    tray_uuid: str = ""  # spool identity, same on both RFID tags of a spool
    tag_uid: str = ""  # RFID chip id, differs per spool side
    nozzle_temp_min: int | None = None
    nozzle_temp_max: int | None = None
    k: float | None = None  # pressure-advance K
    cali_idx: int | None = None  # selected PA profile, -1 default

    @property
    def loaded(self) -> bool:
        """True when the tray reports a material (a spool with known metadata)."""
        return bool(self.type)

    @property
    def has_rfid(self) -> bool:
        """True when a Bambu RFID tag was read (tag_uid is not all zeros)."""
        return bool(self.tag_uid.strip("0"))

    @property
    def spool_uuid(self) -> str | None:
        """The spool identity to key spool tracking on, None for non-RFID spools."""
        return self.tray_uuid if self.tray_uuid.strip("0") else None


@dataclass(frozen=True, slots=True)
class AmsUnit:
    """One AMS, AMS Lite, AMS 2 Pro or AMS HT unit."""

    id: int
    # Wire humidity is an index 1-5 where 5 is driest; the slicer and the printer screen show
    # level 6 - index (bambuddy #3140, ha-bambulab PR #502), so both are kept.
    humidity: int | None = None
    humidity_level: int | None = None
    humidity_raw: int | None = None  # real RH percent, AMS 2 Pro / AMS HT only
    temp: float | None = None
    dry_time: int | None = None  # minutes of drying left
    trays: tuple[AmsTray, ...] = ()

    @property
    def is_ams_ht(self) -> bool:
        """True for an AMS HT (ids 128-135, one slot)."""
        return self.id >= AMS_HT_FIRST_ID

    def global_tray_id(self, slot: int) -> int:
        """The `tray_now`-style id of one of this unit's slots."""
        if self.is_ams_ht:
            return self.id + slot
        return self.id * SLOTS_PER_AMS + slot

    def tray(self, slot: int) -> AmsTray | None:
        """The tray in `slot`, or None when the unit did not report it."""
        for tray in self.trays:
            if tray.id == slot:
                return tray
        return None


@dataclass(frozen=True, slots=True)
class Ams:
    """The whole filament system of one printer."""

    units: tuple[AmsUnit, ...] = ()
    external: tuple[AmsTray, ...] = ()  # vt_tray (254 or 255) or vir_slot[] on dual nozzle
    tray_now: int | None = None  # active global tray id, 255 none
    tray_pre: int | None = None
    tray_tar: int | None = None
    ams_exist_bits: int | None = None
    tray_exist_bits: int | None = None  # bit unit*4+slot
    tray_is_bbl_bits: int | None = None
    tray_read_done_bits: int | None = None
    status: int | None = None  # ams_status: high byte main state, low byte sub-step
    version: int | None = None  # changes whenever anything in the AMS changes

    def unit(self, unit_id: int) -> AmsUnit | None:
        """The unit with this id, or None."""
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        return None

    def tray(self, global_id: int) -> AmsTray | None:
        """The tray for a global tray id (as in `tray_now` / `ams_mapping`), or None."""
        if global_id in EXTERNAL_TRAY_IDS:
            for spool in self.external:
                if spool.id == global_id:
                    return spool
            # Legacy printers report their one external spool as 254, the X1 mock as 255
            # (protocol.md §1.5.6): a single holder answers to either id.
            return self.external[0] if len(self.external) == 1 else None
        if global_id >= AMS_HT_FIRST_ID:
            unit = self.unit(global_id)
            return unit.tray(0) if unit is not None else None
        unit = self.unit(global_id // SLOTS_PER_AMS)
        return unit.tray(global_id % SLOTS_PER_AMS) if unit is not None else None

    @property
    def active_tray(self) -> AmsTray | None:
        """The tray currently feeding the nozzle, from `tray_now` (255 = none)."""
        if self.tray_now is None or self.tray_now == NO_TRAY:
            return None
        return self.tray(self.tray_now)


# Fallbacks for a unit or tray seen for the first time: only their field defaults are read.
_BLANK_TRAY = AmsTray(-1)
_BLANK_UNIT = AmsUnit(-1)


def build_ams(raw: Mapping[str, Any], previous: Ams, previous_raw: Mapping[str, Any]) -> Ams:
    """The typed AMS view of a merged `print` object; odd values keep their previous value.

    `previous_raw` is the wire object `previous` was built from: units and trays whose wire
    objects are unchanged (the same object after a copy-on-write merge, or equal) are reused
    instead of rebuilt, which keeps a delta that touches one tray cheap.
    """
    block = raw.get("ams")
    if block is None:
        block = _EMPTY
    elif not isinstance(block, dict):
        block = None  # an `ams` that is not an object: every AMS field keeps its value
    external = _build_external(raw, previous.external, previous_raw)
    status = to_int(raw.get("ams_status"), previous.status)
    if block is None:
        return Ams(
            previous.units,
            external,
            previous.tray_now,
            previous.tray_pre,
            previous.tray_tar,
            previous.ams_exist_bits,
            previous.tray_exist_bits,
            previous.tray_is_bbl_bits,
            previous.tray_read_done_bits,
            status,
            previous.version,
        )
    previous_block = previous_raw.get("ams")
    previous_units = previous_block.get("ams") if isinstance(previous_block, dict) else None
    return Ams(
        _build_units(block.get("ams"), previous.units, previous_units),
        external,
        to_int(block.get("tray_now"), previous.tray_now),
        to_int(block.get("tray_pre"), previous.tray_pre),
        to_int(block.get("tray_tar"), previous.tray_tar),
        to_hex(block.get("ams_exist_bits"), previous.ams_exist_bits),
        to_hex(block.get("tray_exist_bits"), previous.tray_exist_bits),
        to_hex(block.get("tray_is_bbl_bits"), previous.tray_is_bbl_bits),
        to_hex(block.get("tray_read_done_bits"), previous.tray_read_done_bits),
        status,
        to_int(block.get("version"), previous.version),
    )


def build_tray(raw: Mapping[str, Any], previous: AmsTray | None) -> AmsTray | None:
    """A typed tray from its wire object; None when it has no usable id."""
    tray_id = to_int(raw.get("id"), None)
    if tray_id is None:
        return None
    return _tray(tray_id, raw, previous)


def _tray(tray_id: int, raw: Mapping[str, Any], previous: AmsTray | None) -> AmsTray:
    """One typed tray; fields that do not convert keep `previous`'s value."""
    if previous is None or previous.id != tray_id:
        previous = _BLANK_TRAY
    return AmsTray(
        tray_id,
        to_int(raw.get("state"), previous.state),
        to_str(raw.get("tray_type"), previous.type),
        to_str(raw.get("tray_sub_brands"), previous.sub_brand),
        to_str(raw.get("tray_info_idx"), previous.info_idx),
        to_str(raw.get("tray_id_name"), previous.id_name),
        to_str(raw.get("tray_color"), previous.color).upper(),
        to_int(raw.get("tray_weight"), previous.weight_g),
        to_float(raw.get("tray_diameter"), previous.diameter),
        _remain(raw.get("remain"), previous.remain),
        to_str(raw.get("tray_uuid"), previous.tray_uuid),
        to_str(raw.get("tag_uid"), previous.tag_uid),
        to_int(raw.get("nozzle_temp_min"), previous.nozzle_temp_min),
        to_int(raw.get("nozzle_temp_max"), previous.nozzle_temp_max),
        to_float(raw.get("k"), previous.k),
        to_int(raw.get("cali_idx"), previous.cali_idx),
    )


def _unchanged(raw: object, index: int, previous_raw: object) -> bool:
    """True when `raw` is the element at `index` of the previous wire list, or equal to it."""
    if not isinstance(previous_raw, list) or index >= len(previous_raw):
        return False
    before = previous_raw[index]
    return before is raw or before == raw


def _build_units(
    value: object, previous: tuple[AmsUnit, ...], previous_raw: object
) -> tuple[AmsUnit, ...]:
    """Typed units from `ams.ams[]`; entries without a usable id are left out."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return previous
    by_id = {unit.id: unit for unit in previous}
    units: list[AmsUnit] = []
    for index, raw in enumerate(value):
        if not isinstance(raw, dict):
            continue
        unit_id = to_int(raw.get("id"), None)
        if unit_id is None:
            continue
        before = by_id.get(unit_id)
        if before is not None and _unchanged(raw, index, previous_raw):
            units.append(before)
            continue
        units.append(_build_unit(unit_id, raw, before, previous_raw, index))
    return tuple(units)


def _build_unit(
    unit_id: int,
    raw: Mapping[str, Any],
    previous: AmsUnit | None,
    previous_units: object,
    index: int,
) -> AmsUnit:
    """One typed unit."""
    previous_trays: object = None
    if previous is None:
        previous = _BLANK_UNIT
    elif isinstance(previous_units, list) and index < len(previous_units):
        before = previous_units[index]
        if isinstance(before, dict) and to_int(before.get("id"), None) == unit_id:
            previous_trays = before.get("tray")
    humidity = to_int(raw.get("humidity"), previous.humidity)
    if humidity is not None and not 1 <= humidity <= _HUMIDITY_INDEX_MAX:
        humidity = previous.humidity
    humidity_raw = to_int(raw.get("humidity_raw"), previous.humidity_raw)
    if raw.get("humidity_raw") == "":
        # AMS units without an RH sensor send an empty string: unknown, not an odd value.
        humidity_raw = None
    return AmsUnit(
        unit_id,
        humidity,
        None if humidity is None else _HUMIDITY_INDEX_MAX + 1 - humidity,
        humidity_raw,
        to_float(raw.get("temp"), previous.temp),
        to_int(raw.get("dry_time"), previous.dry_time),
        _build_trays(raw.get("tray"), previous.trays, previous_trays),
    )


def _build_trays(
    value: object, previous: tuple[AmsTray, ...], previous_raw: object
) -> tuple[AmsTray, ...]:
    """Typed trays from a list of tray objects, each falling back on its previous self."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return previous
    by_id = {tray.id: tray for tray in previous}
    trays: list[AmsTray] = []
    for index, raw in enumerate(value):
        if not isinstance(raw, dict):
            continue
        tray_id = to_int(raw.get("id"), None)
        if tray_id is None:
            continue
        before = by_id.get(tray_id)
        if before is not None and _unchanged(raw, index, previous_raw):
            trays.append(before)
        else:
            trays.append(_tray(tray_id, raw, before))
    return tuple(trays)


def _build_external(
    raw: Mapping[str, Any], previous: tuple[AmsTray, ...], previous_raw: Mapping[str, Any]
) -> tuple[AmsTray, ...]:
    """External spools: `vir_slot[]` on dual-nozzle printers, else the single `vt_tray`."""
    vir_slot = raw.get("vir_slot")
    if vir_slot is not None:
        return _build_trays(vir_slot, previous, previous_raw.get("vir_slot"))
    vt_tray = raw.get("vt_tray")
    if vt_tray is None:
        return ()
    if not isinstance(vt_tray, dict):
        return previous
    before = previous[0] if len(previous) == 1 else None
    before_raw = previous_raw.get("vt_tray")
    unchanged = previous_raw.get("vir_slot") is None and (
        vt_tray is before_raw or vt_tray == before_raw
    )
    if before is not None and unchanged:
        return previous
    tray = build_tray(vt_tray, before)
    return previous if tray is None else (tray,)


def _remain(value: object, previous: int) -> int:
    """Remaining percent: 0-100, or -1 for unknown (absent or out of range)."""
    remain = to_int(value, previous)
    if remain is None:
        return -1
    return remain if -1 <= remain <= 100 else previous
