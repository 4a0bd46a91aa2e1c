"""HttpServer: uvicorn in our loop on a socket we bind — free ports, TCP_NODELAY, graceful and
bounded shutdown, clear start failures."""

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from bambufarm.api.server import HttpServer, TlsFiles, bind_listener


def _slow_app(entered: asyncio.Event, release: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        entered.set()
        await release.wait()
        return {"ok": True}

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_accepted_connections_get_tcp_nodelay() -> None:
    # Without it every response of the API waited ~40 ms for the client's delayed ACK.
    listener = bind_listener("127.0.0.1", 0)
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        await accepted.put(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(on_connect, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        nodelay = await asyncio.wait_for(accepted.get(), timeout=10)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert nodelay != 0


async def test_port_zero_picks_a_free_port_and_stop_closes_it() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    server = HttpServer(_slow_app(entered, release))
    await server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/fast")).json() == {"ok": True}
    finally:
        await server.stop()
    async with httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/fast")


async def test_stop_lets_a_running_request_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    server = HttpServer(_slow_app(entered, release))
    await server.start()
    async with httpx.AsyncClient(base_url=server.url) as client:
        request = asyncio.create_task(client.get("/slow"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        stopping = asyncio.create_task(server.stop())
        # Let the server begin its shutdown while the request is still inside the app.
        await asyncio.sleep(0.2)
        assert not stopping.done()
        release.set()
        response = await asyncio.wait_for(request, timeout=10)
        await asyncio.wait_for(stopping, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_stop_does_not_wait_forever_for_a_stuck_request() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    server = HttpServer(_slow_app(entered, release), graceful_timeout_s=1)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url) as client:
        request = asyncio.create_task(client.get("/slow"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        # The request never finishes by itself; the stop cancels it after the grace time,
        # and uvicorn answers the cancelled request with a bare 500.
        await asyncio.wait_for(server.stop(), timeout=15)
        response = await asyncio.wait_for(request, timeout=10)
    assert response.status_code == 500
    assert not release.is_set()


async def test_run_until_returns_when_asked_to_stop() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    server = HttpServer(_slow_app(entered, release))
    await server.start()
    stop = asyncio.Event()
    try:
        running = asyncio.create_task(server.run_until(stop))
        await asyncio.sleep(0)
        assert not running.done()
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    finally:
        await server.stop()


async def test_a_taken_port_fails_the_start() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    async with HttpServer(_slow_app(entered, release)) as first:
        second = HttpServer(_slow_app(entered, release), port=first.port)
        with pytest.raises(OSError, match="in use"):
            await second.start()
        # The first one is unharmed.
        async with httpx.AsyncClient(base_url=first.url) as client:
            assert (await client.get("/fast")).status_code == 200


async def test_missing_tls_files_fail_the_start_before_binding(tmp_path: Path) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    tls = TlsFiles(tmp_path / "missing-cert.pem", tmp_path / "missing-key.pem")
    server = HttpServer(_slow_app(entered, release), tls=tls)
    with pytest.raises(OSError, match="No such file"):
        await server.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
