"""The benchmark's client side: one MQTT/TLS subscriber per printer, in its own process.

A farm server holds one MQTT session per printer; this process plays that role as cheaply as
possible (one `asyncio.Protocol` per connection over `protocol.mqtt_packets`) so that the
simulator under test pays for real TLS sessions with a real reader on the other end.

    python -m bench.mqtt_subscriber TARGETS_JSON

TARGETS_JSON (written by the process under test) holds the CA certificate and, per printer,
host, port, serial and access code. The process answers lines on stdin with one JSON line on
stdout: on start-up `{"connected": n, "connect_s": ...}` once every client has its SUBACK,
then `mark` -> the message and byte counters, `quit` -> close every connection and exit.
"""

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bambufarm.protocol.mqtt_packets import (
    Connack,
    ConnackCode,
    Connect,
    PacketReader,
    Pingreq,
    Publish,
    Suback,
    Subscribe,
    encode,
)

USER = "bblp"
# Real clients (Bambu Studio, Home Assistant) ask for 60 s; a PINGREQ every half keepalive
# keeps the broker's 1.5 x keepalive watchdog far away even when this process is busy.
KEEPALIVE_S = 60
# TLS handshakes cost both processes CPU; 50 in flight keeps connect-all fast on 2 cores
# without a thundering herd of half-open handshakes.
CONNECT_CONCURRENCY = 50
CONNECT_TIMEOUT_S = 60.0
MAX_PACKET = 1 << 20


@dataclass(frozen=True, slots=True)
class Target:
    """One printer's MQTT endpoint and login."""

    host: str
    port: int
    serial: str
    access_code: str


@dataclass(frozen=True, slots=True)
class Targets:
    """Every printer to subscribe to plus the CA that signed their certificates."""

    ca_cert: str
    printers: tuple[Target, ...]

    def write(self, path: Path) -> None:
        """Write as JSON with mode 0600: the file holds access codes."""
        body = {
            "ca_cert": self.ca_cert,
            "printers": [[t.host, t.port, t.serial, t.access_code] for t in self.printers],
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(body))

    @classmethod
    def read(cls, path: Path) -> "Targets":
        """Read what `write` wrote."""
        body = json.loads(path.read_text())
        return cls(
            ca_cert=body["ca_cert"],
            printers=tuple(Target(h, int(p), s, c) for h, p, s, c in body["printers"]),
        )


class Counters:
    """What every subscriber of this process has received so far."""

    __slots__ = ("bytes", "lost", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.lost = 0

    def snapshot(self) -> dict[str, float]:
        """The counters plus a monotonic timestamp, for one `mark` answer."""
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "lost": self.lost,
            "t": time.monotonic(),
        }


class Subscriber(asyncio.Protocol):
    """Logs in, subscribes to one printer's report topic and counts what arrives."""

    __slots__ = ("_counters", "_reader", "_ready", "_target", "transport")

    def __init__(self, target: Target, counters: Counters, ready: asyncio.Future[None]) -> None:
        self._target = target
        self._counters = counters
        self._ready = ready
        self._reader = PacketReader(MAX_PACKET)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        login = Connect(
            f"bench-{self._target.serial}",
            keepalive=KEEPALIVE_S,
            username=USER,
            password=self._target.access_code.encode(),
        )
        self.transport.write(encode(login))

    def data_received(self, data: bytes) -> None:
        for packet in self._reader.feed(data):
            if isinstance(packet, Publish):
                self._counters.messages += 1
                self._counters.bytes += len(packet.payload)
            elif isinstance(packet, Connack):
                self._on_connack(packet)
            elif isinstance(packet, Suback) and not self._ready.done():
                self._ready.set_result(None)

    def _on_connack(self, packet: Connack) -> None:
        if packet.return_code != ConnackCode.ACCEPTED:
            self._fail(f"CONNACK {packet.return_code.name}")
            return
        topic = f"device/{self._target.serial}/report"
        assert self.transport is not None
        self.transport.write(encode(Subscribe(1, ((topic, 0),))))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._counters.lost += 1
        self._fail(f"connection lost: {exc}")

    def _fail(self, why: str) -> None:
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(f"{self._target.serial}: {why}"))

    def ping(self) -> None:
        """Send PINGREQ (the keepalive)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(Pingreq()))

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


def raise_nofile(needed: int) -> dict[str, int]:
    """Raise the soft descriptor limit to the hard one; warn when even that is below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(
            f"warning: RLIMIT_NOFILE hard limit {hard} < ~{needed} descriptors needed; "
            "raise it (ulimit -Hn) or expect EMFILE",
            file=sys.stderr,
        )
    return {"soft_before": soft, "hard": hard, "needed": needed}


async def stdin_lines() -> AsyncIterator[str]:
    """The commands the benchmark parent writes to our stdin, one stripped line at a time."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


def reply(body: Mapping[str, object]) -> None:
    """Answer the parent with one JSON line."""
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


async def _connect_all(
    targets: Targets, counters: Counters, context: ssl.SSLContext
) -> list[Subscriber]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    subscribers: list[Subscriber] = []

    async def connect_one(target: Target) -> None:
        async with gate:
            ready: asyncio.Future[None] = loop.create_future()
            subscriber = Subscriber(target, counters, ready)
            subscribers.append(subscriber)
            await loop.create_connection(lambda: subscriber, target.host, target.port, ssl=context)
            await asyncio.wait_for(ready, CONNECT_TIMEOUT_S)

    async with asyncio.TaskGroup() as group:
        for target in targets.printers:
            group.create_task(connect_one(target))
    return subscribers


async def _keepalive(subscribers: list[Subscriber]) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S / 2)
        for subscriber in subscribers:
            subscriber.ping()


async def run(targets_path: Path) -> None:
    """Connect every subscriber, then answer `mark` and `quit` from stdin."""
    targets = Targets.read(targets_path)
    nofile = raise_nofile(len(targets.printers) + 100)
    context = ssl.create_default_context(cafile=targets.ca_cert)
    # Simulated printers share 127.0.0.1; the CN is the serial, as on real printers.
    context.check_hostname = False
    counters = Counters()
    started = time.perf_counter()
    subscribers = await _connect_all(targets, counters, context)
    reply(
        {
            "connected": len(subscribers),
            "connect_s": time.perf_counter() - started,
            "nofile": nofile,
        }
    )
    pinger = asyncio.create_task(_keepalive(subscribers))
    try:
        async for line in stdin_lines():
            if line == "mark":
                reply(counters.snapshot())
            elif line == "quit":
                break
    finally:
        pinger.cancel()
        await asyncio.wait([pinger])
        for subscriber in subscribers:
            subscriber.close()
        await asyncio.sleep(0.1)  # let the closes reach the transports before the loop ends


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", type=Path)
    args = parser.parse_args()
    asyncio.run(run(args.targets))


if __name__ == "__main__":
    main()
