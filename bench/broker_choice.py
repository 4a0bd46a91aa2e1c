"""Which printer-side MQTT broker fits the simulator budget: amqtt or our own?

Starts N brokers in one child process (one per simulated printer), connects one subscriber to
each from this process, lets every broker publish one report per second for a while, and
measures the child: RSS per broker and CPU µs per delivered message, extrapolated to 1,000
printers against design.md §6 (simulator: 1,000 printers ≤ 1.5 GB RSS, ≤ 50 % of one core).

A "driver" row runs the same per-printer publishing tasks with no broker at all: the floor
both implementations share.

    .venv/bin/python bench/broker_choice.py [--counts 50 200] [--seconds 10] [--tls both]
"""

import argparse
import asyncio
import datetime as dt
import json
import logging
import platform
import ssl
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil
from amqtt.broker import Broker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bambufarm.protocol.mqtt_packets import (
    Connack,
    Connect,
    PacketReader,
    Publish,
    Suback,
    Subscribe,
    encode,
)
from bambufarm.simulator.broker import MqttBroker

RESULTS = Path(__file__).resolve().parent / "results" / "broker_choice.json"
ACCESS_CODE = "12345678"
# A delta report of a printing P1S is 0.3-2 KB; 1 KB is the middle.
PAYLOAD = b'{"print":{"command":"push_status","msg":1,' + b'"x":"' + b"a" * 950 + b'"}}'
BUDGET_RSS = 1.5e9
BUDGET_CPU_SHARE = 0.5
PRINTERS = 1000


def serial_of(index: int) -> str:
    return f"01P00A{index:09d}"


# --------------------------------------------------------------------------- TLS material


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key (CN=printer) in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "printer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


# --------------------------------------------------------------------------- child: brokers


class _BenchBehaviour:
    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        return username == "bblp" and password == ACCESS_CODE.encode()

    def allow_subscribe(self, topic_filter: str) -> bool:
        return True

    def on_publish(self, topic: str, payload: bytes) -> None:
        return None

    def on_subscribed(self, topic_filter: str) -> None:
        return None


async def _start_ours(count: int, context: ssl.SSLContext | None) -> tuple[list[int], Any, Any]:
    brokers = [MqttBroker(_BenchBehaviour(), context) for _ in range(count)]
    ports = [await broker.start("127.0.0.1", 0) for broker in brokers]

    def publisher(index: int) -> Any:
        broker, topic = brokers[index], f"device/{serial_of(index)}/report"
        return lambda: broker.publish(topic, PAYLOAD)

    async def close() -> None:
        for broker in brokers:
            await broker.close()

    return ports, [publisher(i) for i in range(count)], close


async def _start_amqtt(count: int, tls: tuple[Path, Path] | None) -> tuple[list[int], Any, Any]:
    # amqtt logs every connection at INFO; the simulator would silence it the same way.
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    listener: dict[str, Any] = {"type": "tcp", "bind": "127.0.0.1:0"}
    if tls is not None:
        listener |= {"ssl": True, "certfile": str(tls[0]), "keyfile": str(tls[1])}
    brokers = []
    ports = []
    for _ in range(count):
        broker = Broker(
            {
                "listeners": {"default": listener},
                # Only what a printer needs: no $SYS tree, no packet logging.
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        brokers.append(broker)
        # amqtt has no public way to ask for the bound port of a port-0 listener.
        ports.append(broker._servers["default"].instance.sockets[0].getsockname()[1])

    def publisher(index: int) -> Any:
        broker, topic = brokers[index], f"device/{serial_of(index)}/report"
        return lambda: asyncio.ensure_future(broker.internal_message_broadcast(topic, PAYLOAD, 0))

    async def close() -> None:
        for broker in brokers:
            await broker.shutdown()

    return ports, [publisher(i) for i in range(count)], close


async def _drive(publishers: list[Any], seconds: float) -> None:
    """One task per printer, one publish per second, spread evenly over the second."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Future[Any]] = set()

    async def printer(index: int, publish: Any) -> None:
        tick = start + index / len(publishers)
        while tick < start + seconds:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            result = publish()
            if isinstance(result, asyncio.Future):
                pending.add(result)
                result.add_done_callback(pending.discard)
            tick += 1.0

    async with asyncio.TaskGroup() as group:
        for index, publish in enumerate(publishers):
            group.create_task(printer(index, publish))
    if pending:
        await asyncio.gather(*pending)


async def child_main(impl: str, count: int, tls_dir: str | None) -> None:
    tls = (Path(tls_dir) / "cert.pem", Path(tls_dir) / "key.pem") if tls_dir else None
    # Both implementations are imported at the top: only per-broker cost remains above this.
    rss_imported = psutil.Process().memory_info().rss
    if impl == "ours":
        context = server_context(*tls) if tls else None
        ports, publishers, close = await _start_ours(count, context)
    elif impl == "amqtt":
        ports, publishers, close = await _start_amqtt(count, tls)
    else:  # driver only

        async def nothing() -> None:
            return None

        ports, publishers, close = [], [lambda: 0] * count, nothing
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"ports": ports, "rss_imported": rss_imported}), flush=True)
    while line := (await stdin.readline()).decode().split():
        if line[0] == "go":
            await _drive(publishers, float(line[1]))
            print("done", flush=True)
        elif line[0] == "quit":
            break
    await close()


# --------------------------------------------------------------------------- parent: clients


class _Subscriber(asyncio.Protocol):
    """The smallest MQTT client that logs in, subscribes and counts PUBLISHes."""

    def __init__(self, serial: str, ready: asyncio.Future[None]) -> None:
        self.serial = serial
        self.ready = ready
        self.reader = PacketReader(1 << 20)
        self.received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            encode(Connect("", keepalive=60, username="bblp", password=ACCESS_CODE.encode()))
        )

    def data_received(self, data: bytes) -> None:
        for packet in self.reader.feed(data):
            if isinstance(packet, Publish):
                self.received += 1
            elif isinstance(packet, Connack):
                assert packet.return_code == 0, packet
                assert self.transport is not None
                self.transport.write(encode(Subscribe(1, ((f"device/{self.serial}/report", 0),))))
            elif isinstance(packet, Suback) and not self.ready.done():
                self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"lost before SUBACK: {exc}"))


@dataclass(frozen=True, slots=True)
class Row:
    impl: str
    transport: str
    brokers: int
    rss_base_mb: float
    rss_per_broker_kb: float
    cpu_us_per_msg: float
    cpu_net_us_per_msg: float  # minus the driver row of the same N and transport
    delivered: int
    expected: int
    rss_1000_mb: float
    cpu_1000_pct: float
    within_budget: bool


async def run_one(impl: str, count: int, seconds: float, tls_dir: Path | None) -> Row:
    args = [sys.executable, __file__, "--child", impl, str(count)]
    if tls_dir is not None:
        args += ["--tls-dir", str(tls_dir)]
    child = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None
    assert child.stdout is not None
    proc = psutil.Process(child.pid)
    hello = json.loads(await child.stdout.readline())
    ports, rss_imported = hello["ports"], hello["rss_imported"]
    loop = asyncio.get_running_loop()
    client_ctx = None
    if tls_dir is not None:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
    subscribers: list[_Subscriber] = []
    for index, port in enumerate(ports):
        ready = loop.create_future()
        sub = _Subscriber(serial_of(index), ready)
        await loop.create_connection(lambda s=sub: s, "127.0.0.1", port, ssl=client_ctx)
        await asyncio.wait_for(ready, 10)
        subscribers.append(sub)
    await asyncio.sleep(1.0)  # let both sides settle before reading RSS
    before = proc.cpu_times()
    got_before = sum(s.received for s in subscribers)
    child.stdin.write(f"go {seconds}\n".encode())
    await child.stdin.drain()
    assert (await child.stdout.readline()).strip() == b"done"
    after = proc.cpu_times()
    # RSS after the publishing window: per-connection buffers have been used by then.
    rss_loaded = proc.memory_info().rss
    await asyncio.sleep(0.5)  # in-flight messages still arriving on loopback
    delivered = sum(s.received for s in subscribers) - got_before
    child.stdin.write(b"quit\n")
    await child.stdin.drain()
    for sub in subscribers:
        if sub.transport is not None:
            sub.transport.close()
    await child.wait()
    cpu = (after.user + after.system) - (before.user + before.system)
    expected = count * round(seconds)
    # The driver row delivers nothing; its cost is per publish call.
    per_msg_us = cpu / max(expected if impl == "driver" else delivered, 1) * 1e6
    per_broker = (rss_loaded - rss_imported) / count
    rss_1000 = rss_imported + per_broker * PRINTERS
    cpu_1000 = per_msg_us * PRINTERS / 1e6
    return Row(
        impl=impl,
        transport="tls" if tls_dir else "tcp",
        brokers=count,
        rss_base_mb=round(rss_imported / 1e6, 1),
        rss_per_broker_kb=round(per_broker / 1e3, 1),
        cpu_us_per_msg=round(per_msg_us, 1),
        cpu_net_us_per_msg=0.0,
        delivered=delivered,
        expected=expected,
        rss_1000_mb=round(rss_1000 / 1e6, 1),
        cpu_1000_pct=round(cpu_1000 * 100, 1),
        within_budget=rss_1000 <= BUDGET_RSS and cpu_1000 <= BUDGET_CPU_SHARE,
    )


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'impl':<7}{'tls':<5}{'N':>5}{'base MB':>9}{'KB/broker':>11}{'µs/msg':>9}{'net':>7}"
        f"{'delivered':>12}{'RSS@1000 MB':>13}{'CPU@1000':>10}  budget"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.impl:<7}{r.transport:<5}{r.brokers:>5}{r.rss_base_mb:>9}{r.rss_per_broker_kb:>11}"
            f"{r.cpu_us_per_msg:>9}{r.cpu_net_us_per_msg:>7}{f'{r.delivered}/{r.expected}':>12}{r.rss_1000_mb:>13}"
            f"{f'{r.cpu_1000_pct}%':>10}  {'ok' if r.within_budget else 'OVER'}"
        )


# What each implementation offers for the simulator's per-printer needs (read from amqtt
# 0.12's plugin API; ours is whatever simulator/broker.py implements).
FEATURES = {
    "CONNACK 5 for a chosen password": {
        "amqtt": "yes: auth plugin returning False answers NOT_AUTHORIZED (5)",
        "ours": "yes: BrokerBehaviour.check_credentials",
    },
    "max clients": {
        "amqtt": "partly: listener max_connections is a semaphore, extra clients hang "
        "un-answered instead of being refused",
        "ours": "yes: CONNACK 3 past max_clients",
    },
    "refuse a subscription": {
        "amqtt": "yes: topic plugin returning False gives SUBACK 0x80",
        "ours": "yes: BrokerBehaviour.allow_subscribe",
    },
    "stop publishing, connections stay open": {
        "amqtt": "yes (the caller simply stops broadcasting)",
        "ours": "yes",
    },
    "drop all clients": {
        "amqtt": "no public API: needs the private session table",
        "ours": "yes: drop_all_clients()",
    },
    "per-printer TLS context": {
        "amqtt": "no: listener takes certificate file paths, not an SSLContext",
        "ours": "yes: ssl_context argument",
    },
    "login rate limit per address": {
        "amqtt": "possible in an auth plugin (session.remote_address)",
        "ours": "yes: LoginLimit",
    },
    "sync publish returning the delivered count": {
        "amqtt": "no: broadcasts go through an unbounded queue and one task per delivery",
        "ours": "yes: publish() -> int",
    },
    "drop QoS 0 for a client that stopped reading": {
        "amqtt": "no: deliveries wait on drain(), pending tasks grow without bound",
        "ours": "yes: paused transports are skipped",
    },
    "bound port of a port-0 listener": {
        "amqtt": "no public API",
        "ours": "yes: start() returns it",
    },
}


async def parent_main(counts: list[int], seconds: float, tls_modes: list[bool]) -> None:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        tls_dir = Path(tmp)
        make_tls_files(tls_dir)
        for tls in tls_modes:
            for count in counts:
                driver = await run_one("driver", count, seconds, tls_dir if tls else None)
                rows.append(driver)
                print_table([driver])
                for impl in ("amqtt", "ours"):
                    row = await run_one(impl, count, seconds, tls_dir if tls else None)
                    net = round(row.cpu_us_per_msg - driver.cpu_us_per_msg, 1)
                    row = replace(row, cpu_net_us_per_msg=net)
                    rows.append(row)
                    print_table([row])
    print()
    cores, python = psutil.cpu_count(), platform.python_version()
    print(f"machine: {platform.machine()}, {cores} cores, Python {python}")
    print(
        f"budget at {PRINTERS} printers: RSS <= {BUDGET_RSS / 1e9} GB, "
        f"CPU <= {BUDGET_CPU_SHARE:.0%} of one core"
    )
    print_table(rows)
    print("\nper-printer needs (amqtt 0.12 public/plugin API vs ours):")
    for need, answers in FEATURES.items():
        print(f"  {need}:\n    amqtt: {answers['amqtt']}\n    ours:  {answers['ours']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "broker_choice",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cores": psutil.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "payload_bytes": len(PAYLOAD),
                "seconds": seconds,
                "budget": {
                    "printers": PRINTERS,
                    "rss_bytes": BUDGET_RSS,
                    "cpu_share": BUDGET_CPU_SHARE,
                },
                "rows": [asdict(r) for r in rows],
                "features": FEATURES,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tls", choices=("off", "on", "both"), default="both")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child_main(args.child[0], int(args.child[1]), args.tls_dir))
        return
    tls_modes = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
    asyncio.run(parent_main(args.counts, args.seconds, tls_modes))


if __name__ == "__main__":
    main()
