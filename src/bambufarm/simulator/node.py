"""One simulated printer on the network: the state machine plus every server it runs.

A node owns its SD-card directory, its TLS certificate, the MQTT broker (8883), the FTPS
server (990), bind/detect (3000 plain, 3002 TLS), the SSDP announcer (2021/udp) and, for
P1/A1-class models, the JPEG camera (6000). The fleet ticks it; tests and the CLI inject
faults through it.
"""

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bambufarm.protocol.bind import DetectReply
from bambufarm.protocol.models import CameraKind
from bambufarm.protocol.mqtt_packets import topic_matches
from bambufarm.protocol.ssdp import BindState, ConnectType, SsdpNotify

from .bind import BindServer
from .broker import MqttBroker
from .camera import CameraScene, CameraServer
from .clock import Clock
from .ftps_commands import FtpsFaults
from .ftps_server import FtpsServer
from .manifest import ManifestPrinter, PrinterPorts
from .printer import SimPrinter
from .scenario import PrinterSpec
from .ssdp import SsdpAnnouncer
from .storage import PrinterStorage, StorageError
from .tls import SimulatorCA, server_context

logger = logging.getLogger(__name__)

USER = "bblp"
# A 32 GB card, the size Bambu ships; `storage` in push_status reports it (slicers gate "Send").
DEFAULT_CAPACITY = 32 * 1024**3
# Bind replies carry a printer-chosen integer sequence id (3021 observed, protocol.md §5.2).
DETECT_SEQUENCE = 3021


@dataclass(frozen=True, slots=True)
class RequestedPorts:
    """Where a node should listen; 0 = an ephemeral port chosen by the OS."""

    mqtt: int = 0
    ftps: int = 0
    bind: int = 0
    bind_tls: int = 0
    ssdp: int = 0
    camera: int = 0


# The ports real printers use (protocol.md §0.1); below 1024 needs root.
STANDARD_PORTS = RequestedPorts(8883, 990, 3000, 3002, 2021, 6000)
EPHEMERAL_PORTS = RequestedPorts()


class PrinterNode:
    """A simulated printer and its servers, bound to one host address."""

    def __init__(
        self,
        spec: PrinterSpec,
        *,
        ca: SimulatorCA,
        data_dir: Path,
        clock: Clock,
        rng: random.Random,
        ssdp_targets: Sequence[tuple[str, int]],
        capacity_bytes: int = DEFAULT_CAPACITY,
    ) -> None:
        identity = spec.identity
        self.spec = spec
        self.serial = identity.serial
        self.host = identity.ip
        self.report_topic = f"device/{identity.serial}/report"
        self.request_topic = f"device/{identity.serial}/request"
        self.storage = PrinterStorage(
            data_dir / identity.serial / "sd", capacity_bytes=capacity_bytes
        )
        self.printer = SimPrinter(
            identity, quirks=spec.quirks, read_file=self._read_file, clock=clock, rng=rng
        )
        context = server_context(ca.issue_leaf(identity.serial, [identity.ip]))
        quirks = spec.quirks
        self.broker = MqttBroker(self, context, max_clients=quirks.max_mqtt_clients)
        self.ftps = FtpsServer(
            self.storage,
            identity.access_code,
            context,
            require_session_reuse=quirks.session_reuse_for(identity.model),
            faults=FtpsFaults(
                write_rate_bytes_per_s=quirks.ftps_write_rate,
                fail_uploads_after_bytes=quirks.ftps_fail_after_bytes,
            ),
            on_stored=self._on_stored,
        )
        self.bind = BindServer(self._detect_reply, None)
        self.bind_tls = BindServer(self._detect_reply, context)
        self.ssdp = SsdpAnnouncer(self._notify, ssdp_targets)
        self.camera: CameraServer | None = None
        if identity.model.camera is CameraKind.JPEG:
            self.camera = CameraServer(identity.access_code, self._scene, context)
        self.ports: PrinterPorts | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, requested: RequestedPorts) -> PrinterPorts:
        """Start every server on this node's host; on failure, close what was started."""
        try:
            self._report_storage()
            camera = None
            if self.camera is not None:
                camera = await self.camera.start(self.host, requested.camera)
            self.ports = PrinterPorts(
                mqtt=await self.broker.start(self.host, requested.mqtt),
                ftps=await self.ftps.start(self.host, requested.ftps),
                bind=await self.bind.start(self.host, requested.bind),
                bind_tls=await self.bind_tls.start(self.host, requested.bind_tls),
                ssdp=await self.ssdp.start(self.host, requested.ssdp),
                camera=camera,
            )
        except BaseException:
            await self.close()
            raise
        return self.ports

    async def close(self) -> None:
        """Stop every server and drop every connection (SSDP says byebye)."""
        for server in (self.ssdp, self.camera, self.bind_tls, self.bind, self.ftps, self.broker):
            if server is not None:
                await server.close()

    def tick(self) -> int:
        """Advance the printer and publish what it reports now; returns reports published."""
        published = 0
        for payload in self.printer.tick():
            self.broker.publish(self.report_topic, payload)
            published += 1
        return published

    def manifest_entry(self) -> ManifestPrinter:
        """This printer as the manifest describes it (after start)."""
        if self.ports is None:
            raise RuntimeError(f"printer {self.serial} has not been started")
        identity = self.spec.identity
        return ManifestPrinter(
            serial=identity.serial,
            model=identity.model.code,
            model_name=identity.model.name,
            name=identity.name,
            host=self.host,
            access_code=identity.access_code,
            ports=self.ports,
        )

    # ------------------------------------------------------------------ fault injection

    def drop_connections(self) -> None:
        """Close every MQTT client connection, as a printer reboot or Wi-Fi drop would."""
        self.broker.drop_all_clients()

    def set_ftps_faults(self, faults: FtpsFaults) -> None:
        """Replace the FTPS faults (slow uploads, aborted uploads, refused logins)."""
        self.ftps.faults = faults

    # ------------------------------------------------------------------ BrokerBehaviour

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        """`bblp` + the access code, as on every printer (protocol.md §1.1)."""
        code = self.spec.identity.access_code.encode()
        return username == USER and password == code

    def allow_subscribe(self, topic_filter: str) -> bool:
        """Refuse `/request` subscriptions when the printer has that quirk."""
        if self.spec.quirks.refuse_request_subscription:
            return not topic_matches(topic_filter, self.request_topic)
        return True

    def on_publish(self, topic: str, payload: bytes) -> None:
        """A client's request: let the printer answer on the report topic."""
        if topic != self.request_topic:
            return  # real printers ignore other topics
        for reply in self.printer.handle_request(payload):
            self.broker.publish(self.report_topic, reply)

    def on_subscribed(self, topic_filter: str) -> None:
        """Send a full report right after SUBSCRIBE: slicers expect status at once (§1.10)."""
        if topic_matches(topic_filter, self.report_topic) and not self.printer.stale:
            self.broker.publish(self.report_topic, self.printer.full_report())

    # ------------------------------------------------------------------ providers

    def _read_file(self, name: str) -> bytes | None:
        try:
            with self.storage.open_for_read(name) as handle:
                return handle.read()
        except (OSError, StorageError):
            return None

    def _on_stored(self, path: str) -> None:
        logger.info("%s: stored %s", self.serial, path)
        self._report_storage()

    def _report_storage(self) -> None:
        self.printer.storage_report(self.storage.free_bytes(), self.storage.total_bytes)

    def _detect_reply(self) -> DetectReply:
        identity = self.spec.identity
        return DetectReply(
            serial=identity.serial,
            model_code=identity.model.code,
            name=identity.name,
            version=identity.firmware,
            bind=BindState.FREE,
            connect=ConnectType.LAN,
            dev_cap=1,
            sequence_id=DETECT_SEQUENCE,
        )

    def _notify(self) -> SsdpNotify:
        identity = self.spec.identity
        return SsdpNotify(
            serial=identity.serial,
            model_code=identity.model.code,
            name=identity.name,
            location=identity.ip,
            connect=ConnectType.LAN,
            bind=BindState.FREE,
            version=identity.firmware,
            signal=-45,
            sec_link="secure",
            interface="wlan0",
            dev_cap=1,
        )

    def _scene(self) -> CameraScene:
        status = self.printer.status()
        return CameraScene(
            printer_name=status.name,
            model_name=self.spec.identity.model.name,
            gcode_state=status.gcode_state,
            progress=status.progress,
            layer=status.layer_num,
            total_layers=status.total_layer_num,
            now=datetime.now(UTC),
        )
