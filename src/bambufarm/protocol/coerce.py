"""Tolerant conversion of report values into typed fields (protocol.md §1.5).

Printers send numbers as strings (`"mc_print_stage":"2"`, `"tray_weight":"1000"`) and strings
as numbers, depending on model and firmware. Each converter takes the wire value and the
field's previous typed value: an absent value (None) converts to None, an unconvertible one
returns the previous value unchanged, so one odd field never costs the rest of a report.
"""

import math

_TRUE = frozenset({"true", "1", "enable", "on"})
_FALSE = frozenset({"false", "0", "disable", "off"})


# The converters test `type(value) is ...` rather than isinstance: JSON decoding yields exact
# builtin types, bool must not pass for int, and this runs ~100 times per report.


def to_int(value: object, previous: int | None) -> int | None:
    """An int from an int, an integral float or a decimal string; else `previous`."""
    if type(value) is int:
        return value
    if value is None:
        return None
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            # "37.0" or "1e3": accept when the float is integral, as a number would be.
            return _int_from_float(_float_or_none(value), previous)
    if type(value) is float:
        return _int_from_float(value, previous)
    return previous


def to_float(value: object, previous: float | None) -> float | None:
    """A finite float from a number or a numeric string; else `previous`."""
    if type(value) is float:
        return value if math.isfinite(value) else previous
    if type(value) is int:
        return float(value) if -(2**63) <= value < 2**64 else previous
    if value is None:
        return None
    if type(value) is str:
        number = _float_or_none(value)
        return number if number is not None and math.isfinite(number) else previous
    return previous


def to_str(value: object, previous: str) -> str:
    """A string from a string or a number (ids arrive as both); None becomes ""; else previous."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is int or type(value) is float:
        return str(value)
    return previous


def to_opt_str(value: object, previous: str | None) -> str | None:
    """Like `to_str` but an absent value stays None."""
    if value is None:
        return None
    return to_str(value, "" if previous is None else previous)


def to_bool(value: object, previous: bool | None) -> bool | None:
    """A bool from true/false, 0/1 or their string forms; else `previous`."""
    if type(value) is bool:
        return value
    if value is None:
        return None
    if type(value) is int and value in (0, 1):
        return value == 1
    if type(value) is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return previous


def to_hex(value: object, previous: int | None) -> int | None:
    """An int from a hex string such as "3EC1AFFF9CFF" (bit fields); ints pass through."""
    if type(value) is str:
        try:
            return int(value, 16)
        except ValueError:
            return previous
    if value is None:
        return None
    if type(value) is int:
        return value
    return previous


def to_int_tuple(value: object, previous: tuple[int, ...]) -> tuple[int, ...]:
    """A tuple of ints from a list of ints or numeric strings; absent is empty; else previous."""
    if value is None:
        return ()
    if type(value) is not list:
        return previous
    out: list[int] = []
    for item in value:
        number = to_int(item, None)
        if number is None:
            return previous
        out.append(number)
    return tuple(out)


def _float_or_none(text: str) -> float | None:
    """float(text) or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _int_from_float(number: float | None, previous: int | None) -> int | None:
    """The int of an integral finite float, else `previous`."""
    if number is None or not math.isfinite(number) or not number.is_integer():
        return previous
    return int(number)
