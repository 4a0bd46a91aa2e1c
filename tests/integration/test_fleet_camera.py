"""The fleet's camera hub against the simulator's TLS-6000 camera and small scripted servers."""

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bambufarm.fleet.camera import CameraHub, CameraTarget
from bambufarm.fleet.errors import CameraUnavailable
from bambufarm.fleet.tls import PinStore, TlsMode, TlsPolicy
from bambufarm.protocol.camera import AUTH_SIZE, decode_auth, encode_frame_header
from bambufarm.protocol.models import model_by_name
from bambufarm.simulator.camera import CameraServer
from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.tls import SimulatorCA, server_context
from tests.support.sim import running_fleet

TIMEOUT = 10.0
SERIAL = "01P00A000000000"
CODE = "12345678"
P1S = model_by_name("P1S")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def target_of(manifest: Manifest, *, access_code: str | None = None) -> CameraTarget:
    printer = manifest.printers[0]
    assert printer.ports.camera is not None
    return CameraTarget(
        serial=printer.serial,
        host=printer.host,
        model=model_by_name(printer.model_name),
        access_code=printer.access_code if access_code is None else access_code,
        port=printer.ports.camera,
    )


def sim_camera(fleet: SimFleet, manifest: Manifest) -> CameraServer:
    camera = fleet.node(manifest.printers[0].serial).camera
    assert camera is not None
    return camera


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for a condition on the simulator side, which has nothing to await on."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)  # the simulator notices a closed viewer within a loop turn
    pytest.fail("condition never became true")


def is_jpeg(frame: bytes) -> bool:
    return frame.startswith(b"\xff\xd8") and frame.endswith(b"\xff\xd9")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[SimFleet, Manifest]]:
    async with running_fleet(tmp_path) as (fleet, manifest):
        yield fleet, manifest


def verify(manifest: Manifest) -> TlsPolicy:
    return TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))


async def test_two_watchers_share_one_upstream_that_closes_after_the_last_leaves(
    sim: tuple[SimFleet, Manifest],
) -> None:
    fleet, manifest = sim
    target = target_of(manifest)
    camera = sim_camera(fleet, manifest)
    async with CameraHub(verify(manifest), linger=0.3) as hub:
        first, second = hub.watch(target), hub.watch(target)
        async with contextlib.aclosing(first), contextlib.aclosing(second):
            frame_a = await asyncio.wait_for(anext(first), TIMEOUT)
            frame_b = await asyncio.wait_for(anext(second), TIMEOUT)
            assert is_jpeg(frame_a)
            assert is_jpeg(frame_b)
            assert hub.viewers(target.serial) == 2
            assert hub.upstreams == 1
            assert hub.connects == 1
            assert camera.viewers == 1  # one connection on the printer for both watchers
            # Both keep receiving the stream's next frames.
            assert is_jpeg(await asyncio.wait_for(anext(first), TIMEOUT))
            assert is_jpeg(await asyncio.wait_for(anext(second), TIMEOUT))
        assert hub.viewers(target.serial) == 0
        assert hub.upstreams == 1  # lingering: a reload would reuse it
        assert camera.viewers == 1
        await eventually(lambda: camera.viewers == 0)
        assert hub.upstreams == 0
        assert hub.connects == 1


async def test_a_watcher_returning_within_the_linger_reuses_the_upstream(
    sim: tuple[SimFleet, Manifest],
) -> None:
    fleet, manifest = sim
    target = target_of(manifest)
    async with CameraHub(verify(manifest), linger=30) as hub:
        for _ in range(2):
            async with contextlib.aclosing(hub.watch(target)) as frames:
                assert is_jpeg(await asyncio.wait_for(anext(frames), TIMEOUT))
        assert hub.connects == 1
        assert sim_camera(fleet, manifest).viewers == 1
    # Closing the hub closes the lingering stream at once.
    await eventually(lambda: sim_camera(fleet, manifest).viewers == 0)


async def test_wrong_access_code_is_reported_to_every_watcher(
    sim: tuple[SimFleet, Manifest],
) -> None:
    fleet, manifest = sim
    target = target_of(manifest, access_code="wrong-code")
    async with CameraHub(verify(manifest)) as hub:
        watchers = [hub.watch(target), hub.watch(target)]
        results = await asyncio.wait_for(
            asyncio.gather(*(anext(w) for w in watchers), return_exceptions=True), TIMEOUT
        )
        for watcher in watchers:
            await watcher.aclose()
        assert hub.connects == 1
        assert hub.upstreams == 0
    for result in results:
        assert isinstance(result, CameraUnavailable)
        assert result.serial == target.serial
        assert "closed the stream right after login; check the access code" in str(result)
        assert "wrong-code" not in str(result)
    assert sim_camera(fleet, manifest).viewers == 0


async def test_the_printer_closing_the_stream_reaches_the_watchers(
    sim: tuple[SimFleet, Manifest],
) -> None:
    fleet, manifest = sim
    target = target_of(manifest)
    async with CameraHub(verify(manifest)) as hub:
        async with contextlib.aclosing(hub.watch(target)) as frames:
            assert is_jpeg(await asyncio.wait_for(anext(frames), TIMEOUT))
            await sim_camera(fleet, manifest).close()
            with pytest.raises(CameraUnavailable, match=f"camera of {target.serial} at"):
                await asyncio.wait_for(anext(frames), TIMEOUT)
        assert hub.upstreams == 0
        # The next watcher tries afresh, and hears that nobody listens any more.
        async with contextlib.aclosing(hub.watch(target)) as frames:
            with pytest.raises(CameraUnavailable, match="cannot connect"):
                await asyncio.wait_for(anext(frames), TIMEOUT)
        assert hub.connects == 2


async def test_rtsps_models_are_refused_without_connecting() -> None:
    target = CameraTarget(
        serial="00M00A000000000", host="127.0.0.1", model=model_by_name("X1C"), access_code=CODE
    )
    async with CameraHub(TlsPolicy(TlsMode.INSECURE)) as hub:
        with pytest.raises(CameraUnavailable, match=r"camera: unsupported for X1/H2 \(RTSPS\) yet"):
            await anext(hub.watch(target))
        assert hub.connects == 0


async def test_breaking_out_of_a_plain_async_for_releases_the_stream(
    sim: tuple[SimFleet, Manifest],
) -> None:
    fleet, manifest = sim
    target = target_of(manifest)
    async with CameraHub(verify(manifest), linger=0) as hub:
        async for frame in hub.watch(target):
            assert is_jpeg(frame)
            break
        # The event loop finalises the abandoned generator on its next turns.
        await eventually(lambda: hub.viewers(target.serial) == 0)
        await eventually(lambda: sim_camera(fleet, manifest).viewers == 0)
        assert hub.upstreams == 0


def test_the_access_code_stays_out_of_the_repr() -> None:
    target = CameraTarget(serial=SERIAL, host="127.0.0.1", model=P1S, access_code=CODE)
    assert CODE not in repr(target)


# Scripted camera servers: fast frames, broken frames, silence.


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SimulatorCA:
    # RSA key generation costs ~0.1 s per key: one CA for the whole module.
    return SimulatorCA.load_or_create(tmp_path_factory.mktemp("ca"))


@contextlib.asynccontextmanager
async def scripted(ca: SimulatorCA, handler: Handler) -> AsyncIterator[CameraTarget]:
    """A TLS camera on loopback that checks the auth packet and then runs `handler`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            assert decode_auth(await reader.readexactly(AUTH_SIZE)) == ("bblp", CODE)
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"]))
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield CameraTarget(serial=SERIAL, host="127.0.0.1", model=P1S, access_code=CODE, port=port)
    finally:
        server.close()
        await server.wait_closed()


def numbered(n: int) -> bytes:
    jpeg = b"\xff\xd8" + str(n).encode() + b"\xff\xd9"
    return encode_frame_header(len(jpeg)) + jpeg


async def test_a_slow_watcher_skips_to_the_latest_frame(ca: SimulatorCA) -> None:
    more = asyncio.Event()

    async def stream(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(numbered(1))
        await more.wait()
        for n in range(2, 51):
            writer.write(numbered(n))
            await writer.drain()
        await asyncio.sleep(TIMEOUT)  # hold the stream open until the hub closes it

    async with (
        scripted(ca, stream) as target,
        CameraHub(TlsPolicy(TlsMode.VERIFY, ca_file=ca.cert_path)) as hub,
    ):
        fast, slow = hub.watch(target), hub.watch(target)
        async with contextlib.aclosing(fast), contextlib.aclosing(slow):
            assert await asyncio.wait_for(anext(fast), TIMEOUT) == b"\xff\xd81\xff\xd9"
            assert await asyncio.wait_for(anext(slow), TIMEOUT) == b"\xff\xd81\xff\xd9"
            more.set()
            seen = [b"\xff\xd81\xff\xd9"]
            while seen[-1] != b"\xff\xd850\xff\xd9":
                seen.append(await asyncio.wait_for(anext(fast), TIMEOUT))
            # The slow watcher read nothing while 49 frames went by: it gets the newest next,
            # not the ones it missed, and nothing was queued for it.
            assert await asyncio.wait_for(anext(slow), TIMEOUT) == b"\xff\xd850\xff\xd9"
            numbers = [int(frame[2:-2]) for frame in seen]
            assert numbers == sorted(set(numbers))  # never a frame twice or out of order


async def test_a_malformed_frame_header_is_reported(ca: SimulatorCA) -> None:
    async def broken(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(16))  # size 0
        await writer.drain()
        await asyncio.sleep(TIMEOUT)  # keep the connection until the hub gives up on it

    async with scripted(ca, broken) as target, CameraHub(TlsPolicy(TlsMode.INSECURE)) as hub:
        with pytest.raises(CameraUnavailable, match="sent a malformed frame"):
            await asyncio.wait_for(anext(hub.watch(target)), TIMEOUT)


async def test_silence_is_a_timeout(ca: SimulatorCA) -> None:
    async def silent(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(TIMEOUT)  # a printer that accepted the login and never sends

    async with (
        scripted(ca, silent) as target,
        CameraHub(TlsPolicy(TlsMode.INSECURE), frame_timeout=0.2) as hub,
    ):
        with pytest.raises(CameraUnavailable, match=r"no frame for 0\.2 s"):
            await asyncio.wait_for(anext(hub.watch(target)), TIMEOUT)


async def test_a_changed_camera_certificate_is_refused_in_tofu_mode(
    ca: SimulatorCA, tmp_path: Path
) -> None:
    async def stream(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(numbered(1))
        await writer.drain()
        await asyncio.sleep(TIMEOUT)  # hold the stream open until the hub closes it

    policy = TlsPolicy(TlsMode.TOFU, pin_store=tmp_path / "pins.json")
    pins = PinStore(tmp_path / "pins.json")
    async with scripted(ca, stream) as target:
        async with CameraHub(policy, pins) as hub:
            assert await asyncio.wait_for(anext(hub.watch(target)), TIMEOUT) == numbered(1)[16:]
        assert pins.get(f"{SERIAL}/camera") is not None
        assert pins.get(SERIAL) is None  # the MQTT pin is not the camera's business
        pins.pin(f"{SERIAL}/camera", "f" * 64)
        async with CameraHub(policy, pins) as hub:
            with pytest.raises(CameraUnavailable, match=r"camera: printer .* certificate changed"):
                await asyncio.wait_for(anext(hub.watch(target)), TIMEOUT)


async def test_closing_the_hub_ends_watchers_and_refuses_new_ones(ca: SimulatorCA) -> None:
    async def stream(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(numbered(1))
        await writer.drain()
        await asyncio.sleep(TIMEOUT)  # hold the stream open until the hub closes it

    async with scripted(ca, stream) as target:
        hub = CameraHub(TlsPolicy(TlsMode.INSECURE))
        async with contextlib.aclosing(hub.watch(target)) as frames:
            await asyncio.wait_for(anext(frames), TIMEOUT)
            await hub.close()
            with pytest.raises(CameraUnavailable, match="shutting down"):
                await asyncio.wait_for(anext(frames), TIMEOUT)
        assert hub.upstreams == 0
        with pytest.raises(CameraUnavailable, match="shutting down"):
            await anext(hub.watch(target))


async def test_nobody_listening_is_reported() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # reserve a port, then free it: nothing listens
        port = placeholder.getsockname()[1]
    target = CameraTarget(serial=SERIAL, host="127.0.0.1", model=P1S, access_code=CODE, port=port)
    async with CameraHub(TlsPolicy(TlsMode.INSECURE)) as hub:
        with pytest.raises(CameraUnavailable, match=f"127.0.0.1:{port}: cannot connect"):
            await asyncio.wait_for(anext(hub.watch(target)), TIMEOUT)
