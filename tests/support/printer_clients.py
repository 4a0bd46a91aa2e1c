"""Loopback clients for talking to a simulated printer the way real clients do.

`MqttProbe` is a byte-level MQTT 3.1.1 client on asyncio streams and our codec: it can send what
no polite client would and reads every packet the printer sends. `ImplicitFtps` is ftplib with
implicit TLS and data-channel session reuse, the way Bambu clients drive printers; its calls
block, so tests run them with `asyncio.to_thread`. `eventually` polls state that a third-party
client changes on its own thread.
"""

import asyncio
import contextlib
import ftplib
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

import orjson

from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Connect,
    Packet,
    PacketReader,
    Publish,
    Suback,
    Subscribe,
    encode,
)
from bambufarm.simulator.manifest import ManifestPrinter

USER = "bblp"
# Generous for a loaded 2-core machine, bounded so a broken simulator fails the test quickly.
TIMEOUT = 10.0

Report = dict[str, Any]


def client_context(ca_cert: str | None = None, *, check_hostname: bool = False) -> ssl.SSLContext:
    """A TLS client context: verifying against the simulator CA, or not verifying at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_cert is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(ca_cert)
        # Printers present CN=<serial>; the simulator adds an IP SAN so hostname checks can pass.
        context.check_hostname = check_hostname
    return context


async def eventually(condition: Callable[[], bool], what: str, within: float = TIMEOUT) -> None:
    """Wait until `condition()` holds; fail with `what` after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            # Polling, not an Event: third-party clients change this state on their own thread.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within} s waiting for {what}") from None


class MqttProbe:
    """A raw MQTT client connected to one simulated printer's broker."""

    def __init__(
        self,
        printer: ManifestPrinter,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.printer = printer
        self.reader = reader
        self.writer = writer
        self.report_topic = f"device/{printer.serial}/report"
        self.request_topic = f"device/{printer.serial}/request"
        self._packets = PacketReader(1 << 24)
        self._pending: list[Packet] = []
        self._next_id = 0
        self.messages: list[Report] = []  # every report decoded so far, in arrival order
        self.raw_payloads: list[bytes] = []

    @classmethod
    async def open(
        cls,
        printer: ManifestPrinter,
        context: ssl.SSLContext | None = None,
        *,
        source: str | None = None,
    ) -> "MqttProbe":
        """Open the TLS connection (unverified unless `context` says otherwise).

        `source` picks the local address (any of 127.0.0.0/8), so a test can appear to come
        from another machine.
        """
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                printer.host,
                printer.ports.mqtt,
                ssl=context or client_context(),
                local_addr=(source, 0) if source else None,
            ),
            TIMEOUT,
        )
        return cls(printer, reader, writer)

    @classmethod
    async def connected(
        cls,
        printer: ManifestPrinter,
        *,
        subscribe: bool = True,
        client_id: str = "",
        keepalive: int = 60,
    ) -> "MqttProbe":
        """Open, log in with the right code and (by default) subscribe to the report topic."""
        probe = await cls.open(printer)
        try:
            code = await probe.login(client_id=client_id, keepalive=keepalive)
            assert code is ConnackCode.ACCEPTED, f"login refused with {code!r}"
            if subscribe:
                assert await probe.subscribe(probe.report_topic) == (0,)
        except BaseException:
            await probe.close()
            raise
        return probe

    async def send(self, data: bytes | Packet) -> None:
        """Write raw bytes or an encoded packet."""
        self.writer.write(data if isinstance(data, bytes) else encode(data))
        await self.writer.drain()

    async def recv(self, within: float = TIMEOUT) -> Packet:
        """The next packet from the broker; ConnectionError when it closed the connection."""
        async with asyncio.timeout(within):
            while not self._pending:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("closed by the printer")
                self._pending += self._packets.feed(chunk)
        packet = self._pending.pop(0)
        if isinstance(packet, Publish):
            self.raw_payloads.append(packet.payload)
            decoded = decode_report(packet.payload)
            if decoded is not None:
                self.messages.append(decoded)
        return packet

    async def login(
        self,
        code: str | None = None,
        *,
        client_id: str = "",
        keepalive: int = 60,
        username: str = USER,
    ) -> ConnackCode:
        """Send CONNECT and return the CONNACK code."""
        password = (self.printer.access_code if code is None else code).encode()
        await self.send(
            Connect(client_id, keepalive=keepalive, username=username, password=password)
        )
        packet = await self.recv()
        assert isinstance(packet, Connack), f"expected CONNACK, got {packet!r}"
        return packet.return_code

    async def subscribe(self, *filters: str) -> tuple[int, ...]:
        """SUBSCRIBE at QoS 0 and return the SUBACK codes (reports may arrive before it)."""
        packet_id = self._packet_id()
        await self.send(Subscribe(packet_id, tuple((f, 0) for f in filters)))
        while True:
            packet = await self.recv()
            if isinstance(packet, Suback) and packet.packet_id == packet_id:
                return packet.return_codes

    async def request(self, message: Report | bytes, *, qos: int = 0) -> None:
        """Publish a command on the printer's request topic."""
        payload = message if isinstance(message, bytes) else orjson.dumps(message)
        packet_id = self._packet_id() if qos else None
        await self.send(Publish(self.request_topic, payload, qos=qos, packet_id=packet_id))

    async def report(
        self, predicate: Callable[[Report], bool], what: str, within: float = TIMEOUT
    ) -> Report:
        """The first report from now on that satisfies `predicate`."""
        try:
            async with asyncio.timeout(within):
                while True:
                    packet = await self.recv(within)
                    if isinstance(packet, Publish):
                        message = decode_report(packet.payload)
                        if message is not None and predicate(message):
                            return message
        except TimeoutError:
            raise AssertionError(f"timed out after {within} s waiting for {what}") from None

    async def reply(self, section: str, command: str, sequence_id: object) -> Report:
        """The printer's answer to one request: same section, command and sequence id."""

        def matches(message: Report) -> bool:
            body = message.get(section)
            return (
                isinstance(body, dict)
                and body.get("command") == command
                and body.get("sequence_id") == sequence_id
            )

        message = await self.report(matches, f"the reply to {section}.{command} #{sequence_id}")
        body: Report = message[section]
        return body

    async def gather(self, seconds: float) -> list[Packet]:
        """Every packet that arrives within `seconds` (none is not an error)."""
        packets: list[Packet] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                packets.append(await self.recv(left))
            except TimeoutError:
                break
        return packets

    async def closed_by_printer(self, within: float = TIMEOUT) -> bool:
        """True once the printer has closed the connection (EOF or reset)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    continue
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Close the connection, tolerating a printer that already dropped it."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await self.writer.wait_closed()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id


def camera_auth_packet(code: str, user: str = USER) -> bytes:
    """The 80-byte camera auth of protocol.md §3.2, built from its table (not our codec)."""
    # Four little-endian words (0x40 bytes of credentials follow, type 0x3000 "auth", flags 0,
    # reserved 0), then user and access code NUL-padded to 32 bytes each.
    return struct.pack("<IIII32s32s", 0x40, 0x3000, 0, 0, user.encode(), code.encode())


def decode_report(payload: bytes) -> Report | None:
    """A report payload as a JSON object; None when it is not one."""
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def print_body(message: Report) -> Report:
    """The `print` object of a report (empty when the report has none)."""
    body = message.get("print")
    return body if isinstance(body, dict) else {}


def is_push_status(message: Report) -> bool:
    """True for a `print.push_status` report."""
    return print_body(message).get("command") == "push_status"


class ImplicitFtps(ftplib.FTP_TLS):
    """ftplib over implicit TLS with the data channel reusing the control session."""

    def __init__(self, context: ssl.SSLContext, *, reuse_session: bool = True) -> None:
        super().__init__(context=context, timeout=TIMEOUT)
        self.reuse_session = reuse_session
        self._control: ssl.SSLSocket | None = None

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        """Connect and start TLS at once (implicit FTPS), then read the banner."""
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), TIMEOUT)
        self._control = self.context.wrap_socket(raw, server_hostname=host)
        self.sock = self._control
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        """Open the data connection, wrapping it in TLS with the control session reused."""
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - TLS follows
        if self._prot_p:  # type: ignore[attr-defined]  # ftplib keeps PROT P state privately
            session = self._control.session if self.reuse_session and self._control else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def open_ftps(
    printer: ManifestPrinter,
    context: ssl.SSLContext | None = None,
    *,
    reuse_session: bool = True,
    login: bool = True,
) -> ImplicitFtps:
    """Connect (blocking) to a printer's FTPS server, log in and turn on PROT P."""
    ftp = ImplicitFtps(context or client_context(), reuse_session=reuse_session)
    try:
        ftp.connect(printer.host, printer.ports.ftps)
        if login:
            ftp.login(USER, printer.access_code)
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


def store_tolerant(ftp: ImplicitFtps, name: str, data: bytes) -> str:
    """STOR that survives the printer refusing or dropping the data connection (blocking).

    Returns the printer's final reply text (e.g. `226 ...`, `426 ...`, `522 ...`), whatever
    happened to the data socket on the way.
    """
    try:
        conn = ftp.transfercmd(f"STOR {name}")
    except ftplib.Error as err:
        return str(err)
    try:
        with contextlib.suppress(OSError):
            conn.sendall(data)
    finally:
        conn.close()  # no close_notify: the printer must take EOF as the end (rule 3)
    try:
        return ftp.voidresp()
    except ftplib.Error as err:
        return str(err)


def quit_ftps(ftp: ftplib.FTP) -> None:
    """QUIT politely, then close whatever is left (blocking)."""
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()
