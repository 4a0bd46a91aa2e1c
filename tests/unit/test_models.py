"""The printer model table: lookups by code, serial, name and product name."""

import pytest

from bambufarm.protocol.errors import ModelError, ProtocolError
from bambufarm.protocol.models import (
    MODELS,
    CameraKind,
    ReportMode,
    model_by_code,
    model_by_name,
    model_by_product_name,
    model_for_serial,
)


@pytest.mark.parametrize(
    ("serial", "name"),
    [
        ("00M09A123456789", "X1C"),
        ("00W09A123456789", "X1"),
        ("03W00A123456789", "X1E"),
        ("01S00A123456789", "P1P"),
        ("01P00A123456789", "P1S"),
        ("030000123456789", "A1 mini"),
        ("039000123456789", "A1"),
        ("22E000123456789", "P2S"),
        ("093000123456789", "H2S"),
        ("094000123456789", "H2D"),
        ("31B000123456789", "H2C"),
    ],
)
def test_serial_prefix_decides_the_model(serial: str, name: str) -> None:
    assert model_for_serial(serial).name == name


def test_codes_and_old_firmware_aliases() -> None:
    assert model_by_code("C12").name == "P1S"
    assert model_by_code("3DPrinter-X1-Carbon").name == "X1C"
    assert model_by_code("O1C2").name == "H2C"
    assert model_by_product_name("Bambu Lab X1-Carbon").code == "BL-P001"
    assert model_by_name("a1 MINI").code == "N1"


def test_capabilities_follow_the_table() -> None:
    assert model_by_name("X1C").report_mode is ReportMode.FULL
    assert model_by_name("P1S").report_mode is ReportMode.DELTA
    assert model_by_name("P1S").camera is CameraKind.JPEG
    assert model_by_name("H2D").camera is CameraKind.RTSPS
    assert model_by_name("H2D").dual_nozzle
    assert not model_by_name("A1").dual_nozzle


def test_every_model_has_a_unique_code_and_three_character_prefix() -> None:
    codes = [m.code for m in MODELS]
    assert len(codes) == len(set(codes))
    assert all(len(m.serial_prefix) == 3 for m in MODELS)


@pytest.mark.parametrize(
    "bad", ["", "01P", "01P00A12345678X9", "ZZZ000123456789", "01P00A12345678!"]
)
def test_bad_serials_raise_model_error(bad: str) -> None:
    with pytest.raises(ModelError) as info:
        model_for_serial(bad)
    assert isinstance(info.value, ProtocolError)
    assert repr(bad) in str(info.value)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ModelError, match="known models: X1C"):
        model_by_name("Ender 3")
    with pytest.raises(ModelError):
        model_by_code("K1")
    with pytest.raises(ModelError):
        model_by_product_name("Prusa MK4")
