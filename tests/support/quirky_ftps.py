"""A tiny implicit-FTPS server that ends uploads the way some printer firmware does.

protocol.md §2.1: A1 firmware may never send `226` after an upload whose data connection was
closed with close_notify, and P2S firmware may answer `426` although the file is complete. The
simulator's server always answers properly, so the client's fallback (a bounded wait, then
`SIZE` on a fresh session) is tested against this one. It reuses the simulator's passive
listener and data channel, and knows just the commands the client sends for an upload.
"""

import asyncio
import contextlib
import ssl
from enum import StrEnum
from pathlib import Path

from bambufarm.simulator.ftps_data import DataChannel, PassiveListener

ACCESS_CODE = "12345678"


class UploadEnding(StrEnum):
    """What the server does once an upload's data connection has ended."""

    SILENT = "silent"  # no reply at all (A1)
    REPLY_426 = "426"  # 426 although every byte was stored (P2S)
    TRUNCATE_SILENT = "truncate-silent"  # keep only half of the bytes, then no reply


class QuirkyFtps:
    """Implicit FTPS over a directory; uploads end as `ending` says."""

    def __init__(self, root: Path, context: ssl.SSLContext, ending: UploadEnding) -> None:
        self.root = root
        self.context = context
        self.ending = ending
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str) -> int:
        """Listen on an ephemeral port of `host` and return it."""
        self._server = await asyncio.start_server(self._serve, host, 0, ssl=self.context)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and end every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        session = _Session(self, reader, writer)
        try:
            # A client that went away leaves nothing to answer.
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await session.run()
        except asyncio.CancelledError:
            # close() ends sessions; Python 3.11's stream callback logs a cancelled task.
            return
        finally:
            self._sessions.discard(task)
            session.listener_close()
            writer.transport.abort()


class _Session:
    def __init__(
        self, server: QuirkyFtps, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")[0]
        self.local = writer.get_extra_info("sockname")[0]
        self.listener: PassiveListener | None = None
        self.rename_from: Path | None = None

    def listener_close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    async def reply(self, text: str) -> None:
        self.writer.write(f"{text}\r\n".encode())
        await self.writer.drain()

    def path(self, name: str) -> Path:
        return self.server.root / name.lstrip("/")

    async def run(self) -> None:
        await self.reply("220 (vsFTPd 3.0.5)")
        while line := await self.reader.readline():
            verb, _, arg = line.decode().rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                await self.reply("221 Goodbye.")
                return
            await self.command(verb, arg)

    async def command(self, verb: str, arg: str) -> None:
        simple = {
            "USER": "331 Please specify the password.",
            "PBSZ": "200 PBSZ set to 0.",
            "PROT": "200 PROT now Private.",
            "TYPE": "200 Switching to Binary mode.",
        }
        if verb in simple:
            await self.reply(simple[verb])
        elif verb == "PASS":
            ok = arg == ACCESS_CODE
            await self.reply("230 Login successful." if ok else "530 Login incorrect.")
        elif verb == "PASV":
            self.listener_close()
            self.listener = PassiveListener.open(self.local)
            port = self.listener.port
            numbers = self.local.replace(".", ",")
            await self.reply(f"227 Entering Passive Mode ({numbers},{port >> 8},{port & 255}).")
        elif verb == "STOR":
            await self.store(self.path(arg))
        elif verb == "SIZE":
            target = self.path(arg)
            found = target.is_file()
            await self.reply(f"213 {target.stat().st_size}" if found else "550 No such file.")
        elif verb == "RNFR":
            self.rename_from = self.path(arg)
            await self.reply("350 Ready for RNTO.")
        elif verb == "RNTO" and self.rename_from is not None:
            self.rename_from.replace(self.path(arg))
            await self.reply("250 Rename successful.")
        elif verb == "DELE" and self.path(arg).is_file():
            self.path(arg).unlink()
            await self.reply("250 Delete operation successful.")
        else:
            await self.reply("550 Not here.")

    async def store(self, target: Path) -> None:
        listener, self.listener = self.listener, None
        assert listener is not None, "STOR without PASV"
        try:
            sock = await listener.accept(self.peer)
        finally:
            listener.close()
        await self.reply("150 Ok to send data.")
        channel = await DataChannel.open(sock, self.server.context)
        data = bytearray()
        while chunk := await channel.read(65536):
            data += chunk
        await channel.close()
        ending = self.server.ending
        if ending is UploadEnding.TRUNCATE_SILENT:
            del data[len(data) // 2 :]
        await asyncio.to_thread(target.write_bytes, bytes(data))
        if ending is UploadEnding.REPLY_426:
            await self.reply("426 Failure writing network stream.")
