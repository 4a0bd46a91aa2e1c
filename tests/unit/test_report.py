"""parse_report: fixtures, sloppy but real payloads, bad input (protocol.md §1.2, §12 rule 7)."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.protocol.errors import ProtocolError, ReportError
from bambufarm.protocol.report import MAX_REPORT_BYTES, Report, parse_report
from tests.support.reports import load_report, report_names


@pytest.mark.parametrize("name", report_names())
def test_every_fixture_parses(name: str) -> None:
    report = parse_report(load_report(name))
    assert report.sections
    assert all(isinstance(body, dict) for body in report.sections.values())


def test_full_report_is_a_full_push_status() -> None:
    report = parse_report(load_report("p1s_full"))
    assert report.is_push_status
    assert report.is_full
    assert report.command() == "push_status"
    assert report.sequence_id() == "58357"
    body = report.section("print")
    assert body is not None
    assert body["gcode_state"] == "RUNNING"
    assert body["ams"]["ams"][0]["tray"][0]["tray_uuid"] == "5F3D8925633343C29FB9A97FA9125971"


def test_delta_is_push_status_but_not_full() -> None:
    report = parse_report(load_report("p1s_delta_01_progress"))
    assert report.is_push_status
    assert not report.is_full
    assert report.section("info") is None


def test_ack_is_not_a_push_status() -> None:
    report = parse_report(load_report("ack_project_file_secured"))
    assert not report.is_push_status
    assert not report.is_full
    assert report.command() == "project_file"
    body = report.section("print")
    assert body is not None
    assert body["err_code"] == 84033543
    assert body["reason"] == "mqtt message verify failed"


def test_get_version_reply_sections() -> None:
    report = parse_report(load_report("get_version_p1s"))
    assert report.command("info") == "get_version"
    assert report.sequence_id("info") == "20002"
    assert report.command("print") is None
    assert not report.is_push_status


def test_integer_sequence_id_is_returned_as_string() -> None:
    report = parse_report(b'{"print":{"command":"gcode_line","sequence_id":20014}}')
    assert report.sequence_id() == "20014"
    assert parse_report(b'{"print":{"sequence_id":true}}').sequence_id() is None


def test_msg_zero_as_string_counts_as_full_but_false_does_not() -> None:
    assert parse_report(b'{"print":{"command":"push_status","msg":"0"}}').is_full
    assert not parse_report(b'{"print":{"command":"push_status","msg":false}}').is_full


def test_trailing_nul_is_stripped() -> None:
    payload = load_report("p1s_trailing_nul")
    assert payload.endswith(b"\x00")
    report = parse_report(payload)
    body = report.section("print")
    assert body is not None
    assert body["mc_percent"] == 41


def test_surrounding_whitespace_and_several_nuls() -> None:
    report = parse_report(b' \r\n{"print":{"msg":1}}\n\x00\x00')
    assert report.sections == {"print": {"msg": 1}}


def test_latin1_names_are_decoded() -> None:
    payload = load_report("p1s_latin1")
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    body = parse_report(payload).section("print")
    assert body is not None
    assert body["subtask_name"] == "pièce_démo_über"


def test_utf8_names_stay_utf8() -> None:
    body = parse_report('{"print":{"subtask_name":"pièce"}}'.encode()).section("print")
    assert body is not None
    assert body["subtask_name"] == "pièce"


def test_several_sections_in_one_payload() -> None:
    payload = b'{"pushing":{"command":"pushall"},"info":{"command":"get_version"}}'
    report = parse_report(payload)
    assert set(report.sections) == {"pushing", "info"}


def test_bytearray_and_memoryview_are_accepted() -> None:
    payload = load_report("p1s_delta_01_progress")
    assert parse_report(bytearray(payload)) == parse_report(payload)
    assert parse_report(memoryview(payload)) == parse_report(payload)


def test_empty_object_is_a_report_without_sections() -> None:
    assert parse_report(b"{}") == Report({})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"\x00\x00 \n", "empty"),
        (b"[1, 2]", "got a JSON array"),
        (b'"print"', "got a JSON string"),
        (b"42", "got a JSON number"),
        (b"null", "got a JSON null"),
        (b"true", "got a JSON boolean"),
        (b'{"print":{"msg":1},"t_utc":1716200000}', "section 't_utc' must be a JSON object"),
        (b'{"print":[1]}', "section 'print' must be a JSON object, got a JSON array"),
        (b'{"print":null}', "got a JSON null"),
        (b'{"print":{"msg":1}', "not valid JSON"),
        (b'{"print":{"msg":1}}{"x":{}}', "not valid JSON"),
        (b'{"print":{"msg":NaN}}', "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"{" * 5000, "not valid JSON"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "not valid JSON"),
    ],
)
def test_bad_payloads_raise_report_error_saying_why(payload: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_report(payload)


def test_report_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_report(b"[]")


def test_non_bytes_payload_is_refused() -> None:
    with pytest.raises(ReportError, match="must be bytes, not str"):
        parse_report('{"print":{}}')  # type: ignore[arg-type]


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b" " * (MAX_REPORT_BYTES + 1)
    with pytest.raises(ReportError, match="more than"):
        parse_report(payload)


def test_deep_but_legal_nesting_parses() -> None:
    # orjson's limit is 1024 levels; 100 is far beyond any report and must still parse.
    payload = b'{"print":' + b'{"a":' * 100 + b"1" + b"}" * 101
    body = parse_report(payload).section("print")
    assert body is not None
    assert "a" in body


@settings(max_examples=400)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_report_error(payload: bytes) -> None:
    try:
        report = parse_report(payload)
    except ReportError:
        return
    assert all(isinstance(body, dict) for body in report.sections.values())


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


_json_reports = st.dictionaries(
    st.text(max_size=6), st.dictionaries(st.text(max_size=6), _json_values, max_size=3), max_size=3
)


@settings(max_examples=300)
@given(_json_values | _json_reports, st.sampled_from([b"", b"\x00", b"\n", b" \x00"]))
def test_any_json_document_is_a_report_or_a_report_error(value: object, tail: bytes) -> None:
    payload = orjson.dumps(value) + tail
    is_report = isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())
    if is_report:
        assert parse_report(payload).sections == value
    else:
        with pytest.raises(ReportError):
            parse_report(payload)


_FULL = load_report("p1s_full")


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=_FULL.rindex(b"}") - 1))
def test_truncated_report_raises_report_error(cut: int) -> None:
    with pytest.raises(ReportError):
        parse_report(_FULL[:cut])
