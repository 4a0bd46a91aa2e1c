"""AMS command builders and the ams_mapping encoding."""

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol import commands
from bambufarm.protocol.commands import (
    EXTERNAL_LEFT,
    EXTERNAL_SPOOL,
    AmsAction,
    Command,
    encode_ams_mapping,
)
from bambufarm.protocol.errors import CommandError


def body(command: Command) -> dict[str, Any]:
    """The `print` section of an AMS command, checked for its envelope."""
    decoded = orjson.loads(command.payload)
    assert list(decoded) == ["print"]
    section: dict[str, Any] = decoded["print"]
    assert section["command"] == command.command
    assert section["sequence_id"] == command.sequence_id
    return section


def test_load_an_ams_slot_modern_shape() -> None:
    sent = body(commands.ams_load("20030", ams_id=0, slot_id=1))
    assert sent == {
        "sequence_id": "20030",
        "command": "ams_change_filament",
        "ams_id": 0,
        "slot_id": 1,
        "target": 1,
        "curr_temp": -1,
        "tar_temp": -1,
    }


def test_load_targets_the_global_tray_id() -> None:
    assert body(commands.ams_load("1", ams_id=2, slot_id=3, nozzle_temp=220))["target"] == 11
    ht = body(commands.ams_load("1", ams_id=128, slot_id=0))
    assert (ht["ams_id"], ht["slot_id"], ht["target"]) == (128, 0, 128)
    hot = body(commands.ams_load("1", ams_id=0, slot_id=0, nozzle_temp=250))
    assert (hot["curr_temp"], hot["tar_temp"]) == (250, 250)


def test_load_external_spool_single_and_dual_nozzle() -> None:
    single = body(commands.ams_load("1", ams_id=EXTERNAL_SPOOL, slot_id=0))
    assert (single["ams_id"], single["slot_id"], single["target"]) == (255, 254, 254)
    right = body(commands.ams_load("1", ams_id=EXTERNAL_SPOOL, slot_id=0, dual_nozzle=True))
    assert (right["ams_id"], right["slot_id"], right["target"]) == (255, 0, 255)
    left = body(commands.ams_load("1", ams_id=EXTERNAL_LEFT, slot_id=0, dual_nozzle=True))
    assert (left["ams_id"], left["slot_id"], left["target"]) == (254, 0, 254)


def test_unload() -> None:
    sent = body(commands.ams_unload("20031", nozzle_temp=210))
    assert (sent["ams_id"], sent["slot_id"], sent["target"]) == (255, 255, 255)
    assert (sent["curr_temp"], sent["tar_temp"]) == (210, 210)
    assert body(commands.ams_unload("1"))["tar_temp"] == -1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ams_id": 0, "slot_id": 4}, "slot_id must be a whole number from 0 to 3"),
        ({"ams_id": 32, "slot_id": 0}, r"ams_id must be 0-31 \(AMS\) or 128-135 \(AMS HT\)"),
        ({"ams_id": 136, "slot_id": 0}, "ams_id must be a whole number from 0 to 135"),
        ({"ams_id": 128, "slot_id": 1}, "slot_id of an AMS HT"),
        ({"ams_id": 255, "slot_id": 2}, "slot_id of an external spool"),
        ({"ams_id": 0, "slot_id": 0, "nozzle_temp": 400}, "nozzle_temp .* 0 to 320 °C"),
        ({"ams_id": "0", "slot_id": 0}, "ams_id must be a whole number"),
    ],
)
def test_load_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        commands.ams_load("1", **kwargs)


def test_filament_setting_golden() -> None:
    sent = body(
        commands.ams_filament_setting(
            "20032",
            ams_id=0,
            slot_id=1,
            tray_info_idx="GFL99",
            tray_type="PLA",
            color_rrggbbaa="#ff0000",
            nozzle_temp_min=190,
            nozzle_temp_max=240,
        )
    )
    assert sent == {
        "sequence_id": "20032",
        "command": "ams_filament_setting",
        "ams_id": 0,
        "tray_id": 1,
        "slot_id": 1,
        "tray_info_idx": "GFL99",
        "setting_id": "",
        "tray_type": "PLA",
        "tray_sub_brands": "",
        "tray_color": "FF0000FF",
        "nozzle_temp_min": 190,
        "nozzle_temp_max": 240,
    }


def test_filament_setting_external_spool_addresses() -> None:
    kwargs: dict[str, Any] = {
        "tray_info_idx": "GFB99",
        "tray_type": "ABS",
        "color_rrggbbaa": "00ff00aa",
        "nozzle_temp_min": 240,
        "nozzle_temp_max": 270,
    }
    single = body(commands.ams_filament_setting("1", ams_id=255, slot_id=0, **kwargs))
    assert (single["ams_id"], single["tray_id"]) == (255, 254)
    assert single["tray_color"] == "00FF00AA"
    left = body(
        commands.ams_filament_setting("1", ams_id=254, slot_id=0, dual_nozzle=True, **kwargs)
    )
    assert (left["ams_id"], left["tray_id"], left["slot_id"]) == (254, 0, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"color_rrggbbaa": "red"}, "colour must be hex RRGGBB or RRGGBBAA"),
        ({"color_rrggbbaa": "GG0000FF"}, "colour must be hex"),
        ({"nozzle_temp_min": 250, "nozzle_temp_max": 200}, "must not exceed nozzle_temp_max"),
        ({"nozzle_temp_max": 500}, "nozzle_temp_max must be .* 0 to 320 °C"),
        ({"tray_type": ""}, "tray_type must not be empty"),
        ({"tray_type": "PLA\n"}, "tray_type must not contain control characters"),
        ({"tray_info_idx": "GFL99é"}, "tray_info_idx must be ASCII"),
    ],
)
def test_filament_setting_refuses(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "ams_id": 1,
        "slot_id": 0,
        "tray_info_idx": "GFL99",
        "tray_type": "PLA",
        "color_rrggbbaa": "FFFFFFFF",
        "nozzle_temp_min": 190,
        "nozzle_temp_max": 230,
    }
    kwargs.update(overrides)
    with pytest.raises(CommandError, match=message):
        commands.ams_filament_setting("1", **kwargs)


def test_filament_reset_clears_the_slot() -> None:
    sent = body(commands.ams_filament_reset("1", ams_id=1, slot_id=2))
    assert (sent["ams_id"], sent["tray_id"], sent["slot_id"]) == (1, 2, 2)
    assert (sent["tray_type"], sent["tray_color"], sent["nozzle_temp_max"]) == ("", "00000000", 0)


def test_ams_control_and_rfid() -> None:
    assert body(commands.ams_control("1", AmsAction.RESUME))["param"] == "resume"
    assert body(commands.ams_control("1", "done"))["param"] == "done"
    with pytest.raises(CommandError, match="ams_control action must be one of 'resume'"):
        commands.ams_control("1", "retry")
    rfid = body(commands.ams_get_rfid("1", ams_id=0, slot_id=3))
    assert (rfid["command"], rfid["ams_id"], rfid["slot_id"]) == ("ams_get_rfid", 0, 3)


@given(st.lists(st.integers(0, 135) | st.sampled_from([-1, 254, 255]), max_size=16), st.booleans())
def test_mapping_flat_and_slots_agree(trays: list[int], dual: bool) -> None:
    mapping = encode_ams_mapping(trays, dual_nozzle=dual)
    assert len(mapping.flat) == len(mapping.slots) == len(trays)
    for tray, flat, (ams, slot) in zip(trays, mapping.flat, mapping.slots, strict=True):
        if 0 <= tray < 128:
            assert (flat, ams * 4 + slot) == (tray, tray)
        elif 128 <= tray <= 135:
            assert (flat, ams, slot) == (tray, tray, 0)
        elif tray == -1:
            assert (flat, ams, slot) == (-1, 255, 255)
        else:
            assert flat == -1
            assert slot == 0
            assert ams == (tray if dual else 255)
    assert mapping.uses_ams == any(0 <= tray <= 135 for tray in trays)
    orjson.dumps(mapping.wire())


class _Slot(IntEnum):
    """An int subclass, as a caller's own tray constants might be."""

    SECOND_AMS_FIRST_SLOT = 4


@pytest.mark.parametrize(
    "trays",
    [[1, 0, 255], (1, 0, 255), range(1, -2, -1), [1, 0, _Slot.SECOND_AMS_FIRST_SLOT]],
    ids=["list", "tuple", "range", "int-subclass"],
)
def test_any_sequence_of_ints_maps_like_a_list(trays: Sequence[int]) -> None:
    mapping = encode_ams_mapping(trays, dual_nozzle=False)
    assert mapping == encode_ams_mapping([int(tray) for tray in trays], dual_nozzle=False)


@pytest.mark.parametrize("trays", [(0, True), (0, 1.0), [0, "1"], (0, None)])
def test_a_tuple_or_list_with_a_non_int_names_the_bad_index(trays: Sequence[Any]) -> None:
    with pytest.raises(CommandError, match=r"ams_mapping\[1\] must be 0-127"):
        encode_ams_mapping(trays, dual_nozzle=False)


def test_too_many_filaments_in_a_tuple() -> None:
    with pytest.raises(CommandError, match="at most 64 filaments"):
        encode_ams_mapping((0,) * 65, dual_nozzle=False)
