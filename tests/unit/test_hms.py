"""HMS code and print_error decoding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol.errors import HmsError
from bambufarm.protocol.hms import (
    HmsCode,
    PrintError,
    Severity,
    parse_hms_list,
    parse_print_error,
)

uint32 = st.integers(0, 0xFFFF_FFFF)


def test_heatbed_example_from_the_protocol_reference() -> None:
    hms = HmsCode.from_wire(attr=50331904, code=65543)
    assert hms.display == "0300_0100_0001_0007"
    assert hms.prefixed == "HMS_0300_0100_0001_0007"
    assert str(hms) == "HMS_0300_0100_0001_0007"
    assert hms.key == "0300010000010007"
    assert (hms.module_id, hms.module_instance, hms.part) == (0x03, 0x00, 0x01)
    assert hms.module_name == "motion controller"
    assert hms.severity is Severity.FATAL
    assert hms.message_code == 7
    assert hms.ams_unit is None
    assert hms.ams_slot is None
    assert not hms.is_ams


def test_ams_runout_decodes_unit_and_slot() -> None:
    first = HmsCode.parse("0700_2000_0002_0001")  # AMS A slot 1 ran out
    assert (first.module_name, first.ams_unit, first.ams_slot) == ("AMS", 0, 0)
    assert first.severity is Severity.SERIOUS
    third = HmsCode.parse("HMS_0702_2300_0002_0001")  # AMS C slot 4
    assert (third.ams_unit, third.ams_slot) == (2, 3)
    assert third.summary == "serious condition 0702_2300_0002_0001 (AMS 3 slot 4)"


@pytest.mark.parametrize(
    ("module", "name"), [(0x12, "AMS Lite"), (0x18, "AMS HT"), (0x0C, "AI camera")]
)
def test_module_names(module: int, name: str) -> None:
    hms = HmsCode.from_wire(module << 24, 0x0003_0001)
    assert hms.module_name == name
    assert hms.severity is Severity.COMMON
    assert hms.is_ams == (module != 0x0C)


def test_unknown_module_and_severity_still_decode() -> None:
    hms = HmsCode.from_wire(0x4201_0000, 0x0009_0001)
    assert hms.module_name == "module 0x42"
    assert hms.severity is Severity.UNKNOWN
    assert HmsCode.from_wire(0, 0x0004_0000).severity is Severity.INFO


def test_wiki_url() -> None:
    hms = HmsCode.from_wire(50331904, 65543)
    assert hms.wiki_url("X1") == (
        "https://wiki.bambulab.com/en/x1/troubleshooting/hmscode/0300_0100_0001_0007"
    )
    with pytest.raises(HmsError, match="series must be a wiki path"):
        hms.wiki_url("../x1")


@pytest.mark.parametrize(
    ("attr", "code"), [(-1, 0), (0, 2**32), (True, 0), ("50331904", 65543), (1.0, 2)]
)
def test_from_wire_refuses_values_outside_uint32(attr: object, code: object) -> None:
    with pytest.raises(HmsError, match="must be an integer from 0 to 4294967295"):
        HmsCode.from_wire(attr, code)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "0300_0100_0001", "HMS_0300_0100_0001_000G", "x" * 16])
def test_parse_refuses_what_is_not_an_hms_code(text: str) -> None:
    with pytest.raises(HmsError, match="HMS code must look like"):
        HmsCode.parse(text)


@given(uint32, uint32)
def test_from_wire_round_trips_through_every_printed_form(attr: int, code: int) -> None:
    hms = HmsCode.from_wire(attr, code)
    assert hms.key == f"{attr:08X}{code:08X}"
    assert len(hms.key) == 16
    for text in (
        hms.key,
        hms.display,
        hms.prefixed,
        hms.display.lower(),
        hms.display.replace("_", "-"),
    ):
        assert HmsCode.parse(text) == hms
    assert hms.severity is Severity.UNKNOWN or 1 <= code >> 16 <= 4


# --- hms lists -------------------------------------------------------------------------------


def test_parse_hms_list_reads_entries_and_ignores_timestamps() -> None:
    codes = parse_hms_list(
        [
            {"attr": 50331904, "code": 65543},
            {"attr": 0x07002000, "code": 0x00020001, "ts_boot": 12, "ts_unix": 1716200000},
        ]
    )
    assert [hms.display for hms in codes] == ["0300_0100_0001_0007", "0700_2000_0002_0001"]
    assert parse_hms_list([]) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "hms must be a list"),
        ({"attr": 1, "code": 2}, "hms must be a list"),
        ([1], r"hms\[0\] must be an object"),
        ([{"attr": 1}], r"hms\[0\]\.code must be an integer"),
        ([{"attr": 1, "code": 2}, {"attr": -5, "code": 2}], r"hms\[1\]\.attr must be"),
        ([{"attr": "1", "code": 2}], r"hms\[0\]\.attr"),
        ([{"attr": 1, "code": 2}] * 1025, "at most 1024"),
    ],
)
def test_parse_hms_list_refuses_bad_entries(value: object, message: str) -> None:
    with pytest.raises(HmsError, match=message):
        parse_hms_list(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["attr", "code", "ts_unix"]) | st.text(max_size=5), inner)
    ),
    max_leaves=20,
)


@given(json_values)
def test_parse_hms_list_raises_only_hms_error(value: object) -> None:
    try:
        codes = parse_hms_list(value)
    except HmsError:
        return
    assert isinstance(value, list)
    assert len(codes) == len(value)


# --- print_error -----------------------------------------------------------------------------


def test_cancelled_print_error() -> None:
    error = PrintError.from_int(50348044)
    assert error.hex == "0300400C"
    assert error.key == "0300400C"
    assert error.display == "0300_400C"
    assert str(error) == "0300_400C"
    assert error.is_cancel
    assert error.known
    assert "cancelled" in error.description
    assert error.module_id == 0x03


@pytest.mark.parametrize(
    ("value", "hex_form", "word"),
    [
        (50348045, "0300400D", "power loss"),
        (50364437, "03008015", "external spool"),
        (117473286, "07008006", "AMS"),
        (0x0500C010, "0500C010", "storage card"),
    ],
)
def test_well_known_print_errors(value: int, hex_form: str, word: str) -> None:
    error = PrintError.from_int(value)
    assert error.hex == hex_form
    assert word in error.description
    assert not error.is_cancel


def test_unknown_print_error_falls_back_to_the_code() -> None:
    error = PrintError.from_int(0x0C004001)
    assert not error.known
    assert error.description == "Printer error 0C00_4001."


def test_print_error_text_forms() -> None:
    assert PrintError.parse("0300_400C").is_cancel
    assert PrintError.parse("0300-400c").value == 50348044
    assert PrintError.parse("0300400C").value == 50348044
    with pytest.raises(HmsError, match="print error must look like 0300_400C"):
        PrintError.parse("0300_40")


def test_parse_print_error_treats_zero_as_none() -> None:
    assert parse_print_error(0) is None
    parsed = parse_print_error(50348044)
    assert parsed is not None
    assert parsed.is_cancel
    for bad in (-1, 2**32, "0300400C", None, True):
        with pytest.raises(HmsError, match="print_error must be an integer"):
            parse_print_error(bad)


@given(uint32)
def test_print_error_round_trips(value: int) -> None:
    error = PrintError.from_int(value)
    assert int(error.hex, 16) == value
    assert PrintError.parse(error.display) == error
