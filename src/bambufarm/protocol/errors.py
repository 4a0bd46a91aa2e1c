"""Every error the protocol package raises on bad input.

    ProtocolError                 base: bytes or values that do not follow the protocol
    ├── ReportError               a printer report (MQTT payload) that cannot be read
    ├── CommandError              a command that cannot be built from the given values
    ├── AckError                  a reply that cannot be matched or read as an acknowledgement
    ├── HmsError                  an HMS / print_error value out of range or malformed
    ├── SsdpError                 an SSDP datagram that is not a Bambu NOTIFY / M-SEARCH / reply
    ├── BindFrameError            a bind/detect frame (A5A5 ... A7A7) that is malformed
    ├── CameraError               a camera auth packet or frame header that is malformed
    ├── ModelError                an unknown printer model code or serial prefix
    ├── MqttPacketError           an MQTT 3.1.1 packet that is malformed or too large
    └── ThreeMFError              a .3mf archive that cannot be used
        ├── UnsafeArchiveError    hostile or oversized: zip bomb, absolute path, `..`
        └── NotSlicedError        a project 3MF with no plate G-code: slice it first

Parsers take bytes and raise only these (never KeyError, UnicodeDecodeError, zipfile errors);
messages say what was wrong and, where it helps, what to do.
"""


class ProtocolError(ValueError):
    """Base of every protocol error: input that does not follow the Bambu LAN protocol."""


class ReportError(ProtocolError):
    """A printer report that cannot be read."""


class CommandError(ProtocolError):
    """A command that cannot be built from the given values."""


class AckError(ProtocolError):
    """A reply that cannot be read as an acknowledgement."""


class HmsError(ProtocolError):
    """An HMS entry or print_error value that is malformed."""


class SsdpError(ProtocolError):
    """An SSDP datagram that is not a Bambu NOTIFY, M-SEARCH or search reply."""


class BindFrameError(ProtocolError):
    """A bind/detect frame that is malformed."""


class CameraError(ProtocolError):
    """A camera auth packet or frame header that is malformed."""


class ModelError(ProtocolError):
    """An unknown printer model code or serial prefix."""


class MqttPacketError(ProtocolError):
    """An MQTT 3.1.1 packet that is malformed or larger than allowed."""


class ThreeMFError(ProtocolError):
    """A .3mf archive that cannot be used."""


class UnsafeArchiveError(ThreeMFError):
    """A hostile or oversized archive: refused without extracting anything."""


class NotSlicedError(ThreeMFError):
    """A project 3MF without plate G-code: it must be sliced before it can be printed."""
