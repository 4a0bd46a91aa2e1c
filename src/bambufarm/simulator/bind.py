"""The bind/detect responder on TCP 3000 (plain) and 3002 (TLS) (protocol.md §5.4).

A slicer adding a printer by IP sends `login.detect`; the printer answers with its identity and
closes. A cloud `login` is refused with a `login_report` FAILURE: the simulator has no cloud.
One class serves both ports; only the TLS context differs.
"""

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from bambufarm.protocol.bind import DetectReply, FrameDecoder, login_failure
from bambufarm.protocol.errors import BindFrameError

logger = logging.getLogger(__name__)

# A detect exchange takes milliseconds; 10 s bounds a connection that never sends a frame.
DEFAULT_TIMEOUT = 10.0
_READ_SIZE = 4096
# A TLS close waits for the peer's close_notify; do not let a silent peer hold it 30 s (default).
_SSL_SHUTDOWN_TIMEOUT = 5.0


class BindServer:
    """Answers detect with `reply()` and refuses login, then closes each connection."""

    def __init__(
        self,
        reply: Callable[[], DetectReply],
        ssl_context: ssl.SSLContext | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """`ssl_context` None serves port 3000 (plain), a context serves 3002 (TLS)."""
        self._reply = reply
        self._ssl = ssl_context
        self._timeout = timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0 = ephemeral) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("bind server already started")
        tls: dict[str, Any] = {}
        if self._ssl is not None:
            tls = {"ssl": self._ssl, "ssl_shutdown_timeout": _SSL_SHUTDOWN_TIMEOUT}
        self._server = await asyncio.start_server(self._serve, host, port, **tls)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        tasks = list(self._connections.values())
        if tasks:
            await asyncio.wait(tasks)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[writer] = task
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self._timeout):
                await self._converse(reader, writer)
        except BindFrameError as err:
            logger.info("closing bind connection from %s: %s", peer, err)
        except TimeoutError:
            logger.debug("bind connection from %s idle for %.1f s", peer, self._timeout)
        except (ConnectionError, ssl.SSLError) as err:
            logger.debug("bind connection from %s failed: %s", peer, err)
        except Exception:  # task boundary: one bad connection must not affect the others
            logger.exception("bind connection from %s crashed", peer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self._connections.pop(writer, None)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(_READ_SIZE):
            messages = decoder.feed(data)
            # A printer closes on anything that is not a frame; the decoder would resynchronise.
            if decoder.discarded:
                raise BindFrameError(f"{decoder.discarded} bytes outside any bind frame")
            if messages:
                writer.write(self._answer(messages[0]))
                await writer.drain()
                return  # one request, one reply, then close (firmware and BD do the same)

    def _answer(self, message: Mapping[str, Any]) -> bytes:
        login = message.get("login")
        if not isinstance(login, Mapping):
            raise BindFrameError("bind message has no login object")
        command = login.get("command")
        if command == "detect":
            return self._reply().to_frame()
        if command == "login":
            return login_failure(_sequence(login.get("sequence_id")), "not supported")
        raise BindFrameError(f"unsupported bind command {str(command)[:40]!r}")


def _sequence(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Slicers send the id as a decimal string ("20001"); 18 digits still fit the JSON int64.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return 0
