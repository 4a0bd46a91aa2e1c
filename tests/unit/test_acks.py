"""Reading acks out of reports and matching them to pending commands."""

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol import commands
from bambufarm.protocol.acks import (
    Ack,
    AckResult,
    PendingCommands,
    acks_in,
    normalise_sequence_id,
)
from bambufarm.protocol.errors import AckError


def sections(raw: str) -> dict[str, Any]:
    """A report as `Report.sections` gives it: the decoded top-level object."""
    decoded: dict[str, Any] = orjson.loads(raw)
    return decoded


def only_ack(raw: str) -> Ack:
    """The single ack in a report."""
    found = acks_in(sections(raw))
    assert len(found) == 1
    return found[0]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- reading acks ----------------------------------------------------------------------------


def test_gcode_line_ack_from_the_protocol_reference() -> None:
    ack = only_ack(
        '{"print":{"command":"gcode_line","sequence_id":"20014","param":"M140 S60\\n",'
        '"result":"SUCCESS","reason":"SUCCESS","err_code":0}}'
    )
    assert ack == Ack("print", "gcode_line", "20014", AckResult.OK, "SUCCESS", 0)
    assert ack.ok
    assert not ack.signature_required
    assert ack.body["param"] == "M140 S60\n"


def test_secured_firmware_refusal_needs_a_signature() -> None:
    ack = only_ack(
        '{"print":{"command":"project_file","sequence_id":"20021",'
        '"result":"failed","reason":"mqtt message verify failed","err_code":84033543}}'
    )
    assert ack.result is AckResult.FAILED
    assert ack.err_code == 84033543
    assert ack.signature_required


@pytest.mark.parametrize("code", [84033543, 84033544, 84033548])
def test_every_code_of_the_signature_range_needs_a_signature(code: int) -> None:
    ack = only_ack(f'{{"print":{{"command":"pause","sequence_id":"1","err_code":{code}}}}}')
    assert ack.signature_required
    assert ack.result is AckResult.FAILED


def test_signature_reason_alone_is_enough() -> None:
    ack = only_ack('{"print":{"command":"stop","reason":"MQTT message verify failed"}}')
    assert ack.signature_required
    assert ack.result is AckResult.FAILED
    assert ack.sequence_id is None


def test_codes_next_to_the_signature_range_are_plain_failures() -> None:
    ack = only_ack('{"print":{"command":"stop","sequence_id":"2","err_code":84033549}}')
    assert ack.result is AckResult.FAILED
    assert not ack.signature_required


def test_camera_replies_use_int_zero_for_success() -> None:
    ack = only_ack(
        '{"camera":{"command":"ipcam_record_set","sequence_id":"31","control":"enable","result":0}}'
    )
    assert (ack.section, ack.result) == ("camera", AckResult.OK)
    failed = only_ack('{"camera":{"command":"ipcam_timelapse","sequence_id":"32","result":-1}}')
    assert failed.result is AckResult.FAILED


def test_errno_is_read_as_the_error_code() -> None:
    ack = only_ack(
        '{"print":{"command":"ams_change_filament","sequence_id":"20030","errno":-2,'
        '"reason":"chamber too hot"}}'
    )
    assert ack.err_code == -2
    assert ack.result is AckResult.FAILED


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('"result":"success"', AckResult.OK),
        ('"result":"Success","err_code":"0"', AckResult.OK),
        ('"result":"fail","reason":"Not find"', AckResult.FAILED),
        ('"result":"failed"', AckResult.FAILED),
        ('"result":"SUCCESS","err_code":-4', AckResult.FAILED),  # any failure sign wins
        ('"err_code":0', AckResult.OK),
        ('"reason":"success"', AckResult.OK),
        ('"result":"pending?"', AckResult.UNKNOWN),
        ('"result":true', AckResult.UNKNOWN),
        ('"reason":"invalid nozzle_diameter"', AckResult.UNKNOWN),
    ],
)
def test_result_is_read_case_insensitively_and_failure_wins(
    fields: str, expected: AckResult
) -> None:
    ack = only_ack(f'{{"print":{{"command":"extrusion_cali_get","sequence_id":"9",{fields}}}}}')
    assert ack.result is expected


def test_get_version_reply_counts_as_an_ack() -> None:
    ack = only_ack(
        '{"info":{"command":"get_version","sequence_id":"20002","module":['
        '{"name":"ota","sw_ver":"01.08.00.00"}]}}'
    )
    assert (ack.section, ack.command, ack.sequence_id, ack.result) == (
        "info",
        "get_version",
        "20002",
        AckResult.OK,
    )
    assert ack.body["module"][0]["name"] == "ota"


def test_access_code_stays_out_of_repr() -> None:
    ack = only_ack(
        '{"system":{"command":"get_access_code","sequence_id":"20051",'
        '"result":"success","access_code":"12345678"}}'
    )
    assert ack.body["access_code"] == "12345678"
    assert "12345678" not in repr(ack)


def test_unsolicited_reports_are_not_acks() -> None:
    report = sections(
        '{"print":{"command":"push_status","msg":1,"sequence_id":"2031","mc_percent":12},'
        '"mc_print":{"command":"push_info","param":"[AMS] temp","sequence_id":"83"}}'
    )
    assert acks_in(report) == []


def test_sections_without_a_command_or_ack_fields_are_skipped() -> None:
    report = sections(
        '{"header":{"sign_ver":"v1.0"},"system":{"command":"ledctrl","led_node":"x"},'
        '"upgrade":{"command":"get_history","sequence_id":"4","result":"success"}}'
    )
    found = acks_in(report)
    assert [(ack.section, ack.command) for ack in found] == [("upgrade", "get_history")]


def test_several_acks_in_one_report_keep_their_order() -> None:
    report = sections(
        '{"system":{"command":"ledctrl","sequence_id":"5","result":"success"},'
        '"print":{"command":"pause","sequence_id":"6","result":"success"}}'
    )
    assert [ack.command for ack in acks_in(report)] == ["ledctrl", "pause"]


def test_from_section_refuses_what_is_not_a_reply() -> None:
    with pytest.raises(AckError, match="names no command"):
        Ack.from_section("print", {"result": "success"})
    with pytest.raises(AckError, match="must be an object"):
        Ack.from_section("print", ["result"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20001", "20001"),
        (20001, "20001"),
        ("020001", "20001"),
        (" 7 ", "7"),
        ("", None),
        (None, None),
        (True, None),
        (1.5, None),
        ("abc", "abc"),
    ],
)
def test_sequence_ids_are_normalised(value: object, expected: str | None) -> None:
    assert normalise_sequence_id(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.dictionaries(
            st.sampled_from(["command", "sequence_id", "result", "reason", "err_code", "errno"])
            | st.text(max_size=8),
            json_values,
        ),
        max_size=4,
    )
)
def test_acks_in_never_raises_on_arbitrary_sections(report: dict[str, dict[str, Any]]) -> None:
    for ack in acks_in(report):
        assert isinstance(ack.result, AckResult)
        assert ack.sequence_id is None or isinstance(ack.sequence_id, str)
        assert ack.err_code is None or isinstance(ack.err_code, int)


# --- matching --------------------------------------------------------------------------------


def ack_for(section: str, command: str, seq: object) -> Ack:
    """The ack a printer would send for a request, with the id as given (or none)."""
    body: dict[str, Any] = {"command": command, "result": "success"}
    if seq is not None:
        body["sequence_id"] = seq
    return Ack.from_section(section, body)


def test_match_by_sequence_id() -> None:
    pending = PendingCommands()
    first, second = commands.pause("20010"), commands.pause("20011")
    pending.add(first)
    pending.add(second)
    assert pending.match(ack_for("print", "pause", "20011")) is second
    assert pending.match(ack_for("print", "pause", "20011")) is None  # answered once only
    assert len(pending) == 1
    assert first.key in pending


def test_match_with_an_int_sequence_id() -> None:
    pending = PendingCommands()
    command = commands.gcode_line("20014", "G28")
    pending.add(command)
    assert pending.match(ack_for("print", "gcode_line", 20014)) is command


def test_ack_without_id_answers_the_oldest_request_with_that_command() -> None:
    pending = PendingCommands()
    led = commands.ledctrl("1", "chamber_light", "on")
    oldest, newer = commands.stop("2"), commands.stop("3")
    for command in (led, oldest, newer):
        pending.add(command)
    assert pending.match(ack_for("print", "stop", None)) is oldest
    assert pending.match(ack_for("print", "stop", None)) is newer
    assert pending.match(ack_for("print", "stop", None)) is None
    assert pending.match(ack_for("system", "ledctrl", None)) is led


def test_an_id_we_did_not_send_matches_nothing() -> None:
    pending = PendingCommands()
    pending.add(commands.pause("20010"))
    assert pending.match(ack_for("print", "pause", "99999")) is None  # another client's
    assert pending.match(ack_for("print", "resume", "20010")) is None
    assert pending.match(ack_for("system", "pause", "20010")) is None
    assert len(pending) == 1


def test_commands_without_acks_are_not_kept() -> None:
    pending = PendingCommands()
    pending.add(commands.pushall("1"))
    pending.add(commands.start_pushing("2"))
    assert len(pending) == 0


def test_expire_uses_the_injected_clock() -> None:
    clock = FakeClock()
    pending = PendingCommands(clock=clock)
    old = commands.pause("1")
    pending.add(old)
    clock.now += 6
    young = commands.resume("2")
    pending.add(young)
    clock.now += 5
    assert pending.expire(older_than=10) == [old]
    assert pending.expire(older_than=10) == []
    clock.now += 10
    assert pending.expire(older_than=10) == [young]
    assert len(pending) == 0


def test_remove_by_key() -> None:
    pending = PendingCommands()
    command = commands.pause("1")
    pending.add(command)
    assert pending.remove(command.key) is command
    assert pending.remove(command.key) is None


def test_pending_is_bounded_dropping_the_oldest() -> None:
    pending = PendingCommands(limit=3)
    sent = [commands.pause(str(i)) for i in range(5)]
    for command in sent:
        pending.add(command)
    assert len(pending) == 3
    assert sent[0].key not in pending
    assert sent[1].key not in pending
    assert pending.match(ack_for("print", "pause", None)) is sent[2]


def test_default_bound_is_256() -> None:
    pending = PendingCommands()
    for i in range(300):
        pending.add(commands.pause(str(i)))
    assert len(pending) == 256


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PendingCommands(limit=0)
