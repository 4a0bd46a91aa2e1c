"""What the fleet is told about its printers and how patient it is with them.

`PrinterConfig` is one printer (address, login, model); `SessionOptions` and
`SupervisionOptions` are fleet-wide timings; `PrinterSnapshot` is what `Fleet.printers()`
hands out: configuration, link and state, taken together.
"""

from dataclasses import dataclass, field, fields

from bambufarm.fleet.connection import Connection
from bambufarm.fleet.session import MQTT_PORT, SessionConfig
from bambufarm.protocol.state import PrinterState

FTPS_PORT = 990


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """One printer as the fleet knows it: where it is, how to log in, what it is."""

    serial: str
    host: str
    access_code: str = field(repr=False)
    name: str = ""
    model: str = ""  # model code ("C12") or name ("P1S"); empty: derived from the serial
    mqtt_port: int = MQTT_PORT
    ftps_port: int = FTPS_PORT

    def __post_init__(self) -> None:
        if not self.serial or not self.host:
            raise ValueError("a printer needs a serial and a host")
        if not self.access_code:
            raise ValueError(f"printer {self.serial} needs an access code")
        for name in ("mqtt_port", "ftps_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"printer {self.serial}: {name} must be 1-65535, got {port!r}")

    @property
    def label(self) -> str:
        """How logs name the printer: its name and serial."""
        return f"{self.name} ({self.serial})" if self.name else self.serial


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How patient every session is: SessionConfig's timings, shared by the whole fleet."""

    stale_after: float = 60.0
    stale_grace: float = 10.0
    ack_timeout: float = 10.0
    connect_timeout: float = 10.0
    keepalive: int = 30
    pushall_every: float | None = 300.0

    def session_config(self, printer: PrinterConfig) -> SessionConfig:
        """The SessionConfig of `printer` with these timings."""
        timings = {f.name: getattr(self, f.name) for f in fields(self)}
        return SessionConfig(
            serial=printer.serial,
            host=printer.host,
            access_code=printer.access_code,
            name=printer.name,
            port=printer.mqtt_port,
            **timings,
        )


@dataclass(frozen=True, slots=True)
class SupervisionOptions:
    """Retry and shutdown policy."""

    # First retry within 2 s, doubling up to 5 minutes: a rebooted printer is back within
    # seconds of coming up, one switched off for the weekend costs one handshake per 5 min.
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    # A certificate problem rarely fixes itself: from 1 minute up to once an hour.
    tls_backoff_base: float = 60.0
    tls_backoff_cap: float = 3600.0
    # A link that stayed up this long proved itself: the next failure retries quickly again.
    healthy_after: float = 60.0
    # Connection attempts (TCP + TLS + login) in flight at once: a cold start of 1,000
    # printers in waves of 64 keeps every listen backlog (asyncio's default: 100) clear.
    connect_concurrency: int = 64
    # aclose(): how long sessions get to say goodbye before their tasks are cancelled.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.connect_concurrency < 1:
            raise ValueError("connect_concurrency must be at least 1")
        if self.close_timeout <= 0 or self.healthy_after < 0:
            raise ValueError("close_timeout must be positive and healthy_after not negative")


@dataclass(frozen=True, slots=True)
class PrinterSnapshot:
    """One printer at one moment: its configuration, its link and its last known state."""

    config: PrinterConfig
    connection: Connection
    state: PrinterState
    enabled: bool = True

    @property
    def serial(self) -> str:
        """The printer's serial."""
        return self.config.serial
