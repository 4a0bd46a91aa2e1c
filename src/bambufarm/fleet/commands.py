"""What became of a command sent to a printer, and the guards that keep harmful ones unsent.

Pure: `guard` looks at the printer's state and link before a command goes out, `from_ack`
reads the printer's answer. `PrinterSession.send` strings them together (session.py).
"""

from dataclasses import dataclass
from enum import StrEnum

from bambufarm.fleet.connection import Connection
from bambufarm.fleet.errors import (
    CommandRefused,
    CommandTimeout,
    FleetError,
    PrinterBusy,
    PrinterOffline,
    ReadOnlyPrinter,
)
from bambufarm.protocol.acks import Ack, AckResult
from bambufarm.protocol.envelope import Command
from bambufarm.protocol.state import GcodeState, PrinterState

READ_ONLY_REASON = "enable Developer Mode to control this printer"
BUSY_REASON = "the printer is busy: a new job would kill the running one"
# protocol.md §9.2: without Developer Mode only these still work (monitoring and the light).
READ_ONLY_ALLOWED = frozenset(
    {("system", "ledctrl"), ("pushing", "pushall"), ("pushing", "start"), ("info", "get_version")}
)
# Starting a job while one runs makes some firmware abandon the running one (issue 4, item 4).
JOB_STARTS = frozenset({("print", "project_file"), ("print", "gcode_file")})
JOB_BUSY_STATES = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})


class CommandStatus(StrEnum):
    """How a command ended."""

    OK = "ok"  # the printer acknowledged it (or it expects no acknowledgement)
    REJECTED = "rejected"  # refused: by a guard before sending, or by the printer's ack
    TIMEOUT = "timeout"  # sent, but no acknowledgement came in time
    OFFLINE = "offline"  # not sent, or the link broke before the acknowledgement


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command: status, a reason for people, and the printer's ack if any."""

    status: CommandStatus
    reason: str = ""
    ack: Ack | None = None
    sent: bool = False  # False when a guard (or the link) kept it from the printer

    @property
    def ok(self) -> bool:
        """True when the command was acknowledged as done."""
        return self.status is CommandStatus.OK

    def raise_for_status(self, serial: str) -> None:
        """Raise the fleet error matching a failed outcome; do nothing when ok."""
        error = self.error(serial)
        if error is not None:
            raise error

    def error(self, serial: str) -> FleetError | None:
        """The fleet error matching a failed outcome, or None when ok."""
        message = f"printer {serial}: {self.reason}"
        match self.status:
            case CommandStatus.OK:
                return None
            case CommandStatus.OFFLINE:
                return PrinterOffline(message, serial=serial)
            case CommandStatus.TIMEOUT:
                return CommandTimeout(message, serial=serial)
        if self.reason == READ_ONLY_REASON or (
            self.ack is not None and self.ack.signature_required
        ):
            return ReadOnlyPrinter(message, serial=serial)
        if self.reason == BUSY_REASON:
            return PrinterBusy(message, serial=serial)
        return CommandRefused(message, serial=serial)


def guard(command: Command, state: PrinterState, connection: Connection) -> CommandResult | None:
    """Why `command` must not be sent now (as a result), or None when it may go."""
    if not connection.connected:
        return CommandResult(CommandStatus.OFFLINE, f"the printer is offline: {connection.reason}")
    key = (command.section, command.command)
    if state.developer_mode is False and key not in READ_ONLY_ALLOWED:
        return CommandResult(CommandStatus.REJECTED, READ_ONLY_REASON)
    if key in JOB_STARTS and state.job.gcode_state in JOB_BUSY_STATES:
        return CommandResult(CommandStatus.REJECTED, BUSY_REASON)
    return None


def from_ack(ack: Ack) -> CommandResult:
    """The outcome an acknowledgement reports."""
    if ack.result is AckResult.OK:
        return CommandResult(CommandStatus.OK, ack.reason or "done", ack, sent=True)
    if ack.result is AckResult.UNKNOWN:
        # Answered without saying how it went; the next report shows the effect.
        return CommandResult(CommandStatus.OK, "acknowledged without a result", ack, sent=True)
    if ack.signature_required:
        code = f", error {ack.err_code}" if ack.err_code is not None else ""
        reason = f"the printer requires signed commands{code}: {READ_ONLY_REASON}"
        return CommandResult(CommandStatus.REJECTED, reason, ack, sent=True)
    detail = ack.reason or "no reason given"
    if ack.err_code not in (None, 0):
        detail = f"{detail} (error {ack.err_code})"
    return CommandResult(
        CommandStatus.REJECTED, f"the printer refused it: {detail}", ack, sent=True
    )
