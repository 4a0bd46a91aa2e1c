"""Acknowledgements (protocol.md §1.3, §9.2): reading replies and matching them to requests.

Printers answer on the report topic in the request's section, echoing `command` and usually
`sequence_id`, with `result` / `reason` / `err_code` (or `errno`). The shapes vary: `result`
is "success", "SUCCESS", "fail" or "failed", `camera` replies may use the int 0, some acks
omit the id and some clients send (and printers echo) ints. `info.get_version` has no result
at all: its module list is the answer.
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bambufarm.protocol.envelope import Command
from bambufarm.protocol.errors import AckError

logger = logging.getLogger(__name__)

# Secured firmware refuses unsigned commands with these (0x05024007-0x0502400C): 543 bad or
# missing signature, 544 reused sequence_id, 545 device key / task-id check (§9.2).
SIGNATURE_ERROR_FIRST = 84_033_543
SIGNATURE_ERROR_LAST = 84_033_548
SIGNATURE_FAILED_REASON = "mqtt message verify failed"

# Report families that carry a command name and even a sequence_id but answer nothing.
_UNSOLICITED = frozenset({"push_status", "push_info"})
_ACK_FIELDS = ("result", "reason", "sequence_id")
_OK_WORDS = frozenset({"success", "succeed", "ok"})
_FAILED_WORDS = frozenset({"fail", "failed", "failure", "error"})
# Ids are int32 on the wire; anything longer than this is not an id we could have sent.
_MAX_ID_DIGITS = 20
_EMPTY: Mapping[str, Any] = MappingProxyType({})

PENDING_LIMIT = 256


class AckResult(StrEnum):
    """What a reply says about its request."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # neither result nor error code says


@dataclass(frozen=True, slots=True)
class Ack:
    """One reply to a request, with the result normalised."""

    section: str
    command: str
    sequence_id: str | None  # canonical decimal string; None when the reply omits it
    result: AckResult
    reason: str | None = None
    err_code: int | None = None  # `err_code`, or `errno` when that is what the reply uses
    # The whole section (echoed fields, get_version modules, the access code): kept out of
    # repr so that logging an Ack never prints a secret.
    body: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when the reply says the request succeeded."""
        return self.result is AckResult.OK

    @property
    def signature_required(self) -> bool:
        """True when secured firmware refused the request for want of a signature (§9.2)."""
        if self.err_code is not None and (
            SIGNATURE_ERROR_FIRST <= self.err_code <= SIGNATURE_ERROR_LAST
        ):
            return True
        return self.reason is not None and self.reason.strip().lower() == SIGNATURE_FAILED_REASON

    @classmethod
    def from_section(cls, section: str, body: object) -> "Ack":
        """Read the reply in report section `section` (raises AckError if it names no command)."""
        if not isinstance(body, Mapping):
            raise AckError(f"{section!r} section must be an object, got {type(body).__name__}")
        command = body.get("command")
        if not isinstance(command, str) or not command:
            raise AckError(f"{section!r} section names no command, so it answers nothing")
        reason = body.get("reason")
        reason = reason if isinstance(reason, str) else None
        err_code = _int_or_none(body.get("err_code"))
        if err_code is None:
            err_code = _int_or_none(body.get("errno"))
        result = _verdict(body.get("result"), err_code, reason)
        if result is AckResult.UNKNOWN and (section, command) == ("info", "get_version"):
            result = AckResult.OK if isinstance(body.get("module"), list) else result
        return cls(
            section=section,
            command=command,
            sequence_id=normalise_sequence_id(body.get("sequence_id")),
            result=result,
            reason=reason,
            err_code=err_code,
            body=MappingProxyType(dict(body)),
        )


def normalise_sequence_id(value: object) -> str | None:
    """The canonical decimal form of an echoed id ("20001" for 20001 or "020001"), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) <= _MAX_ID_DIGITS:
        return str(int(text))
    return text


def _int_or_none(value: object) -> int | None:
    """An int error code from an int or a decimal string (possibly negative)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_ID_DIGITS:
            return int(text)
    return None


def _word(value: object) -> AckResult | None:
    """OK / FAILED from a result word or a numeric result (0 = ok), None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return AckResult.OK if value == 0 else AckResult.FAILED
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _OK_WORDS:
            return AckResult.OK
        if word in _FAILED_WORDS:
            return AckResult.FAILED
    return None


def _verdict(result: object, err_code: int | None, reason: str | None) -> AckResult:
    """Combine the reply's indicators; any that says failure wins."""
    said = _word(result)
    if err_code not in (None, 0) or said is AckResult.FAILED:
        return AckResult.FAILED
    if said is AckResult.OK or err_code == 0:
        return AckResult.OK
    if reason is not None:
        if reason.strip().lower() == SIGNATURE_FAILED_REASON:
            return AckResult.FAILED
        return _word(reason) or AckResult.UNKNOWN
    return AckResult.UNKNOWN


def acks_in(sections: Mapping[str, Mapping[str, Any]]) -> list[Ack]:
    """The acks in a decoded report: sections that answer a command, in report order."""
    acks: list[Ack] = []
    for section, body in sections.items():
        command = body.get("command")
        if not isinstance(command, str) or not command or command in _UNSOLICITED:
            continue
        answers = any(name in body for name in _ACK_FIELDS)
        if answers or (section, command) == ("info", "get_version"):
            acks.append(Ack.from_section(section, body))
    return acks


class PendingCommands:
    """Requests waiting for their ack, matched on (section, command, sequence_id).

    Pure bookkeeping (no asyncio): the session adds what it sends, hands each ack to `match`
    and calls `expire` on a timer. At most `limit` entries are kept; past that the oldest is
    dropped, because a printer that never answers must not grow memory without bound.
    """

    __slots__ = ("_clock", "_limit", "_pending")

    def __init__(
        self, *, limit: int = PENDING_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Keep up to `limit` requests; `clock` (seconds) dates them for `expire`."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._clock = clock
        self._pending: OrderedDict[tuple[str, str, str], tuple[Command, float]] = OrderedDict()

    def __len__(self) -> int:
        """How many requests are waiting."""
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        """True if a request with this (section, command, sequence_id) is waiting."""
        return key in self._pending

    def add(self, command: Command) -> None:
        """Wait for `command`'s ack; commands that expect none (pushall) are not kept."""
        if not command.expects_ack:
            return
        # Re-adding a key (a resend with the same id) keeps the newest copy, at the end.
        self._pending.pop(command.key, None)
        self._pending[command.key] = (command, self._clock())
        while len(self._pending) > self._limit:
            dropped, _ = self._pending.popitem(last=False)[1]
            logger.debug("pending-ack limit %d reached: dropped %s", self._limit, dropped.key)

    def match(self, ack: Ack) -> Command | None:
        """The request `ack` answers, removed from the pending set; None if it is not ours.

        An ack without a sequence_id answers the oldest pending request with the same
        section and command, since printers answer in order.
        """
        sequence_id = normalise_sequence_id(ack.sequence_id)
        if sequence_id is not None:
            entry = self._pending.pop((ack.section, ack.command, sequence_id), None)
            return None if entry is None else entry[0]
        for key in self._pending:
            if key[0] == ack.section and key[1] == ack.command:
                return self._pending.pop(key)[0]
        return None

    def remove(self, key: tuple[str, str, str]) -> Command | None:
        """Stop waiting for the request with this key (e.g. its caller gave up)."""
        entry = self._pending.pop(key, None)
        return None if entry is None else entry[0]

    def expire(self, older_than: float) -> list[Command]:
        """Remove and return the requests sent more than `older_than` seconds ago."""
        cutoff = self._clock() - older_than
        expired = [key for key, (_, sent_at) in self._pending.items() if sent_at < cutoff]
        return [self._pending.pop(key)[0] for key in expired]
