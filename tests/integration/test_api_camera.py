"""`/api/v1/printers/{serial}/camera` over real sockets, from a simulated P1S's TLS-6000 camera.

Frames must arrive as MJPEG parts, a viewer who hangs up must release the printer's upstream
stream (the hub keeps none open for nobody), an RTSPS printer must say why it cannot be shown,
and nobody without credentials sees anything.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bambufarm.api.camera_routes import BOUNDARY
from bambufarm.auth.roles import Role
from bambufarm.fleet.camera import DEFAULT_LINGER
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]

PROBLEM = "urn:bambufarm:problem:"


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """A P1S (JPEG camera on its own port) and an X1C (RTSPS), added and online."""
    async with running_farm_api(database_url, tmp_path) as running:
        client = running.admin()
        for printer in running.manifest.printers:
            body = running.body(printer, camera_port=printer.ports.camera)
            response = await client.post("/api/v1/printers", json=body)
            assert response.status_code == 201, response.text
        await running.until_online()
        yield running


def is_jpeg(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")


async def read_part(reader: asyncio.StreamReader) -> bytes:
    """One part of the multipart stream: its JPEG body, by its Content-Length."""
    assert (await reader.readline()).strip() == f"--{BOUNDARY}".encode()
    headers: dict[str, str] = {}
    while line := (await reader.readline()).strip():
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = await reader.readexactly(int(headers["content-length"]))
    assert await reader.readexactly(2) == b"\r\n"
    return body


async def test_frames_stream_as_mjpeg_and_a_viewer_who_leaves_frees_the_upstream(
    farm_api: FarmApi,
) -> None:
    serial = farm_api.printer(0).serial
    hub = farm_api.services.camera
    url = urlsplit(farm_api.api.url)
    assert url.hostname is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(
            (
                f"GET /api/v1/printers/{serial}/camera HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {farm_api.admin_key}\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(30):
            status = await reader.readline()
            assert status.split()[1] == b"200", status
            headers = {}
            while line := (await reader.readline()).strip():
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            assert headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            assert headers["cache-control"] == "no-store"
            # Chunked transfer: take the chunks' bodies apart from their size lines.
            assert headers["transfer-encoding"] == "chunked"
            stream = asyncio.StreamReader()
            frames: list[bytes] = []
            while len(frames) < 2:
                size = int((await reader.readline()).strip(), 16)
                stream.feed_data(await reader.readexactly(size))
                await reader.readexactly(2)
                with contextlib.suppress(TimeoutError):
                    # A whole part may already be buffered; if not, read the next chunk.
                    async with asyncio.timeout(0.05):
                        frames.append(await read_part(stream))
        assert all(is_jpeg(frame) for frame in frames)
        assert hub.viewers(serial) == 1
        assert hub.upstreams == 1
    finally:
        writer.close()
        await writer.wait_closed()
    await farm_api.until(lambda: hub.viewers(serial) == 0, "the viewer to be let go")
    # The upstream lingers a few seconds for a page reload, then closes.
    await farm_api.until(lambda: hub.upstreams == 0, "no upstream", within=DEFAULT_LINGER + 10)


async def test_a_snapshot_is_one_jpeg_and_viewers_may_watch(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    viewer = await farm_api.api.user_session("vera", Role.VIEWER)
    response = await viewer.client.get(f"/api/v1/printers/{serial}/camera/snapshot")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert is_jpeg(response.content)
    assert farm_api.services.camera.viewers(serial) == 0


async def test_an_rtsps_printer_says_why_it_cannot_be_shown(farm_api: FarmApi) -> None:
    serial = farm_api.printer(1).serial
    for path in ("camera", "camera/snapshot"):
        response = await farm_api.admin().get(f"/api/v1/printers/{serial}/{path}")
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["type"] == PROBLEM + "camera-unavailable"
        assert "RTSPS" in problem["detail"]
    assert farm_api.services.camera.upstreams == 0


async def test_a_camera_that_does_not_answer_is_a_409_that_says_so(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    edit = await farm_api.admin().patch(
        f"/api/v1/printers/{printer.serial}", json={"camera_port": 1}
    )
    assert edit.status_code == 200, edit.text
    response = await farm_api.admin().get(f"/api/v1/printers/{printer.serial}/camera/snapshot")
    assert response.status_code == 409
    assert "cannot connect" in response.json()["detail"]


async def test_the_camera_needs_credentials(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    stranger = farm_api.api.client()
    for path in ("camera", "camera/snapshot"):
        response = await stranger.get(f"/api/v1/printers/{serial}/{path}")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    missing = await farm_api.admin().get("/api/v1/printers/01P00A999999999/camera")
    assert missing.status_code == 404
    assert farm_api.services.camera.connects == 0
