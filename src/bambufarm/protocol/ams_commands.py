"""AMS commands (protocol.md §1.8.7-1.8.9) and the filament→tray mapping of `project_file`.

Trays are addressed two ways on the wire. A *global tray id* is one int: `unit*4 + slot` for
an AMS / AMS 2 Pro / AMS Lite (units 0-31, so ids 0-127), `128 + n` for AMS HT unit n (one
slot), 254/255 for the external spools. Newer commands split it into `ams_id` + `slot_id`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import Any

from bambufarm.protocol.envelope import (
    Command,
    build_command,
    check_choice,
    check_int,
    check_text,
)
from bambufarm.protocol.errors import CommandError

# External spools. On dual-nozzle printers (H2D, H2C, X2D) `vir_slot` 255 feeds the main/right
# nozzle and 254 the deputy/left one; single-nozzle printers have one external spool, which
# legacy firmware reports as 254 and newer as 255 (protocol.md §1.5.6), so either id means it.
EXTERNAL_SPOOL = 255
EXTERNAL_LEFT = 254
UNMAPPED = -1

AMS_UNITS = 32  # ids below 128 hold unit*4+slot: room for 32 four-slot units
AMS_SLOTS = 4
AMS_HT_FIRST = 128
AMS_HT_LAST = 135  # up to eight AMS HT units, one slot each
NO_TRAY = 255  # ams_change_filament's "nothing": unload
MAX_FILAMENTS = 64  # far above any slicer's filament count; bounds the payload
NOZZLE_TEMP_MAX = 320

_TRAY_IDS_ALLOWED = (
    f"0-127 (AMS unit*4+slot), {AMS_HT_FIRST}-{AMS_HT_LAST} (AMS HT), "
    f"{EXTERNAL_SPOOL} (EXTERNAL_SPOOL), {EXTERNAL_LEFT} (EXTERNAL_LEFT) or {UNMAPPED} (unmapped)"
)


class AmsAction(StrEnum):
    """`ams_control` actions: continue or cancel a filament change that needs attention."""

    RESUME = "resume"
    PAUSE = "pause"
    RESET = "reset"
    DONE = "done"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class AmsMapping:
    """The `ams_mapping` / `ams_mapping2` pair of `project_file`, one entry per filament."""

    flat: tuple[int, ...]  # global tray id per filament; -1 for external and unmapped
    slots: tuple[tuple[int, int], ...]  # (ams_id, slot_id) per filament
    uses_ams: bool  # at least one filament comes from an AMS or AMS HT tray

    def wire(self) -> dict[str, Any]:
        """The two JSON fields as the printer expects them."""
        return {
            "ams_mapping": list(self.flat),
            "ams_mapping2": [{"ams_id": a, "slot_id": s} for a, s in self.slots],
        }


def encode_ams_mapping(trays: Sequence[int], *, dual_nozzle: bool) -> AmsMapping:
    """Map filament i (0-based, slice_info id-1) to global tray `trays[i]` in both wire forms."""
    # A list or tuple (what callers pass) is used as it is: the Sequence ABC check and the
    # bounded copy cost ~0.5 µs of a ~2 µs call.
    if type(trays) is list or type(trays) is tuple:
        items: Sequence[object] = trays
    elif isinstance(trays, str | bytes) or not isinstance(trays, Sequence):
        raise CommandError(f"ams_mapping must be a list of tray ids, got {trays!r}")
    else:
        # islice, not len(): a huge range() would overflow len() before we could refuse it.
        items = list(islice(trays, MAX_FILAMENTS + 1))
    if len(items) > MAX_FILAMENTS:
        raise CommandError(f"ams_mapping may list at most {MAX_FILAMENTS} filaments")
    flat: list[int] = []
    slots: list[tuple[int, int]] = []
    for tray in items:
        if type(tray) is not int and (isinstance(tray, bool) or not isinstance(tray, int)):
            raise _bad_tray(len(flat), tray)
        if 0 <= tray < AMS_HT_FIRST:
            flat.append(tray)
            slots.append(divmod(tray, AMS_SLOTS))
        elif AMS_HT_FIRST <= tray <= AMS_HT_LAST:
            flat.append(tray)
            slots.append((tray, 0))
        elif tray in (EXTERNAL_SPOOL, EXTERNAL_LEFT):
            # H2D failed with 0700_8012 when 254/255 appeared in the flat array; Studio sends
            # -1 there and names the spool only in ams_mapping2 (protocol.md §1.8.2).
            flat.append(UNMAPPED)
            left = dual_nozzle and tray == EXTERNAL_LEFT
            slots.append((EXTERNAL_LEFT if left else EXTERNAL_SPOOL, 0))
        elif tray == UNMAPPED:
            flat.append(UNMAPPED)
            slots.append((NO_TRAY, NO_TRAY))
        else:
            raise _bad_tray(len(flat), tray)
    uses_ams = max(flat, default=UNMAPPED) >= 0  # AMS and AMS HT ids are the ones >= 0
    return AmsMapping(tuple(flat), tuple(slots), uses_ams)


def _bad_tray(index: int, tray: object) -> CommandError:
    """The error for filament `index` mapped to something that is not a tray id."""
    return CommandError(f"ams_mapping[{index}] must be {_TRAY_IDS_ALLOWED}, got {tray!r}")


def _ams_slot(ams_id: object, slot_id: object) -> tuple[int, int]:
    """(ams_id, slot_id) checked as an AMS tray; returns (ams_id, global tray id)."""
    ams = check_int("ams_id", ams_id, 0, AMS_HT_LAST)
    if ams < AMS_UNITS:
        slot = check_int("slot_id", slot_id, 0, AMS_SLOTS - 1)
        return ams, ams * AMS_SLOTS + slot
    if ams >= AMS_HT_FIRST:
        check_int("slot_id of an AMS HT", slot_id, 0, 0)
        return ams, ams
    raise CommandError(
        f"ams_id must be 0-{AMS_UNITS - 1} (AMS) or {AMS_HT_FIRST}-{AMS_HT_LAST} (AMS HT), "
        f"got {ams_id!r}"
    )


def _load_temp(nozzle_temp: int | None) -> int:
    """The `curr_temp`/`tar_temp` value: -1 lets the printer use the filament's own."""
    if nozzle_temp is None:
        return -1
    return check_int("nozzle_temp", nozzle_temp, 0, NOZZLE_TEMP_MAX, "°C")


def ams_load(
    seq: str,
    *,
    ams_id: int,
    slot_id: int,
    nozzle_temp: int | None = None,
    dual_nozzle: bool = False,
) -> Command:
    """`print.ams_change_filament`: load a tray (or an external spool, ams_id 254/255)."""
    temp = _load_temp(nozzle_temp)
    if ams_id in (EXTERNAL_SPOOL, EXTERNAL_LEFT) and not isinstance(ams_id, bool):
        check_int("slot_id of an external spool", slot_id, 0, 0)
        if dual_nozzle:
            # BD's H2D capture: the right external spool is ams 255 slot 0 target 255; the
            # left one by symmetry is 254 (inferred).
            ams, slot, target = ams_id, 0, ams_id
        else:
            # BD's single-nozzle capture: ams 255, slot and target 254 (protocol.md §1.8.7).
            ams, slot, target = EXTERNAL_SPOOL, EXTERNAL_LEFT, EXTERNAL_LEFT
    else:
        ams, target = _ams_slot(ams_id, slot_id)
        slot = slot_id
    fields = {
        "ams_id": ams,
        "slot_id": slot,
        "target": target,
        "curr_temp": temp,
        "tar_temp": temp,
    }
    return build_command("print", "ams_change_filament", seq, fields)


def ams_unload(seq: str, *, nozzle_temp: int | None = None) -> Command:
    """`print.ams_change_filament` with target 255: pull the filament out of the nozzle."""
    temp = _load_temp(nozzle_temp)
    fields = {
        "ams_id": NO_TRAY,
        "slot_id": NO_TRAY,
        "target": NO_TRAY,
        "curr_temp": temp,
        "tar_temp": temp,
    }
    return build_command("print", "ams_change_filament", seq, fields)


def _setting_address(ams_id: int, slot_id: int, dual_nozzle: bool) -> dict[str, int]:
    """`ams_id`/`tray_id`/`slot_id` of `ams_filament_setting` (protocol.md §1.8.8)."""
    if ams_id in (EXTERNAL_SPOOL, EXTERNAL_LEFT) and not isinstance(ams_id, bool):
        check_int("slot_id of an external spool", slot_id, 0, 0)
        if dual_nozzle:
            return {"ams_id": ams_id, "tray_id": 0, "slot_id": 0}
        # Single-nozzle external spool: ams 255, tray 254 (BLA/BD; OBFA's farm capture uses
        # tray 0 — firmware-dependent, protocol.md §10.2).
        return {"ams_id": EXTERNAL_SPOOL, "tray_id": EXTERNAL_LEFT, "slot_id": EXTERNAL_LEFT}
    ams, _ = _ams_slot(ams_id, slot_id)
    # BD's capture sends the slot within the unit as tray_id and repeats it in slot_id.
    return {"ams_id": ams, "tray_id": slot_id, "slot_id": slot_id}


def _colour(value: object) -> str:
    """RRGGBBAA upper-case from "RRGGBB", "RRGGBBAA" or either with a leading '#'."""
    text = value[1:] if isinstance(value, str) and value.startswith("#") else value
    if (
        not isinstance(text, str)
        or len(text) not in (6, 8)
        or not all(ch in "0123456789abcdefABCDEF" for ch in text)
    ):
        raise CommandError(f"colour must be hex RRGGBB or RRGGBBAA, got {value!r}")
    return (text + "FF" if len(text) == 6 else text).upper()


def ams_filament_setting(
    seq: str,
    *,
    ams_id: int,
    slot_id: int,
    tray_info_idx: str,
    tray_type: str,
    color_rrggbbaa: str,
    nozzle_temp_min: int,
    nozzle_temp_max: int,
    setting_id: str = "",
    tray_sub_brands: str = "",
    dual_nozzle: bool = False,
) -> Command:
    """`print.ams_filament_setting`: tell the printer what filament a tray holds."""
    fields: dict[str, Any] = _setting_address(ams_id, slot_id, dual_nozzle)
    low = check_int("nozzle_temp_min", nozzle_temp_min, 0, NOZZLE_TEMP_MAX, "°C")
    high = check_int("nozzle_temp_max", nozzle_temp_max, 0, NOZZLE_TEMP_MAX, "°C")
    if low > high:
        raise CommandError(
            f"nozzle_temp_min ({low} °C) must not exceed nozzle_temp_max ({high} °C)"
        )
    fields |= {
        # Preset ids such as "GFL99" (generic PLA) or a user preset id; empty = no preset.
        "tray_info_idx": check_text(
            "tray_info_idx", tray_info_idx, max_len=32, allow_empty=True, ascii_only=True
        ),
        "setting_id": check_text(
            "setting_id", setting_id, max_len=32, allow_empty=True, ascii_only=True
        ),
        "tray_type": check_text("tray_type", tray_type, max_len=32, ascii_only=True),
        "tray_sub_brands": check_text(
            "tray_sub_brands", tray_sub_brands, max_len=64, allow_empty=True
        ),
        "tray_color": _colour(color_rrggbbaa),
        "nozzle_temp_min": low,
        "nozzle_temp_max": high,
    }
    return build_command("print", "ams_filament_setting", seq, fields)


def ams_filament_reset(
    seq: str, *, ams_id: int, slot_id: int, dual_nozzle: bool = False
) -> Command:
    """`print.ams_filament_setting` with empty values: forget what a tray holds."""
    fields: dict[str, Any] = _setting_address(ams_id, slot_id, dual_nozzle)
    fields |= {
        "tray_info_idx": "",
        "setting_id": "",
        "tray_type": "",
        "tray_sub_brands": "",
        "tray_color": "00000000",
        "nozzle_temp_min": 0,
        "nozzle_temp_max": 0,
    }
    return build_command("print", "ams_filament_setting", seq, fields)


def ams_control(seq: str, action: AmsAction | str) -> Command:
    """`print.ams_control`: resume, pause, reset, finish or abort the AMS's current step."""
    checked = check_choice("ams_control action", AmsAction, action)
    return build_command("print", "ams_control", seq, {"param": checked.value})


def ams_get_rfid(seq: str, *, ams_id: int, slot_id: int) -> Command:
    """`print.ams_get_rfid`: read a tray's RFID tag again."""
    ams, _ = _ams_slot(ams_id, slot_id)
    return build_command("print", "ams_get_rfid", seq, {"ams_id": ams, "slot_id": slot_id})
