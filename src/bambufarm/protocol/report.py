"""Reading a printer's MQTT payload (protocol.md §1.2, §1.3, §12 rule 7) into a `Report`.

A report is one JSON object whose top-level values are all objects, one per section
(`print`, `info`, `system`, ...). Printers and slicers are sloppy in two known ways that
are tolerated here: a trailing NUL byte after the JSON, and names in Latin-1 instead of UTF-8.
Anything else that is not such an object raises `ReportError` saying what was wrong.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from bambufarm.protocol.errors import ReportError

# Bytes stripped from both ends before parsing: some slicer builds append a NUL (BD
# mqtt_server.py), and whitespace is harmless.
_PADDING = b"\x00\t\n\r "

# An MQTT payload of a full H2D report is ~32 KB pretty-printed (protocol.md §1.10); 16 MiB is
# far beyond any real report and stops a hostile peer from making us parse gigabytes.
MAX_REPORT_BYTES = 16 * 1024 * 1024

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BYTES_TYPES = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class Report:
    """One parsed report: section name (`print`, `info`, ...) to that section's object."""

    sections: Mapping[str, Mapping[str, Any]]

    def section(self, name: str) -> Mapping[str, Any] | None:
        """The named section's object, or None when the report has no such section."""
        return self.sections.get(name)

    def command(self, name: str = "print") -> str | None:
        """The `command` of a section (e.g. "push_status", "get_version"), if it is a string."""
        body = self.sections.get(name, _EMPTY)
        command = body.get("command")
        return command if isinstance(command, str) else None

    def sequence_id(self, name: str = "print") -> str | None:
        """A section's `sequence_id` as a string (printers send it as a string or an int)."""
        value = self.sections.get(name, _EMPTY).get("sequence_id")
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    @property
    def is_push_status(self) -> bool:
        """True for a status push (`print.command == "push_status"`), full or delta."""
        return self.command("print") == "push_status"

    @property
    def is_full(self) -> bool:
        """True for a full snapshot (`print.msg == 0`), the answer to `pushall` (§1.4)."""
        msg = self.sections.get("print", _EMPTY).get("msg")
        if isinstance(msg, bool):
            return False
        return msg in (0, "0")


def parse_report(payload: bytes) -> Report:
    """Parse one MQTT report payload; raise `ReportError` when it is not a report object."""
    if not isinstance(payload, _BYTES_TYPES):
        raise ReportError(f"report payload must be bytes, not {type(payload).__name__}")
    if len(payload) > MAX_REPORT_BYTES:
        raise ReportError(
            f"report payload is {len(payload)} bytes, more than the {MAX_REPORT_BYTES} allowed"
        )
    data = bytes(payload).strip(_PADDING)
    if not data:
        raise ReportError("report payload is empty")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        document = _parse_latin1(data, err)
    if not isinstance(document, dict):
        raise ReportError(
            f"report must be a JSON object of sections, got a JSON {_json_kind(document)}"
        )
    for name, body in document.items():
        if not isinstance(body, dict):
            raise ReportError(
                f"report section {name!r} must be a JSON object, got a JSON {_json_kind(body)}"
            )
    return Report(document)


def _parse_latin1(data: bytes, err: orjson.JSONDecodeError) -> Any:
    """Retry a payload that failed as UTF-8 by reading it as Latin-1 (HA does the same)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # Every byte string is valid Latin-1; orjson takes the str and re-encodes it as UTF-8.
        text = data.decode("latin-1")
    else:
        raise ReportError(f"report is not valid JSON: {err}") from err
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as latin_err:
        raise ReportError(f"report is not valid JSON: {latin_err}") from latin_err


def _json_kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
