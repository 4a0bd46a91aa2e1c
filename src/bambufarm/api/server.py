"""`HttpServer`: uvicorn serving an ASGI app on one socket, in the caller's event loop.

The socket is bound and listening before uvicorn starts, so the port is known at once (port
0 picks a free one: tests, the demo) and connections that arrive early wait in the backlog.
Signals stay with the caller: `bambufarm serve` turns SIGINT/SIGTERM into `stop()`, a test
simply calls it, and uvicorn never re-raises a signal after its own shutdown (which would
kill the process before the services are closed).

Shutdown is graceful: stop accepting, let running requests finish for up to
`graceful_timeout_s`, then cancel what is left.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

# Requests finish within a second or two; uploads to the server get longer before they
# are cut off at shutdown.
GRACEFUL_TIMEOUT_S: Final = 10.0
# The kernel caps this at net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG: Final = 2048


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its private key, for HTTPS."""

    cert: Path
    key: Path


class _CallerOwnsSignals(uvicorn.Server):
    """uvicorn.Server that leaves signal handling to the program that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the caller decides when to stop."""
        yield


class HttpServer:
    """Serves an ASGI app on host:port (TLS optional) until `stop()`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        graceful_timeout_s: float = GRACEFUL_TIMEOUT_S,
    ) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            lifespan="off",
            # Logging is configured by main(); uvicorn must not replace it with its own.
            log_config=None,
            timeout_graceful_shutdown=max(1, round(graceful_timeout_s)),
            # Requests carry no secrets in URLs, but one line per request drowns the log of
            # a farm polled by dashboards; the metrics count requests instead.
            access_log=False,
            server_header=False,
        )
        self._tls = tls is not None
        self._server = _CallerOwnsSignals(self._config)
        self._socket: socket.socket | None = None
        self._port = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after `start()`; still known after `stop()`)."""
        if not self._port:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:8888` (after `start()`)."""
        host = self._config.host
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{self.port}"

    async def start(self) -> None:
        """Bind, listen and start serving; `OSError` if the address cannot be bound."""
        if self._task is not None:
            raise RuntimeError("the server is already started")
        # TLS files and the app are loaded here, so a bad certificate fails the start.
        self._config.load()
        self._socket = bind_listener(self._config.host, self._config.port)
        self._port = int(self._socket.getsockname()[1])
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name=f"http-server-{self.port}"
        )
        logger.info("API listening on %s", self.url)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set or the server ends by itself (then `stop()` it)."""
        if self._task is None:
            raise RuntimeError("the server is not started")
        waiter = asyncio.create_task(stop.wait(), name="http-server-stop")
        try:
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    async def stop(self) -> None:
        """Stop accepting, finish running requests (bounded), close the socket."""
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        try:
            await task
        finally:
            if self._socket is not None:
                self._socket.close()
            logger.info("API stopped")

    def force_stop(self) -> None:
        """Stop waiting for running requests (a second Ctrl-C)."""
        self._server.force_exit = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def bind_listener(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to host:port and listening (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and with Nagle on every response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # A restart must not wait out TIME_WAIT connections of the previous process.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
