"""The command envelope (protocol.md §1.3): sequence ids, the `Command` value, field checks.

Every request is one JSON object with one section:
`{"<section>": {"sequence_id": "<decimal>", "command": "<name>", ...}}`. The builders in
`commands` and `ams_commands` validate their values with the checks here and wrap them with
`build_command`; everything they raise is a `CommandError` saying what is allowed.
"""

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import orjson

from bambufarm.protocol.errors import CommandError

# AMS commands with ids above int32 were seen to hang the AMS, and P1S firmware clamps
# oversized task ids to int32 (protocol.md §1.3), so every id we send stays at or below this.
INT32_MAX = 2_147_483_647
# Bambu Studio counts from 20000; we start at a random point of 20000-29000 so that two
# sessions to one printer (or a restart) rarely reuse an id, which secured firmware rejects.
SEQUENCE_START_LOW = 20_000
SEQUENCE_START_HIGH = 29_000
SEQUENCE_WRAP_TO = 20_000
_INT32_DIGITS = len(str(INT32_MAX))

_E = TypeVar("_E", bound=Enum)

# What `check_text` refuses: C0 controls, DEL, and lone surrogates (which orjson cannot encode).
# One regex search is ~0.1 µs on a file name, a per-character Python loop ~1.9 µs.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class SequenceCounter:
    """Per-printer source of `sequence_id`s: increasing decimal strings, never above int32."""

    __slots__ = ("_next",)

    def __init__(self, start: int | None = None, *, rng: random.Random | None = None) -> None:
        """Start at `start`, or at a random value in 20000-29000 drawn from `rng`."""
        if start is None:
            # Not a secret, only a starting point: a seeded Random keeps tests reproducible.
            source = rng if rng is not None else random.Random()  # noqa: S311
            start = source.randint(SEQUENCE_START_LOW, SEQUENCE_START_HIGH)
        self._next = check_int("sequence start", start, 0, INT32_MAX)

    def next(self) -> str:
        """The next sequence id; after 2147483647 the counter wraps back to 20000."""
        value = self._next
        self._next = value + 1 if value < INT32_MAX else SEQUENCE_WRAP_TO
        return str(value)


@dataclass(frozen=True, slots=True)
class Command:
    """One encoded request, ready to publish on `device/<serial>/request`."""

    section: str
    command: str
    sequence_id: str
    payload: bytes  # orjson-encoded JSON object with the one section
    expects_ack: bool  # pushing.* commands are answered by a report, never by an ack

    @property
    def key(self) -> tuple[str, str, str]:
        """(section, command, sequence_id): what an ack echoes back."""
        return (self.section, self.command, self.sequence_id)


def check_sequence_id(seq: object) -> str:
    """`seq` if it is a decimal string from 0 to 2147483647."""
    if (
        not isinstance(seq, str)
        or not 0 < len(seq) <= _INT32_DIGITS
        or not seq.isascii()
        or not seq.isdigit()
        or (len(seq) == _INT32_DIGITS and int(seq) > INT32_MAX)
        or (seq != "0" and seq.startswith("0"))  # canonical, so that echoes compare equal
    ):
        raise CommandError(
            f"sequence_id must be a decimal string from 0 to {INT32_MAX} without leading "
            f"zeros, got {seq!r}"
        )
    return seq


def build_command(
    section: str,
    command: str,
    seq: str,
    fields: Mapping[str, Any] | None = None,
    *,
    expects_ack: bool = True,
) -> Command:
    """Encode `{section: {sequence_id, command, **fields}}` as a `Command`."""
    body: dict[str, Any] = {"sequence_id": check_sequence_id(seq), "command": command}
    if fields:
        if "sequence_id" in fields or "command" in fields:
            clash = sorted({"sequence_id", "command"} & fields.keys())
            raise CommandError(f"fields must not override {clash}")
        body.update(fields)
    try:
        payload = orjson.dumps({section: body})
    except orjson.JSONEncodeError as err:
        raise CommandError(f"{section}.{command} cannot be encoded as JSON: {err}") from err
    return Command(section, command, seq, payload, expects_ack)


def check_int(name: str, value: object, low: int, high: int, unit: str = "") -> int:
    """`value` if it is an int (not a bool) from `low` to `high` inclusive."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise CommandError(
            f"{name} must be a whole number from {low} to {high}{suffix}, got {value!r}"
        )
    return value


def check_number(name: str, value: object, low: float, high: float, unit: str = "") -> float:
    """`value` as a float if it is a finite int or float from `low` to `high` inclusive."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        suffix = f" {unit}" if unit else ""
        raise CommandError(
            f"{name} must be a number from {low:g} to {high:g}{suffix}, got {value!r}"
        )
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """`value` if it is exactly True or False (1 and "yes" are refused, not guessed at)."""
    if not isinstance(value, bool):
        raise CommandError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, enum: type[_E], value: object) -> _E:
    """The member of `enum` that `value` names (a member or its value)."""
    if isinstance(value, enum):
        return value
    # bool: True == 1 would otherwise pick the member with value 1. Other types: enum lookup
    # compares with ==, which raises for values such as Decimal("sNaN") (found by hypothesis).
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CommandError(_choice_message(name, enum, value))
    try:
        return enum(value)
    except ValueError as err:
        raise CommandError(_choice_message(name, enum, value)) from err


def _choice_message(name: str, enum: type[Enum], value: object) -> str:
    """What `check_choice` says about a refused value, built only then (it costs ~3 µs)."""
    allowed = ", ".join(repr(member.value) for member in enum)
    return f"{name} must be one of {allowed}, got {value!r}"


def check_text(
    name: str, value: object, *, max_len: int, allow_empty: bool = False, ascii_only: bool = False
) -> str:
    """`value` if it is a string of printable characters no longer than `max_len`."""
    if not isinstance(value, str):
        raise CommandError(f"{name} must be a string, got {value!r}")
    if not value and not allow_empty:
        raise CommandError(f"{name} must not be empty")
    if len(value) > max_len:
        raise CommandError(f"{name} must be at most {max_len} characters, got {len(value)}")
    if ascii_only and not value.isascii():
        raise CommandError(f"{name} must be ASCII, got {value!r}")
    if _CONTROL_CHARS.search(value):
        raise CommandError(f"{name} must not contain control characters, got {value!r}")
    return value
