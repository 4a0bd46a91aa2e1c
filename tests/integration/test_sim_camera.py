"""The simulated TLS-6000 camera over loopback: auth, frame layout, TLS records, close."""

import asyncio
import io
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from PIL import Image

from bambufarm.protocol.camera import (
    FRAME_HEADER_SIZE,
    decode_frame_header,
    encode_auth,
)
from bambufarm.simulator.camera import CameraScene, CameraServer, render_jpeg
from bambufarm.simulator.tls import SimulatorCA, server_context

T = TypeVar("T")
SERIAL = "01P00A123456789"
ACCESS_CODE = "12345678"
TIMEOUT = 5.0
SCENE = CameraScene(
    printer_name="Sim P1S",
    model_name="P1S",
    gcode_state="RUNNING",
    progress=42,
    layer=17,
    total_layers=120,
    now=datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC),
)


class RecordClient:
    """A TLS client whose `recv` is one SSL_read, like `recv` on a blocking ssl socket.

    OpenSSL returns at most one TLS record per read, so the first `recv` after auth shows
    whether the server sent the frame header as its own write. asyncio's SSL transport would
    merge records, and a blocking socket would block the event loop the server runs on.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname="127.0.0.1")

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> "RecordClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, context)
        try:
            await client._run(client.tls.do_handshake)
        except BaseException:
            await client.close()
            raise
        return client

    async def _run(self, operation: Callable[[], T]) -> T:
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await asyncio.wait_for(self._reader.read(65536), TIMEOUT)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            await self._flush()
            return result

    async def _flush(self) -> None:
        if data := self._outgoing.read():
            self._writer.write(data)
            await self._writer.drain()

    async def send(self, data: bytes) -> None:
        await self._run(lambda: self.tls.write(data))

    async def recv(self, size: int = 4096) -> bytes:
        """One SSL_read; b"" once the server has closed the connection."""
        try:
            return await self._run(lambda: self.tls.read(size))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            return b""

    async def recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = await self.recv(min(size - len(data), 4096))
            assert chunk, f"connection closed after {len(data)} of {size} bytes"
            data += chunk
        return data

    async def recv_frame(self) -> bytes:
        header = decode_frame_header(await self.recv_exactly(FRAME_HEADER_SIZE))
        assert (header.itrack, header.flags) == (0, 1)
        return await self.recv_exactly(header.size)

    async def closed_by_server(self) -> bool:
        """Read (and drop) frames until the server closes; False if it never does."""
        for _ in range(1000):
            if not await self.recv():
                return True
        return False

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionResetError:
            return


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SimulatorCA:
    # RSA key generation costs ~0.1 s per key: one CA for the whole module.
    return SimulatorCA.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def client_context(ca: SimulatorCA) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca.cert_path)


class Scenes:
    """A scene source that counts how often it is asked (once per rendered frame)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> CameraScene:
        self.calls += 1
        return SCENE


@pytest.fixture
async def camera(ca: SimulatorCA) -> AsyncIterator[tuple[CameraServer, int, Scenes]]:
    scenes = Scenes()
    server = CameraServer(
        ACCESS_CODE,
        scenes,
        server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"])),
        interval=0.05,
        auth_timeout=0.5,
    )
    port = await server.start("127.0.0.1", 0)
    yield server, port, scenes
    await server.close()


def test_render_jpeg_is_a_small_valid_jpeg() -> None:
    jpeg = render_jpeg(SCENE)
    assert jpeg[:4] == b"\xff\xd8\xff\xe0"  # SOI + JFIF APP0: bambulabs-api checks all four
    assert jpeg[-2:] == b"\xff\xd9"
    assert len(jpeg) < 64 * 1024
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        assert image.size == (640, 360)


def test_render_shows_progress() -> None:
    empty = render_jpeg(CameraScene("A", "P1S", "IDLE", 0, 0, SCENE.now))
    full = render_jpeg(CameraScene("A", "P1S", "FINISH", 100, 120, SCENE.now, total_layers=120))
    assert empty != full


async def test_auth_then_header_alone_then_jpeg(
    camera: tuple[CameraServer, int, Scenes], client_context: ssl.SSLContext
) -> None:
    _, port, _ = camera
    client = await RecordClient.connect(port, client_context)
    try:
        peer = client.tls.getpeercert()
        assert peer is not None
        assert dict(item for rdn in peer["subject"] for item in rdn)["commonName"] == SERIAL
        await client.send(encode_auth("bblp", ACCESS_CODE))
        first = await client.recv()
        assert len(first) == FRAME_HEADER_SIZE  # the header is its own TLS record
        header = decode_frame_header(first)
        jpeg = await client.recv_exactly(header.size)
        assert jpeg[:2] == b"\xff\xd8"
        assert jpeg[-2:] == b"\xff\xd9"
        with Image.open(io.BytesIO(jpeg)) as image:
            image.verify()
        # And the stream goes on, one frame per interval.
        assert (await client.recv_frame())[:2] == b"\xff\xd8"
    finally:
        await client.close()


@pytest.mark.parametrize(
    "packet",
    [
        encode_auth("bblp", "87654321"),
        encode_auth("admin", ACCESS_CODE),
        encode_auth("bblp", ""),
        b"\x00" * 80,
    ],
)
async def test_wrong_credentials_close_the_connection(
    camera: tuple[CameraServer, int, Scenes], client_context: ssl.SSLContext, packet: bytes
) -> None:
    server, port, scenes = camera
    client = await RecordClient.connect(port, client_context)
    try:
        await client.send(packet)
        assert await client.recv() == b""
    finally:
        await client.close()
    assert scenes.calls == 0
    assert server.viewers == 0


async def test_missing_auth_times_out(
    camera: tuple[CameraServer, int, Scenes], client_context: ssl.SSLContext
) -> None:
    _, port, _ = camera
    client = await RecordClient.connect(port, client_context)
    try:
        await client.send(encode_auth("bblp", ACCESS_CODE)[:40])
        assert await client.recv() == b""  # auth_timeout is 0.5 s
    finally:
        await client.close()


async def test_one_render_serves_every_viewer(
    ca: SimulatorCA, client_context: ssl.SSLContext
) -> None:
    scenes = Scenes()
    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"]))
    server = CameraServer(ACCESS_CODE, scenes, context, interval=60)
    port = await server.start("127.0.0.1", 0)
    clients = [await RecordClient.connect(port, client_context) for _ in range(3)]
    try:
        frames = []
        for client in clients:
            await client.send(encode_auth("bblp", ACCESS_CODE))
            frames.append(await client.recv_frame())
        assert frames[0] == frames[1] == frames[2]
        assert scenes.calls == 1
        assert server.viewers == 3
    finally:
        for client in clients:
            await client.close()
        await server.close()


async def test_rendering_stops_when_the_last_viewer_leaves(
    camera: tuple[CameraServer, int, Scenes], client_context: ssl.SSLContext
) -> None:
    server, port, scenes = camera
    client = await RecordClient.connect(port, client_context)
    try:
        await client.send(encode_auth("bblp", ACCESS_CODE))
        await client.recv_frame()
        await client.recv_frame()
    finally:
        await client.close()
    # why: give the server time (six 0.05 s intervals) to notice that the viewer has gone.
    await asyncio.sleep(0.3)
    assert server.viewers == 0
    calls = scenes.calls
    # why: six more intervals in which a render loop that failed to stop would call scene().
    await asyncio.sleep(0.3)
    assert scenes.calls == calls
    assert calls >= 2


async def test_close_drops_connected_viewers(
    ca: SimulatorCA, client_context: ssl.SSLContext
) -> None:
    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"]))
    server = CameraServer(ACCESS_CODE, lambda: SCENE, context, interval=0.05)
    port = await server.start("127.0.0.1", 0)
    viewer = await RecordClient.connect(port, client_context)
    waiting = await RecordClient.connect(port, client_context)  # handshake done, no auth yet
    try:
        await viewer.send(encode_auth("bblp", ACCESS_CODE))
        await viewer.recv_frame()
        await asyncio.wait_for(server.close(), TIMEOUT)
        assert await viewer.closed_by_server()
        assert await waiting.closed_by_server()
    finally:
        await viewer.close()
        await waiting.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
