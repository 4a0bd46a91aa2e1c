"""Every error the fleet raises: what went wrong with a printer, and what to do about it.

    FleetError                      base: a printer could not do what was asked
    ├── UnknownPrinter              no printer with this serial is in the fleet
    ├── PrinterUnreachable          the link to the printer is not usable
    │   ├── PrinterOffline          not connected right now (connecting, stale, backing off)
    │   ├── AuthFailed              the printer refused the access code (CONNACK 5)
    │   └── TlsVerificationFailed   the printer's certificate is not the one we trust
    ├── CommandRefused              the command was not sent: the printer cannot take it now
    │   ├── ReadOnlyPrinter         Developer Mode is off: the printer only accepts signed commands
    │   └── PrinterBusy             a print (or a transfer) is in progress
    ├── CommandTimeout              the command was sent but no acknowledgement came in time
    ├── UploadFailed                an FTPS transfer failed; no partial file is left behind
    ├── DiscoveryError              the SSDP listener cannot listen
    ├── CameraUnavailable           no camera stream for this printer (model, code, link)
    └── EventError                  an event dict (from another process) that cannot be read

Messages name the printer (by serial) and say what to do. Access codes never appear in them.
Names say what happened (`raise PrinterOffline(...)`) rather than ending in "Error".
Bad input from printers is a `bambufarm.protocol.errors.ProtocolError`, not one of these.
"""


class FleetError(Exception):
    """Base of every fleet error; `serial` names the printer when there is one."""

    def __init__(self, message: str, *, serial: str = "") -> None:
        super().__init__(message)
        self.serial = serial


class UnknownPrinter(FleetError, LookupError):  # noqa: N818 - named for what happened
    """No printer with this serial is in the fleet."""


class PrinterUnreachable(FleetError):  # noqa: N818 - named for what happened
    """The link to the printer is not usable right now."""


class PrinterOffline(PrinterUnreachable):
    """The printer is not connected (connecting, stale or backing off after a failure)."""


class AuthFailed(PrinterUnreachable):
    """The printer refused the access code; retrying with the same code cannot help."""


class TlsVerificationFailed(PrinterUnreachable):
    """The printer's certificate failed verification: wrong CA, wrong CN or a changed pin."""


class CommandRefused(FleetError):  # noqa: N818 - named for what happened
    """The command was not sent because the printer cannot take it in its current state."""


class ReadOnlyPrinter(CommandRefused):
    """Developer Mode is off: the printer accepts only signed commands (protocol.md §9)."""


class PrinterBusy(CommandRefused):
    """A print or a transfer is in progress and the command would disturb it."""


class CommandTimeout(FleetError):  # noqa: N818 - named for what happened
    """The command was sent but its acknowledgement did not arrive in time."""


class UploadFailed(FleetError):  # noqa: N818 - named for what happened
    """An FTPS transfer failed; the partial file has been removed from the printer."""


class DiscoveryError(FleetError):
    """The SSDP listener cannot listen (usually: another listener holds the port)."""


class CameraUnavailable(FleetError):  # noqa: N818 - named for what happened
    """No camera stream for this printer: unsupported model, wrong access code or lost link."""


class EventError(FleetError, ValueError):
    """An event dictionary that is not a known event with well-typed fields."""
