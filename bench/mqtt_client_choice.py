"""Which MQTT client should the fleet use: aiomqtt, gmqtt or our own on `mqtt_packets`?

One child process runs the simulator (N P1S printers reporting at 1 Hz; half of them start a
print so their reports are real deltas, the others send an idle heartbeat every 5 s). Another
child process opens N bare subscribers of ONE kind, one MQTT/TLS connection per printer, each
parsing every payload with orjson and nothing else. The subscriber child is measured over a
window: CPU µs per report (process CPU time / reports received) and RSS per connection
((RSS after the window - RSS before the first connection) / N).

Kinds:
* `aiomqtt` — aiomqtt 2.5.1 (paho underneath, its own socket handling, no asyncio SSL);
* `gmqtt` — gmqtt 0.8.0, an asyncio.Protocol over asyncio's SSL transport;
* `ours` — an asyncio.Protocol on `protocol.mqtt_packets` over asyncio's SSL transport, with
  an inline fast path for QoS 0 PUBLISH (control packets go through `decode_packet`);
* `ours-bio` — the same framing doing TLS itself with `ssl.MemoryBIO` in an
  `asyncio.BufferedProtocol` over a plain TCP transport, receiving into a 16 KiB buffer of its
  own: no asyncio SSL layer, so asyncio's per-connection SSL read buffer does not exist;
* `client` — the fleet's real client, `bambufarm.protocol.mqtt.connect`, with a sink that
  only parses (the same work as the bare kinds);
* `session` — not a bare subscriber: the fleet's `PrinterSession` per printer, all-in (parse,
  merge into PrinterState, ack matching, events on an EventBus with one reader), to compare
  with the budget (≤ 60 µs per report and ≤ 1.5x a bare asyncio-protocol subscriber).

Each runs with asyncio's SSL read buffer (`asyncio.sslproto.SSLProtocol.max_size`) at its
default 256 KiB and lowered to 32 KiB; the knob only matters to kinds on asyncio's SSL transport.

    .venv/bin/python -m bench.mqtt_client_choice [--counts 100 1000] [--seconds 15]
        [--kinds aiomqtt gmqtt ours ours-bio client] [--buffers 262144 32768]
"""

import argparse
import asyncio
import asyncio.sslproto
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import psutil  # type: ignore[import-untyped]

from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Connect,
    Pingreq,
    Suback,
    Subscribe,
    decode_packet,
    encode,
)
from bambufarm.simulator.demo import demo_job, start_job
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.scenario import fleet_secret, mixed_fleet
from bench.common import print_table, write_json
from bench.mqtt_subscriber import raise_nofile, reply, stdin_lines
from bench.simulator import Child, WarpClock

USER = "bblp"
KINDS = ("aiomqtt", "gmqtt", "ours", "ours-bio", "client", "session")
DEFAULT_SSL_BUFFER = 256 * 1024
SMALL_SSL_BUFFER = 32 * 1024
# 60 s as real clients ask for; the window is shorter, so keepalive traffic is negligible.
KEEPALIVE_S = 60
# TLS handshakes cost both processes CPU; 50 in flight keeps connect-all quick on 2 cores.
CONNECT_CONCURRENCY = 50
# Jobs long enough that none ends inside a window.
JOB_HOURS = 6.0
# PREPARE (download, preheat, levelling) takes ~130 simulated seconds of small deltas; the
# clock jumps past it so the window sees RUNNING printers' deltas (progress, layer, temps).
WARP_S = 180.0
# After the jump every printer publishes at once; let that burst pass before measuring.
SETTLE_S = 4.0
# Each simulated printer listens on up to 6 sockets plus its subscriber's connection.
FDS_PER_PRINTER = 8
READ_CHUNK = 32 * 1024  # ours-bio: plaintext read size per SSLObject.read
RECV_BUFFER = 16 * 1024  # ours-bio: one TLS record's worth of ciphertext per recv_into


# --------------------------------------------------------------------------- child plumbing


def rss() -> int:
    """Resident set size of this process in bytes."""
    value: int = psutil.Process().memory_info().rss
    return value


@dataclass(frozen=True, slots=True)
class Target:
    """One printer's MQTT endpoint and login."""

    host: str
    port: int
    serial: str
    access_code: str


def write_targets(path: Path, ca_cert: str, targets: list[Target]) -> None:
    """Write the subscriber's targets with mode 0600: the file holds access codes."""
    path.touch(mode=0o600)
    path.write_text(json.dumps({"ca_cert": ca_cert, "printers": [asdict(t) for t in targets]}))


def read_targets(path: Path) -> tuple[str, list[Target]]:
    """What `write_targets` wrote."""
    body = json.loads(path.read_text())
    return body["ca_cert"], [Target(**t) for t in body["printers"]]


# --------------------------------------------------------------------------- child: simulator


async def simulator_child(count: int, data_dir: Path) -> None:
    """Run `count` P1S printers; `jobs` starts a print on every other one."""
    raise_nofile(count * FDS_PER_PRINTER + 100)
    addressing = Addressing()
    spec = mixed_fleet(
        count, secret=fleet_secret(data_dir), hosts=addressing.hosts(count), models=("P1S",)
    )
    clock = WarpClock()
    fleet = SimFleet(spec, data_dir=data_dir, addressing=addressing, clock=clock)
    manifest = await fleet.start()
    targets = [Target(p.host, p.ports.mqtt, p.serial, p.access_code) for p in manifest.printers]
    write_targets(data_dir / "targets.json", manifest.ca_cert, targets)
    reply({"printers": count})
    printing = 0
    try:
        async for line in stdin_lines():
            if line == "jobs":
                job = demo_job(fleet.nodes[0].spec.identity.model, JOB_HOURS)
                for index, node in enumerate(fleet.nodes):
                    if index % 2 == 0 and node.printer.gcode_state not in ("PREPARE", "RUNNING"):
                        start_job(node, "bench.gcode.3mf", job, task_id=1_000_000 + index)
                        printing += 1
                clock.jump(WARP_S)
                reply({"printing": printing})
            elif line == "mark":
                reply({"published": fleet.reports_published})
            elif line == "quit":
                break
    finally:
        await fleet.close()


# --------------------------------------------------------------------------- child: subscribers


class Counters:
    """What every subscriber of this process has received."""

    __slots__ = ("bytes", "errors", "lost", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.errors = 0
        self.lost = 0

    def on_payload(self, payload: bytes) -> None:
        """Parse one report, as every kind must."""
        self.messages += 1
        self.bytes += len(payload)
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.errors += 1


class LeanFraming:
    """MQTT framing with an inline QoS 0 PUBLISH path; other packets via `decode_packet`."""

    __slots__ = ("_buffer", "_counters", "_on_control")

    def __init__(self, counters: Counters, on_control: Callable[[Any], None]) -> None:
        self._buffer = b""
        self._counters = counters
        self._on_control = on_control

    def feed(self, data: bytes) -> None:
        """Consume `data`, delivering every complete packet."""
        buf = self._buffer + data if self._buffer else data
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            first = buf[pos]
            length = 0
            shift = 0
            index = pos + 1
            while True:
                if index >= size:
                    self._buffer = buf[pos:]
                    return
                digit = buf[index]
                index += 1
                length |= (digit & 0x7F) << shift
                if digit < 0x80:
                    break
                shift += 7
            end = index + length
            if end > size:
                break
            if first & 0xF0 == 0x30:
                topic_end = index + 2 + (buf[index] << 8 | buf[index + 1])
                start = topic_end + 2 if first & 0x06 else topic_end
                self._counters.on_payload(buf[start:end])
            else:
                self._on_control(decode_packet(first, buf[index:end]))
            pos = end
        self._buffer = buf[pos:]


class OursSubscriber(asyncio.Protocol):
    """`ours`: asyncio's SSL transport below, lean framing above."""

    def __init__(self, target: Target, counters: Counters, ready: asyncio.Future[None]) -> None:
        self.target = target
        self.counters = counters
        self.ready = ready
        self.framing = LeanFraming(counters, self.on_control)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.send(login(self.target))

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.framing.feed(data)

    def on_control(self, packet: Any) -> None:
        if isinstance(packet, Connack):
            if packet.return_code != ConnackCode.ACCEPTED:
                self.fail(f"CONNACK {packet.return_code.name}")
                return
            topic = f"device/{self.target.serial}/report"
            self.send(encode(Subscribe(1, ((topic, 0),))))
        elif isinstance(packet, Suback) and not self.ready.done():
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.counters.lost += 1
        self.fail(f"connection lost: {exc}")

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.target.serial}: {why}"))

    def ping(self) -> None:
        self.send(encode(Pingreq()))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class BioSubscriber(OursSubscriber, asyncio.BufferedProtocol):
    """`ours-bio`: TLS done here with MemoryBIO over a plain TCP transport.

    A BufferedProtocol: the transport `recv_into`s a small buffer of ours instead of
    allocating (and shrinking) a 256 KiB bytes object per read, which cost ~20 µs per report
    (measured: 68 µs as a plain Protocol vs 44 µs buffered at 100 connections).
    """

    def __init__(
        self,
        target: Target,
        counters: Counters,
        ready: asyncio.Future[None],
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(target, counters, ready)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=target.serial)
        self.handshaken = False
        self.buffer = memoryview(bytearray(RECV_BUFFER))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.buffer[:nbytes])  # type: ignore[arg-type]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.handshake()

    def handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return
        self.handshaken = True
        self.send(login(self.target))

    def flush(self) -> None:
        pending = self.outgoing.read()
        if pending and self.transport is not None:
            self.transport.write(pending)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshaken:
            self.handshake()
            if not self.handshaken:
                return
        read = self.tls.read
        feed = self.framing.feed
        while True:
            try:
                chunk = read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                self.close()
                break
            feed(chunk)
        if self.outgoing.pending:
            self.flush()


def login(target: Target) -> bytes:
    """The CONNECT of one bench subscriber."""
    return encode(
        Connect(
            f"bench-{target.serial}",
            keepalive=KEEPALIVE_S,
            username=USER,
            password=target.access_code.encode(),
        )
    )


class Fleetish:
    """The subscribers of one kind, with connect-all, keepalive and close."""

    def __init__(
        self, kind: str, targets: list[Target], context: ssl.SSLContext, ca_cert: str
    ) -> None:
        self.kind = kind
        self.targets = targets
        self.context = context
        self.ca_cert = ca_cert
        self.counters = Counters()
        self.sessions: list[Any] = []
        self.bus: Any = None
        self.events = 0
        self.closers: list[Callable[[], Any]] = []
        self.pingers: list[Callable[[], None]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect_all(self) -> None:
        """Open every connection, at most CONNECT_CONCURRENCY handshakes at once."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(target: Target) -> None:
            async with gate:
                await self.connect(target)

        async with asyncio.TaskGroup() as group:
            for target in self.targets:
                group.create_task(one(target))

    async def connect(self, target: Target) -> None:
        """Open one subscriber of this kind and wait until it is subscribed."""
        loop = asyncio.get_running_loop()
        if self.kind.startswith("ours"):
            ready: asyncio.Future[None] = loop.create_future()
            proto: OursSubscriber
            if self.kind == "ours":
                proto = OursSubscriber(target, self.counters, ready)
                await loop.create_connection(
                    lambda: proto, target.host, target.port, ssl=self.context
                )
            else:
                proto = BioSubscriber(target, self.counters, ready, self.context)
                await loop.create_connection(lambda: proto, target.host, target.port)
            await asyncio.wait_for(ready, 60)
            self.closers.append(proto.close)
            self.pingers.append(proto.ping)
        elif self.kind == "gmqtt":
            await self.connect_gmqtt(target)
        elif self.kind == "aiomqtt":
            await self.connect_aiomqtt(target)
        elif self.kind == "client":
            await self.connect_client(target)
        else:
            await self.connect_session(target)

    async def connect_gmqtt(self, target: Target) -> None:
        import gmqtt  # noqa: PLC0415 - only this kind pays for the import
        from gmqtt.mqtt.constants import MQTTv311  # noqa: PLC0415

        counters = self.counters
        client = gmqtt.Client(f"bench-{target.serial}")
        client.set_auth_credentials(USER, target.access_code)
        client.set_config({"reconnect_retries": 0})

        def on_message(_client: object, _topic: str, payload: bytes, _qos: int, _p: object) -> int:
            counters.on_payload(payload)
            return 0

        client.on_message = on_message
        await client.connect(
            target.host, target.port, ssl=self.context, keepalive=KEEPALIVE_S, version=MQTTv311
        )
        subscribed = asyncio.get_running_loop().create_future()
        client.on_subscribe = lambda *_args: subscribed.done() or subscribed.set_result(None)
        client.subscribe(f"device/{target.serial}/report", qos=0)
        await asyncio.wait_for(subscribed, 60)
        self.closers.append(client.disconnect)

    async def connect_aiomqtt(self, target: Target) -> None:
        import aiomqtt  # noqa: PLC0415 - only this kind pays for the import

        counters = self.counters
        ready = asyncio.get_running_loop().create_future()

        async def run() -> None:
            async with aiomqtt.Client(
                target.host,
                target.port,
                username=USER,
                password=target.access_code,
                identifier=f"bench-{target.serial}",
                protocol=aiomqtt.ProtocolVersion.V311,
                tls_context=self.context,
                keepalive=KEEPALIVE_S,
            ) as client:
                await client.subscribe(f"device/{target.serial}/report")
                ready.set_result(None)
                async for message in client.messages:
                    counters.on_payload(cast(bytes, message.payload))

        task = asyncio.create_task(run())
        self.tasks.append(task)
        await asyncio.wait_for(asyncio.shield(ready), 60)

    async def connect_client(self, target: Target) -> None:
        from bambufarm.protocol.mqtt import connect  # noqa: PLC0415 - written after the choice

        counters = self.counters

        class Sink:
            def on_message(self, topic: str, payload: bytes) -> None:
                counters.on_payload(payload)

        client = await connect(
            target.host,
            target.port,
            ssl_context=self.context,
            server_hostname=target.serial,
            username=USER,
            password=target.access_code,
            client_id=f"bench-{target.serial}",
            keepalive=KEEPALIVE_S,
        )
        client.sink = Sink()
        await client.subscribe(f"device/{target.serial}/report")
        self.closers.append(client.close)

    async def connect_session(self, target: Target) -> None:
        """The fleet's whole per-printer path: parse, merge, acks, events on a bus."""
        from bambufarm.fleet.connection import ConnectionState  # noqa: PLC0415
        from bambufarm.fleet.events import ConnectionChanged, EventBus  # noqa: PLC0415
        from bambufarm.fleet.session import PrinterSession, SessionConfig  # noqa: PLC0415
        from bambufarm.fleet.tls import TlsMode, TlsPolicy  # noqa: PLC0415

        if self.bus is None:
            self.bus = EventBus()
            # One reader of every event, as the WebSocket fan-out will be.
            self.tasks.append(asyncio.create_task(self.drain(self.bus.subscribe())))
        config = SessionConfig(
            serial=target.serial,
            host=target.host,
            port=target.port,
            access_code=target.access_code,
            keepalive=KEEPALIVE_S,
        )
        policy = TlsPolicy(TlsMode.VERIFY, ca_file=Path(self.ca_cert))
        session = PrinterSession(config, bus=self.bus, tls_policy=policy, ssl_context=self.context)
        self.sessions.append(session)
        changes = self.bus.subscribe(
            serials=frozenset({target.serial}), kinds=frozenset({ConnectionChanged})
        )
        self.tasks.append(asyncio.create_task(session.run()))
        with changes:
            async with asyncio.timeout(60):
                async for change in changes:
                    if change.state == ConnectionState.ONLINE:
                        break
        self.closers.append(session.stop)

    async def drain(self, subscription: Any) -> None:
        """Count every event the sessions publish."""
        async for _event in subscription:
            self.events += 1

    def reports(self) -> int:
        """Reports handled so far (sessions count the pushes they merged)."""
        if self.kind != "session":
            return self.counters.messages
        return sum(s.state.report_count + s.malformed_reports for s in self.sessions)

    async def keepalive(self) -> None:
        """PINGREQ for the bare kinds (the libraries and our client ping by themselves)."""
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for ping in self.pingers:
                ping()

    async def close(self) -> None:
        """Close every connection."""
        for close in self.closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)


async def subscriber_child(kind: str, targets_path: Path, ssl_buffer: int) -> None:
    """Connect one subscriber of `kind` per target, then answer `mark` and `quit`."""
    asyncio.sslproto.SSLProtocol.max_size = ssl_buffer
    ca_cert, targets = read_targets(targets_path)
    raise_nofile(len(targets) + 100)
    context = ssl.create_default_context(cafile=ca_cert)
    # Simulated printers share 127.0.0.1; the certificate names the serial, not the host.
    context.check_hostname = False
    if kind == "gmqtt":
        import gmqtt  # noqa: F401, PLC0415 - imported before the baseline RSS
    elif kind == "aiomqtt":
        import aiomqtt  # noqa: F401, PLC0415
    elif kind == "client":
        import bambufarm.protocol.mqtt  # noqa: PLC0415
    elif kind == "session":
        import bambufarm.fleet.session  # noqa: F401, PLC0415
    base = rss()
    fleet = Fleetish(kind, targets, context, ca_cert)
    started = time.perf_counter()
    await fleet.connect_all()
    reply({"connected": len(targets), "connect_s": time.perf_counter() - started, "rss_base": base})
    pinger = asyncio.create_task(fleet.keepalive())
    try:
        async for line in stdin_lines():
            if line == "mark":
                counters = fleet.counters
                reply(
                    {
                        "messages": fleet.reports(),
                        "bytes": counters.bytes,
                        "errors": counters.errors,
                        "lost": counters.lost,
                        "cpu": time.process_time(),
                        "rss": rss(),
                        "t": time.monotonic(),
                    }
                )
            elif line == "quit":
                break
    finally:
        pinger.cancel()
        await asyncio.wait([pinger])
        await fleet.close()
        await asyncio.sleep(0.2)  # let the closes reach the transports before the loop ends


# --------------------------------------------------------------------------- parent


@dataclass(frozen=True, slots=True)
class Row:
    """One measured subscriber child."""

    kind: str
    connections: int
    ssl_buffer_kib: int
    connect_s: float
    window_s: float
    reports: int
    reports_per_s: float
    mean_payload_bytes: float
    cpu_us_per_report: float
    cpu_pct: float
    rss_mb: float
    rss_per_conn_kb: float
    lost: int
    parse_errors: int
    loadavg_1min: float


async def measure_kind(
    kind: str, count: int, ssl_buffer: int, targets: Path, seconds: float
) -> Row:
    """Run one subscriber child against the running simulator and measure its window."""
    child = await Child.spawn(
        kind, "bench.mqtt_client_choice", "--child", "sub", "--kind", kind,
        "--targets", str(targets), "--ssl-buffer", str(ssl_buffer),
    )  # fmt: skip
    try:
        hello = await child.ask()
        await asyncio.sleep(SETTLE_S)  # the full reports answering SUBSCRIBE pass first
        before = await child.ask("mark")
        await asyncio.sleep(seconds)
        after = await child.ask("mark")
    finally:
        await child.quit()
    reports = after["messages"] - before["messages"]
    window = after["t"] - before["t"]
    cpu = after["cpu"] - before["cpu"]
    return Row(
        kind=kind,
        connections=count,
        ssl_buffer_kib=ssl_buffer // 1024,
        connect_s=round(hello["connect_s"], 2),
        window_s=round(window, 2),
        reports=reports,
        reports_per_s=round(reports / window, 1),
        mean_payload_bytes=round((after["bytes"] - before["bytes"]) / max(reports, 1)),
        cpu_us_per_report=round(cpu / max(reports, 1) * 1e6, 1),
        cpu_pct=round(cpu / window * 100, 1),
        rss_mb=round(after["rss"] / 1e6, 1),
        rss_per_conn_kb=round((after["rss"] - hello["rss_base"]) / count / 1e3, 1),
        lost=after["lost"],
        parse_errors=after["errors"],
        loadavg_1min=round(os.getloadavg()[0], 2),
    )


async def parent(counts: list[int], kinds: list[str], buffers: list[int], seconds: float) -> None:
    """For each fleet size: start the simulator once, then measure every kind and buffer."""
    rows: list[Row] = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
            sim = await Child.spawn("simulator", "bench.mqtt_client_choice", "--child", "sim",
                                    "--count", str(count), "--data-dir", tmp)  # fmt: skip
            try:
                await sim.ask()
                jobs = await sim.ask("jobs")
                print(f"{count} printers, {jobs['printing']} printing", file=sys.stderr)
                for buffer in buffers:
                    for kind in kinds:
                        row = await measure_kind(
                            kind, count, buffer, Path(tmp) / "targets.json", seconds
                        )
                        print(f"measured: {row}", file=sys.stderr)
                        rows.append(row)
            finally:
                await sim.quit()
    report(rows, seconds)


def report(rows: list[Row], seconds: float) -> None:
    """Print the table, with the CPU ratio to `ours` at the same size and buffer."""
    baseline = {(r.connections, r.ssl_buffer_kib): r for r in rows if r.kind == "ours"}

    def ratio(row: Row) -> str:
        base = baseline.get((row.connections, row.ssl_buffer_kib))
        if base is None or not base.cpu_us_per_report:
            return "-"
        return f"{row.cpu_us_per_report / base.cpu_us_per_report:.2f}x"

    print_table(
        f"Bare MQTT/TLS subscribers, one per simulated P1S (half printing), orjson parse of "
        f"every payload, {seconds:g} s window, {os.cpu_count()} cores",
        [
            "client", "connections", "asyncio SSL buffer KiB", "CPU µs/report", "vs ours",
            "RSS/conn KB", "reports/s", "mean payload B", "connect-all s", "lost", "load 1 min",
        ],
        [
            [
                r.kind, r.connections, r.ssl_buffer_kib, r.cpu_us_per_report, ratio(r),
                r.rss_per_conn_kb, r.reports_per_s, r.mean_payload_bytes, r.connect_s, r.lost,
                r.loadavg_1min,
            ]
            for r in rows
        ],
    )  # fmt: skip
    path = write_json(
        "mqtt_client_choice",
        {
            "benchmark": "mqtt_client_choice",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "window_s": seconds,
            "rows": [asdict(r) for r in rows],
        },
    )
    print(f"\nwrote {path}")


def main() -> None:
    """Command-line entry point (the parent or one of the two child kinds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--buffers", type=int, nargs="+", default=[DEFAULT_SSL_BUFFER, SMALL_SSL_BUFFER]
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--child", choices=("sim", "sub"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--targets", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ssl-buffer", type=int, default=DEFAULT_SSL_BUFFER, help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child == "sim":
        asyncio.run(simulator_child(args.count, args.data_dir))
    elif args.child == "sub":
        asyncio.run(subscriber_child(args.kind, args.targets, args.ssl_buffer))
    else:
        asyncio.run(parent(args.counts, args.kinds, args.buffers, args.seconds))


if __name__ == "__main__":
    main()
