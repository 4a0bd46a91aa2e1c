"""The FTPS client against the simulator's printer FTPS server and against a printer-like vsftpd.

Both demand what real X1/P1 printers demand: implicit TLS 1.2 and data connections that resume
the control connection's TLS session (the simulated P1S and vsftpd's `require_ssl_reuse=YES`).
"""

import asyncio
import ftplib
import io
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bambufarm.protocol.ftps import (
    FtpsAuthError,
    FtpsClient,
    FtpsError,
    FtpsNotFoundError,
    FtpsStorageFullError,
    FtpsTransferError,
    UploadResult,
    ftps_executor,
    shutdown_executor,
)
from bambufarm.simulator.ftps_server import FtpsServer
from bambufarm.simulator.storage import PrinterStorage
from bambufarm.simulator.tls import SimulatorCA, server_context
from tests.support.quirky_ftps import ACCESS_CODE as QUIRKY_CODE
from tests.support.quirky_ftps import QuirkyFtps, UploadEnding
from tests.support.sim import running_fleet
from tests.support.vsftpd import Vsftpd, running_vsftpd

# 1.5 MB: several 64 KiB chunks and more than the socket buffers hold.
PAYLOAD = os.urandom(1_500_000)
# Generous for a loaded 2-core machine; bounded so a hang fails the test.
TIMEOUT = 20.0


def tls12_context(ca_file: str | None = None, *, cadata: str | None = None) -> ssl.SSLContext:
    """A client context capped at TLS 1.2 that verifies the given CA (IP SAN, like printers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=ca_file, cadata=cadata)
    return context


def files_in(directory: Path) -> list[str]:
    """Every file name in `directory`, hidden ones included (an in-flight upload is hidden)."""
    return sorted(p.name for p in directory.iterdir() if p.is_file())


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ftps_executor(4)
    yield pool
    await shutdown_executor(pool)


@dataclass
class SimPrinter:
    serial: str
    host: str
    port: int
    access_code: str
    ca_file: str
    sd: Path

    def client(self, executor: ThreadPoolExecutor, **options: object) -> FtpsClient:
        code = str(options.pop("access_code", self.access_code))
        context = tls12_context(self.ca_file)
        return FtpsClient(
            self.host, self.port, code, context, executor=executor, timeout=TIMEOUT, **options
        )  # type: ignore[arg-type]


@pytest.fixture
async def p1s(tmp_path: Path) -> AsyncIterator[SimPrinter]:
    """A simulated P1S: its FTPS server requires data-channel session reuse."""
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)
        assert node.ftps.require_session_reuse
        yield SimPrinter(
            printer.serial,
            printer.host,
            printer.ports.ftps,
            printer.access_code,
            manifest.ca_cert,
            node.storage.root,
        )


# --- the simulator ------------------------------------------------------------------------------


async def test_round_trip_on_simulated_p1s(
    p1s: SimPrinter, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    client = p1s.client(executor)
    seen: list[tuple[int, int]] = []

    def progress(sent: int, total: int) -> None:
        asyncio.get_running_loop()  # raises unless called on the event loop thread
        seen.append((sent, total))

    result = await client.upload(PAYLOAD, "plate.gcode.3mf", progress=progress)

    assert isinstance(result, UploadResult)
    assert result.bytes == len(PAYLOAD)
    assert result.seconds > 0
    assert result.throughput == pytest.approx(len(PAYLOAD) / result.seconds)
    assert (p1s.sd / "plate.gcode.3mf").read_bytes() == PAYLOAD
    assert files_in(p1s.sd) == ["plate.gcode.3mf"]  # no temporary file left behind
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [sent for sent, _ in seen] == sorted(sent for sent, _ in seen)
    assert len(seen) > 1

    listing = {entry.name: entry for entry in await client.list("/")}
    assert listing["plate.gcode.3mf"].size == len(PAYLOAD)
    assert not listing["plate.gcode.3mf"].is_dir
    assert listing["plate.gcode.3mf"].modified is not None
    assert {"cache", "model", "timelapse"} <= {n for n, e in listing.items() if e.is_dir}
    assert await client.size("plate.gcode.3mf") == len(PAYLOAD)

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    local = downloads / "back.3mf"
    assert await client.download("/plate.gcode.3mf", local) == len(PAYLOAD)
    assert local.read_bytes() == PAYLOAD
    assert files_in(downloads) == ["back.3mf"]  # the temporary download file is gone

    await client.delete("plate.gcode.3mf")
    assert "plate.gcode.3mf" not in {entry.name for entry in await client.list()}
    assert not (p1s.sd / "plate.gcode.3mf").exists()


async def test_upload_from_a_path_into_a_directory_replaces_the_old_file(
    p1s: SimPrinter, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    client = p1s.client(executor)
    (p1s.sd / "cache" / "job.3mf").write_bytes(b"old")
    source = tmp_path / "job.3mf"
    source.write_bytes(PAYLOAD[:200_000])

    result = await client.upload(source, "/cache/job.3mf")

    assert result.bytes == 200_000
    assert (p1s.sd / "cache" / "job.3mf").read_bytes() == PAYLOAD[:200_000]
    assert files_in(p1s.sd / "cache") == ["job.3mf"]
    assert [e.name for e in await client.list("/cache")] == ["job.3mf"]


async def test_wrong_access_code_is_an_auth_error_that_does_not_repeat_the_code(
    p1s: SimPrinter, executor: ThreadPoolExecutor
) -> None:
    client = p1s.client(executor, access_code="87654321")
    with pytest.raises(FtpsAuthError, match="530") as caught:
        await client.upload(b"data", "x.bin")
    assert "87654321" not in str(caught.value)
    assert "access code" in str(caught.value)
    with pytest.raises(FtpsAuthError):
        await client.list()
    assert files_in(p1s.sd) == []


class NotThePrinterError(Exception):
    pass


async def test_verify_peer_sees_the_certificate_and_can_refuse_the_printer(
    p1s: SimPrinter, executor: ThreadPoolExecutor
) -> None:
    seen: list[str] = []

    def record(sock: ssl.SSLSocket) -> None:
        subject = dict(pair[0] for pair in (sock.getpeercert() or {})["subject"])
        seen.append(str(subject["commonName"]))

    await p1s.client(executor, verify_peer=record).upload(b"ok", "ok.bin")
    assert seen == [p1s.serial]  # one session, and printers present CN=<serial>

    def refuse(sock: ssl.SSLSocket) -> None:
        raise NotThePrinterError("certificate CN is not the serial")

    with pytest.raises(NotThePrinterError):
        await p1s.client(executor, verify_peer=refuse).upload(b"no", "no.bin")
    assert files_in(p1s.sd) == ["ok.bin"]


async def test_missing_files_are_not_found(p1s: SimPrinter, executor: ThreadPoolExecutor) -> None:
    client = p1s.client(executor)
    with pytest.raises(FtpsNotFoundError, match="550"):
        await client.size("nothing.3mf")
    with pytest.raises(FtpsNotFoundError, match="550"):
        await client.delete("nothing.3mf")
    with pytest.raises(FtpsNotFoundError, match="550"):
        await client.download("nothing.3mf", p1s.sd.parent / "x")


async def test_interrupted_upload_leaves_no_file_under_the_final_name(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    overrides = {0: {"quirks": {"ftps_fail_after_bytes": 100_000}}}
    async with running_fleet(tmp_path, models=("P1S",), overrides=overrides) as (fleet, manifest):
        printer = manifest.printers[0]
        sd = fleet.node(printer.serial).storage.root
        client = FtpsClient(
            printer.host,
            printer.ports.ftps,
            printer.access_code,
            tls12_context(manifest.ca_cert),
            executor=executor,
            timeout=TIMEOUT,
        )
        with pytest.raises(FtpsTransferError, match="426") as caught:
            await client.upload(PAYLOAD, "plate.gcode.3mf")
        assert "no partial file" in str(caught.value)
        assert files_in(sd) == []
        # The printer is still usable afterwards.
        await client.upload(b"small", "small.bin")
        assert files_in(sd) == ["small.bin"]


async def test_storage_full_is_552_and_leaves_nothing(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    ca = SimulatorCA.load_or_create(tmp_path / "ca")
    storage = PrinterStorage(tmp_path / "sd", capacity_bytes=300_000)
    server = FtpsServer(
        storage, "12345678", server_context(ca.issue_leaf("01P00A000000001", ["127.0.0.1"]))
    )
    port = await server.start("127.0.0.1", 0)
    try:
        client = FtpsClient(
            "127.0.0.1",
            port,
            "12345678",
            tls12_context(str(ca.cert_path)),
            executor=executor,
            timeout=TIMEOUT,
        )
        with pytest.raises(FtpsStorageFullError, match="552") as caught:
            await client.upload(PAYLOAD, "big.gcode.3mf")
        assert "delete old files" in str(caught.value)
        assert files_in(storage.root) == []
        assert await client.list() == [e for e in await client.list() if e.is_dir]
    finally:
        await server.close()


async def test_cancelled_upload_resets_the_transfer_and_leaves_nothing(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    # 24 MB at 4 MB/s: more than loopback socket buffers hold (~10 MB), so the client is still
    # sending when it is cancelled, and the reset (not an end of file) makes the printer drop it.
    payload = os.urandom(24_000_000)
    overrides = {0: {"quirks": {"ftps_write_rate": 4_000_000}}}
    async with running_fleet(tmp_path, models=("P1S",), overrides=overrides) as (fleet, manifest):
        printer = manifest.printers[0]
        sd = fleet.node(printer.serial).storage.root
        client = FtpsClient(
            printer.host,
            printer.ports.ftps,
            printer.access_code,
            tls12_context(manifest.ca_cert),
            executor=executor,
            timeout=TIMEOUT,
        )
        started = asyncio.Event()

        def progress(sent: int, total: int) -> None:
            if sent >= 2_000_000:
                started.set()

        task = asyncio.create_task(client.upload(payload, "slow.gcode.3mf", progress=progress))
        async with asyncio.timeout(TIMEOUT):
            await started.wait()
        task.cancel()
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(asyncio.CancelledError):
                await task
        # The worker heard the printer's verdict before it returned: nothing is left.
        assert files_in(sd) == []
        # The executor's worker is free again.
        async with asyncio.timeout(TIMEOUT):
            await client.upload(b"next", "next.bin")
        assert files_in(sd) == ["next.bin"]


async def test_bad_arguments_are_refused_before_connecting(executor: ThreadPoolExecutor) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # allows TLS 1.3
    with pytest.raises(ValueError, match=r"TLS 1\.2"):
        FtpsClient("127.0.0.1", 990, "12345678", context, executor=executor)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = FtpsClient("127.0.0.1", 1, "12345678", context, executor=executor)
    for name in ("", "a\r\nDELE b", "dir/", "x\x00y"):
        with pytest.raises(FtpsError, match="remote name"):
            await client.upload(b"x", name)
    with pytest.raises(FtpsError, match="CR, LF"):
        await client.list("/\r\nDELE x")
    with pytest.raises(FtpsError, match="cannot read the file to upload"):
        await client.upload(Path("/nonexistent/plate.3mf"), "plate.3mf")
    assert "12345678" not in repr(client)


async def test_unreachable_printer_says_so(executor: ThreadPoolExecutor) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        client = FtpsClient(
            "127.0.0.1", sock.getsockname()[1], "12345678", context, executor=executor
        )
        with pytest.raises(FtpsError, match="refused the connection"):
            await client.size("x")


# --- vsftpd configured like a printer ------------------------------------------------------------


@pytest.fixture
def vsftpd(tmp_path: Path) -> Iterator[Vsftpd]:
    with running_vsftpd(tmp_path) as server:
        yield server


def vsftpd_client(server: Vsftpd, executor: ThreadPoolExecutor, **options: object) -> FtpsClient:
    code = str(options.pop("access_code", server.access_code))
    return FtpsClient(
        server.host,
        server.port,
        code,
        server.client_context(),
        executor=executor,
        timeout=TIMEOUT,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.system
async def test_round_trip_on_vsftpd(
    vsftpd: Vsftpd, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    client = vsftpd_client(vsftpd, executor)
    seen: list[int] = []

    result = await client.upload(PAYLOAD, "plate.gcode.3mf", progress=lambda s, _: seen.append(s))

    assert result.bytes == len(PAYLOAD)
    assert seen[-1] == len(PAYLOAD)
    assert (vsftpd.root / "plate.gcode.3mf").read_bytes() == PAYLOAD
    assert files_in(vsftpd.root) == ["plate.gcode.3mf"]
    [entry] = await client.list()
    assert (entry.name, entry.size, entry.is_dir) == ("plate.gcode.3mf", len(PAYLOAD), False)
    assert await client.size("/plate.gcode.3mf") == len(PAYLOAD)
    local = tmp_path / "back.3mf"
    assert await client.download("plate.gcode.3mf", local) == len(PAYLOAD)
    assert local.read_bytes() == PAYLOAD
    await client.delete("plate.gcode.3mf")
    assert await client.list() == []
    assert files_in(vsftpd.root) == []
    # vsftpd announced an address nobody listens on: the client used the control host.
    assert "127,255,255,254" in vsftpd.log.read_text()


@pytest.mark.system
async def test_uploads_end_with_close_notify(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    """vsftpd with strict_ssl_read_eof answers 426 to an upload that ends without close_notify."""
    with running_vsftpd(tmp_path, strict_eof=True) as server:
        await vsftpd_client(server, executor).upload(PAYLOAD[:100_000], "a.bin")
        assert (server.root / "a.bin").read_bytes() == PAYLOAD[:100_000]

        def upload_without_close_notify() -> str:
            with NoReuseFtps(context=server.client_context(), timeout=TIMEOUT) as ftp:
                ftp.connect_implicit(server.host, server.port)
                ftp.login("bblp", server.access_code)
                ftp.prot_p()
                ftp.reuse_session = True
                with ftp.transfercmd("STOR b.bin") as conn:
                    conn.sendall(b"data")  # then a bare close: no unwrap()
                try:
                    return ftp.voidresp()
                except ftplib.Error as err:
                    return str(err)

        assert (await asyncio.to_thread(upload_without_close_notify)).startswith("426")


@pytest.mark.system
async def test_wrong_access_code_on_vsftpd(vsftpd: Vsftpd, executor: ThreadPoolExecutor) -> None:
    client = vsftpd_client(vsftpd, executor, access_code="00000000")
    with pytest.raises(FtpsAuthError, match="530"):
        await client.upload(b"x", "x.bin")
    assert files_in(vsftpd.root) == []


class NoReuseFtps(ftplib.FTP_TLS):
    """Implicit FTPS that opens data connections with a fresh TLS session, as some clients do."""

    reuse_session = False

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - TLS follows
        session = self.sock.session if self.reuse_session else None  # type: ignore[union-attr]
        return self.context.wrap_socket(conn, server_hostname=self.host, session=session), size

    def connect_implicit(self, host: str, port: int) -> None:
        self.host = host
        raw = socket.create_connection((host, port), TIMEOUT)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()


@pytest.mark.system
async def test_vsftpd_refuses_a_data_connection_without_session_reuse(vsftpd: Vsftpd) -> None:
    """Why the client must reuse the session: a real printer's vsFTPd answers 522 otherwise."""

    def store_without_reuse() -> str:
        with NoReuseFtps(context=vsftpd.client_context(), timeout=TIMEOUT) as ftp:
            ftp.connect_implicit(vsftpd.host, vsftpd.port)
            ftp.login("bblp", vsftpd.access_code)
            ftp.prot_p()
            try:
                ftp.storbinary("STOR plain.bin", io.BytesIO(b"data"))
            except ssl.SSLError:
                return ftp.getresp()  # the handshake was dropped; the reason follows
            except ftplib.error_perm as err:
                return str(err)
            return "stored"

    reply = await asyncio.to_thread(store_without_reuse)
    assert reply.startswith("522 "), reply
    assert "session reuse required" in reply
    # vsftpd created the target before the handshake failed: an empty file under the final name,
    # which is why the client uploads to a temporary name first.
    assert (vsftpd.root / "plain.bin").read_bytes() == b""


@pytest.mark.system
def test_vsftpd_speaks_tls_1_2_only(vsftpd: Vsftpd) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=vsftpd.cert_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection((vsftpd.host, vsftpd.port), TIMEOUT) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname=vsftpd.host)
    with (
        socket.create_connection((vsftpd.host, vsftpd.port), TIMEOUT) as raw,
        vsftpd.client_context().wrap_socket(raw, server_hostname=vsftpd.host) as tls,
    ):
        assert tls.version() == "TLSv1.2"


@pytest.mark.system
async def test_cancelled_upload_to_vsftpd_leaves_no_file(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    # vsftpd writes straight into the target and keeps what it got when the client resets the
    # transfer: only the client's clean-up removes that part. 24 MB at 4 MB/s outgrows the
    # socket buffers, so the upload is cancelled while the client still sends.
    payload = os.urandom(24_000_000)
    with running_vsftpd(tmp_path, max_rate=4_000_000) as server:
        client = vsftpd_client(server, executor)
        started = asyncio.Event()

        def progress(sent: int, total: int) -> None:
            if sent >= 2_000_000:
                started.set()

        task = asyncio.create_task(client.upload(payload, "slow.gcode.3mf", progress=progress))
        async with asyncio.timeout(TIMEOUT):
            await started.wait()
        task.cancel()
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert files_in(server.root) == []
        log = server.log.read_text()
        assert "FAIL UPLOAD" in log  # vsftpd saw a broken transfer, not a complete one
        assert "DELE" in log
        await client.upload(b"next", "next.bin")
        assert files_in(server.root) == ["next.bin"]


@pytest.mark.system
async def test_failed_upload_to_vsftpd_says_what_happened(
    vsftpd: Vsftpd, executor: ThreadPoolExecutor
) -> None:
    client = vsftpd_client(vsftpd, executor)
    with pytest.raises(FtpsNotFoundError, match="553 Could not create file") as caught:
        await client.upload(b"data", "/no/such/dir/x.bin")
    assert "check the file name" in str(caught.value)
    assert files_in(vsftpd.root) == []


# --- firmware that ends uploads oddly (A1: no 226; P2S: 426 for a complete file) ----------------


@pytest.fixture
async def make_quirky(tmp_path: Path) -> AsyncIterator[Callable[[UploadEnding], Awaitable[int]]]:
    ca = SimulatorCA.load_or_create(tmp_path / "ca")
    context = server_context(ca.issue_leaf("03900A000000001", ["127.0.0.1"]))
    servers: list[QuirkyFtps] = []

    async def make(ending: UploadEnding) -> int:
        (tmp_path / "sd").mkdir(exist_ok=True)
        server = QuirkyFtps(tmp_path / "sd", context, ending)
        servers.append(server)
        return await server.start("127.0.0.1")

    yield make
    for server in servers:
        await server.close()


def quirky_client(tmp_path: Path, port: int, executor: ThreadPoolExecutor) -> FtpsClient:
    return FtpsClient(
        "127.0.0.1",
        port,
        QUIRKY_CODE,
        tls12_context(str(tmp_path / "ca" / "ca.pem")),
        executor=executor,
        timeout=TIMEOUT,
        completion_timeout=0.5,  # A1 never answers: do not wait the full minute in a test
    )


@pytest.mark.parametrize("ending", [UploadEnding.SILENT, UploadEnding.REPLY_426])
async def test_upload_is_checked_with_size_when_the_printer_does_not_confirm(
    ending: UploadEnding,
    make_quirky: Callable[[UploadEnding], Awaitable[int]],
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    client = quirky_client(tmp_path, await make_quirky(ending), executor)
    async with asyncio.timeout(TIMEOUT):
        result = await client.upload(PAYLOAD[:300_000], "plate.gcode.3mf")
    assert result.bytes == 300_000
    assert (tmp_path / "sd" / "plate.gcode.3mf").read_bytes() == PAYLOAD[:300_000]
    assert files_in(tmp_path / "sd") == ["plate.gcode.3mf"]


async def test_unconfirmed_short_upload_fails_and_is_removed(
    make_quirky: Callable[[UploadEnding], Awaitable[int]],
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    client = quirky_client(tmp_path, await make_quirky(UploadEnding.TRUNCATE_SILENT), executor)
    with pytest.raises(FtpsTransferError, match="kept 150000 of 300000 bytes") as caught:
        await client.upload(PAYLOAD[:300_000], "plate.gcode.3mf")
    assert "was removed" in str(caught.value)
    assert files_in(tmp_path / "sd") == []
