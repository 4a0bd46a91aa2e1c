"""A loopback TCP relay that can be switched on late: a database that is "down" until the test
says otherwise. While it is not listening, connecting is refused, as with a stopped server."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's pick, released at once)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relay(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """Listen on 127.0.0.1:`port` and forward each connection to `target` until the block ends."""
    pipes: set[asyncio.Task[None]] = set()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        for task in (
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()
