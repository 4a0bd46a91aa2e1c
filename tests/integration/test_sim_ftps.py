"""The simulator's implicit-FTPS server against real clients (ftplib, curl) on loopback TLS 1.2.

The server runs in the test's event loop; ftplib is blocking, so each client runs through
`asyncio.to_thread` (the only way a blocking client can talk to a server in the same loop).
"""

import asyncio
import contextlib
import datetime
import ftplib
import io
import ipaddress
import os
import re
import shutil
import socket
import ssl
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bambufarm.simulator.ftps_server import FtpsFaults, FtpsServer
from bambufarm.simulator.storage import STANDARD_DIRS, PrinterStorage

CODE = "12345678"
HOST = "127.0.0.1"
# ls -l as vsFTPd writes it (protocol.md §12 rule 15): two-digit day, time or year.
LIST_LINE = re.compile(
    r"^(?P<mode>[-d]rw[-x]r-[-x]r-[-x]) +1 +\S+ +\S+ +(?P<size>\d+) "
    r"(?P<month>[A-Z][a-z]{2}) (?P<day>\d{2}) (?P<when>\d{2}:\d{2}| \d{4}) (?P<name>.+)$"
)
# 2024-06-20 00:00 UTC: the wall clock the listing tests run at.
NOW = datetime.datetime(2024, 6, 20, tzinfo=datetime.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class TlsFiles:
    pem: Path
    cert_pem: str


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "01P00A000000001")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(f"127.0.0.{i}")) for i in (1, 2, 3)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = tmp_path_factory.mktemp("tls") / "printer.pem"
    pem.write_bytes(cert_pem + key_pem)
    return TlsFiles(pem, cert_pem.decode())


@pytest.fixture
def server_context(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # real printers speak TLS 1.2 (rule 2)
    context.load_cert_chain(tls_files.pem)
    return context


@pytest.fixture
def client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=tls_files.cert_pem)
    return context


@dataclass
class Sim:
    server: FtpsServer
    storage: PrinterStorage
    port: int
    stored: list[str] = field(default_factory=list)


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def make_sim(tmp_path: Path, server_context: ssl.SSLContext) -> AsyncIterator[SimFactory]:
    sims: list[Sim] = []

    async def make(capacity: int = 64 * 1024 * 1024, host: str = HOST, **options: Any) -> Sim:
        storage = PrinterStorage(tmp_path / f"sd{len(sims)}", capacity_bytes=capacity)
        stored: list[str] = []
        options.setdefault("wall_clock", lambda: NOW)
        server = FtpsServer(storage, CODE, server_context, on_stored=stored.append, **options)
        port = await server.start(host, 0)
        sim = Sim(server, storage, port, stored)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.server.close()


class ImplicitFtps(ftplib.FTP_TLS):
    """ftplib for implicit FTPS: TLS at connect; data TLS after 150, reusing the session or not."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        reuse_session: bool = True,
        use_epsv: bool = False,
        source_address: tuple[str, int] | None = None,
        before_data_connect: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(context=context, timeout=30, source_address=source_address)
        self.reuse_session = reuse_session
        self.use_epsv = use_epsv
        self.before_data_connect = before_data_connect

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        self.host, self.port = host, port
        raw = socket.create_connection(
            (host, port), self.timeout, source_address=self.source_address
        )
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def makepasv(self) -> tuple[str, int]:
        if self.use_epsv:
            _, port = ftplib.parse229(  # noqa: S321 - implicit FTPS, TLS on both channels
                self.sendcmd("EPSV"), self.sock.getpeername()
            )
            host = self.host
        else:
            host, port = super().makepasv()
        if self.before_data_connect is not None:
            self.before_data_connect(host, port)
        return host, port

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        # The plain FTP step opens the TCP data socket; TLS is added below, after the 150.
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if self.reuse_session else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def connect(
    port: int, context: ssl.SSLContext, *, login: bool = True, host: str = HOST, **kw: Any
) -> ImplicitFtps:
    ftp = ImplicitFtps(context, **kw)
    ftp.connect(host, port)
    if login:
        ftp.login("bblp", CODE)
        ftp.prot_p()
    return ftp


def close(ftp: ftplib.FTP) -> None:
    with contextlib.suppress(OSError, EOFError, ftplib.Error):
        ftp.quit()
    ftp.close()


def store_tolerant(ftp: ImplicitFtps, name: str, data: bytes) -> str:
    """STOR that keeps going when the server drops the data connection; returns the last reply."""
    conn = ftp.transfercmd(f"STOR {name}")
    try:
        with contextlib.suppress(OSError):
            conn.sendall(data)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
    finally:
        conn.close()
    try:
        return ftp.voidresp()
    except ftplib.Error as err:
        return str(err)
    except (EOFError, OSError) as err:
        return f"control connection lost: {err!r}"


def upload(ftp: ftplib.FTP, name: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


def download(ftp: ftplib.FTP, name: str) -> bytes:
    chunks: list[bytes] = []
    ftp.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks)


def listing(ftp: ftplib.FTP, command: str = "LIST") -> list[str]:
    lines: list[str] = []
    ftp.retrlines(command, lines.append)
    return lines


def leftovers(storage: PrinterStorage) -> list[str]:
    """Every file under the storage root (upload temporaries included)."""
    return sorted(
        str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file()
    )


# --- session ----------------------------------------------------------------------------------


async def test_banner_login_and_session_commands(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> dict[str, str]:
        ftp = connect(sim.port, client_context, login=False)
        try:
            replies = {"welcome": ftp.getwelcome()}
            replies["user"] = ftp.sendcmd("USER bblp")
            replies["pass"] = ftp.sendcmd(f"PASS {CODE}")
            replies["pbsz"] = ftp.sendcmd("PBSZ 0")
            replies["prot"] = ftp.sendcmd("PROT P")
            replies["feat"] = ftp.sendcmd("FEAT")
            replies["syst"] = ftp.sendcmd("SYST")
            replies["opts"] = ftp.sendcmd("OPTS UTF8 ON")
            replies["pwd"] = ftp.sendcmd("PWD")
            replies["type"] = ftp.sendcmd("TYPE I")
            replies["noop"] = ftp.sendcmd("NOOP")
            replies["version"] = ftp.sock.version() or ""
            replies["quit"] = ftp.quit()
        finally:
            ftp.close()
        return replies

    replies = await asyncio.to_thread(run)
    assert replies["welcome"] == "220 (vsFTPd 3.0.5)"
    assert replies["user"].startswith("331 ")
    assert replies["pass"] == "230 Login successful."
    assert replies["pbsz"] == "200 PBSZ set to 0."
    assert replies["prot"] == "200 PROT now Private."
    for feature in ("EPSV", "PASV", "SIZE", "UTF8", "PROT", "PBSZ"):
        assert f"\n {feature}\n" in replies["feat"]
    assert replies["feat"].startswith("211-Features:")
    assert replies["feat"].endswith("211 End")
    assert replies["syst"] == "215 UNIX Type: L8"
    assert replies["opts"].startswith("200 ")
    assert replies["pwd"] == '257 "/" is the current directory'
    assert replies["type"] == "200 Switching to Binary mode."
    assert replies["noop"] == "200 NOOP ok."
    assert replies["version"] == "TLSv1.2"
    assert replies["quit"] == "221 Goodbye."


async def test_wrong_password_and_wrong_user_get_530(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> list[str]:
        ftp = connect(sim.port, client_context, login=False)
        errors = []
        try:
            for user, code in (("bblp", "00000000"), ("root", CODE)):
                with pytest.raises(ftplib.error_perm) as err:
                    ftp.login(user, code)
                errors.append(str(err.value))
            with pytest.raises(ftplib.error_perm) as err:
                ftp.sendcmd("PWD")
            errors.append(str(err.value))
        finally:
            close(ftp)
        return errors

    assert await asyncio.to_thread(run) == [
        "530 Login incorrect.",
        "530 Login incorrect.",
        "530 Please login with USER and PASS.",
    ]


async def test_three_failures_close_the_connection(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> None:
        ftp = connect(sim.port, client_context, login=False)
        try:
            for _ in range(3):
                with pytest.raises(ftplib.error_perm, match=r"^530"):
                    ftp.login("bblp", "wrong")
            with pytest.raises((EOFError, OSError)):
                ftp.sendcmd("NOOP")
        finally:
            ftp.close()

    await asyncio.to_thread(run)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_brute_force_is_locked_out_per_address(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    clock = FakeClock()
    sim = await make_sim(clock=clock)

    def attempt(code: str, source: str = HOST) -> str:
        ftp = connect(sim.port, client_context, login=False, source_address=(source, 0))
        try:
            ftp.sendcmd("USER bblp")
            return ftp.sendcmd(f"PASS {code}")
        except ftplib.Error as err:
            return str(err)
        finally:
            close(ftp)

    def run() -> None:
        for _ in range(10):
            assert attempt("wrong") == "530 Login incorrect."
        # Locked: even the right code is refused, so guessing cannot go on.
        assert attempt(CODE).startswith("421 Too many failed logins")
        # Another client address is not affected.
        assert attempt(CODE, source="127.0.0.2") == "230 Login successful."

    await asyncio.to_thread(run)
    clock.now += 61
    assert await asyncio.to_thread(attempt, CODE) == "230 Login successful."


async def test_refuse_logins_fault(make_sim: SimFactory, client_context: ssl.SSLContext) -> None:
    sim = await make_sim(faults=FtpsFaults(refuse_logins=True))

    def attempt() -> str:
        ftp = connect(sim.port, client_context, login=False)
        try:
            ftp.login("bblp", CODE)
        except ftplib.Error as err:
            return str(err)
        finally:
            close(ftp)
        return "logged in"

    assert await asyncio.to_thread(attempt) == "530 Login incorrect."
    sim.server.faults = FtpsFaults()
    assert await asyncio.to_thread(attempt) == "logged in"


# --- transfers --------------------------------------------------------------------------------


async def test_upload_one_megabyte_byte_exact_then_size_and_retr(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    data = os.urandom(1024 * 1024 + 12345)

    def run() -> tuple[str, str, bytes]:
        ftp = connect(sim.port, client_context)
        try:
            reply = upload(ftp, "plate.bin", data)
            size = ftp.sendcmd("SIZE plate.bin")
            return reply, size, download(ftp, "/plate.bin")
        finally:
            close(ftp)

    reply, size, back = await asyncio.to_thread(run)
    assert reply == "226 Transfer complete."
    assert (sim.storage.root / "plate.bin").read_bytes() == data
    assert size == f"213 {len(data)}"
    assert back == data
    assert sim.stored == ["/plate.bin"]
    assert leftovers(sim.storage) == ["plate.bin"]


async def test_epsv_upload_into_subdirectory(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    data = os.urandom(70_000)

    def run() -> str:
        ftp = connect(sim.port, client_context, use_epsv=True)
        try:
            ftp.cwd("cache")
            return upload(ftp, "job.bin", data)
        finally:
            close(ftp)

    assert await asyncio.to_thread(run) == "226 Transfer complete."
    assert (sim.storage.root / "cache" / "job.bin").read_bytes() == data
    assert sim.stored == ["/cache/job.bin"]


async def test_list_is_ls_dash_l_with_two_digit_day(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    sim.storage.write_file("a.gcode.bin", b"x" * 1632221)
    sim.storage.write_file("/cache/old.bin", b"o" * 10)
    june_7 = datetime.datetime(2024, 6, 7, 12, 12, tzinfo=datetime.UTC).timestamp()
    jan_5 = datetime.datetime(2023, 1, 5, 8, 0, tzinfo=datetime.UTC).timestamp()
    os.utime(sim.storage.root / "a.gcode.bin", (june_7, june_7))
    os.utime(sim.storage.root / "cache" / "old.bin", (jan_5, jan_5))

    def run() -> tuple[list[str], list[str], list[str]]:
        ftp = connect(sim.port, client_context)
        try:
            return listing(ftp), listing(ftp, "LIST -la /cache"), listing(ftp, "NLST")
        finally:
            close(ftp)

    root, cache, names = await asyncio.to_thread(run)
    parsed = {m["name"]: m for m in map(LIST_LINE.match, root) if m}
    assert len(parsed) == len(root) == 4, root
    assert set(parsed) == {"a.gcode.bin", *STANDARD_DIRS}
    file_line = parsed["a.gcode.bin"]
    assert file_line["mode"] == "-rw-r--r--"
    assert (file_line["size"], file_line["month"], file_line["day"], file_line["when"]) == (
        "1632221",
        "Jun",
        "07",
        "12:12",
    )
    assert parsed["cache"]["mode"].startswith("d")
    [old] = cache
    match = LIST_LINE.match(old)
    assert match is not None, old
    assert (match["name"], match["size"], match["day"], match["when"]) == (
        "old.bin",
        "10",
        "05",
        " 2023",
    )
    assert sorted(names) == sorted(["a.gcode.bin", *STANDARD_DIRS])


async def test_directory_and_file_commands(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> list[str]:
        ftp = connect(sim.port, client_context)
        try:
            steps = [
                ftp.sendcmd("MKD jobs"),
                ftp.sendcmd("CWD jobs"),
                ftp.sendcmd("PWD"),
                upload(ftp, "a.bin", b"abc"),
                ftp.sendcmd("RNFR a.bin"),
                ftp.sendcmd("RNTO /model/b.bin"),
                ftp.sendcmd("CDUP"),
                ftp.sendcmd("PWD"),
                ftp.sendcmd("SIZE model/b.bin"),
                ftp.sendcmd("DELE model/b.bin"),
                ftp.sendcmd("RMD jobs"),
            ]
            for command in ("SIZE model/b.bin", "RMD jobs", "RNTO x", "CWD nowhere"):
                with pytest.raises(ftplib.error_perm) as err:
                    ftp.sendcmd(command)
                steps.append(str(err.value)[:3])
            return steps
        finally:
            close(ftp)

    assert await asyncio.to_thread(run) == [
        '257 "/jobs" created',
        "250 Directory successfully changed.",
        '257 "/jobs" is the current directory',
        "226 Transfer complete.",
        "350 Ready for RNTO.",
        "250 Rename successful.",
        "250 Directory successfully changed.",
        '257 "/" is the current directory',
        "213 3",
        "250 Delete operation successful.",
        "250 Remove directory operation successful.",
        "550",
        "550",
        "503",
        "550",
    ]
    assert leftovers(sim.storage) == []


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.parametrize(
    "command",
    [
        "RETR ../../etc/passwd",
        "RETR /etc/passwd",
        "STOR ../../tmp/evil",
        "STOR /etc/passwd",
        "LIST ../..",
        "NLST ../",
        "CWD ../..",
        "DELE ../outside.txt",
        "SIZE /../outside.txt",
        "MKD ../newdir",
        "RMD ..",
        "RNFR ../outside.txt",
    ],
)
async def test_traversal_is_refused_with_550(
    make_sim: SimFactory, client_context: ssl.SSLContext, tmp_path: Path, command: str
) -> None:
    sim = await make_sim()
    (tmp_path / "outside.txt").write_text("secret")
    before = _names(tmp_path)

    def run() -> str:
        ftp = connect(sim.port, client_context)
        try:
            if command.split(maxsplit=1)[0] in ("RETR", "STOR", "LIST", "NLST"):
                ftp.makepasv()  # the data command must be refused before any 150
            return ftp.sendcmd(command)
        except ftplib.Error as err:
            return str(err)
        finally:
            close(ftp)

    reply = await asyncio.to_thread(run)
    assert reply.startswith("550 "), reply
    assert (tmp_path / "outside.txt").read_text() == "secret"
    assert _names(tmp_path) == before
    assert leftovers(sim.storage) == []


async def test_non_reusing_client_gets_522_when_reuse_is_required(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(require_session_reuse=True)

    def run() -> tuple[str, str]:
        ftp = connect(sim.port, client_context, reuse_session=False)
        try:
            refused = store_tolerant(ftp, "x.bin", b"data")
            ftp.reuse_session = True
            return refused, upload(ftp, "x.bin", b"data")
        finally:
            close(ftp)

    refused, accepted = await asyncio.to_thread(run)
    assert refused == "522 SSL connection failed: session reuse required"
    assert accepted == "226 Transfer complete."
    assert leftovers(sim.storage) == ["x.bin"]


async def test_non_reusing_client_accepted_when_reuse_is_off(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(require_session_reuse=False)

    def run() -> tuple[str, bytes]:
        ftp = connect(sim.port, client_context, reuse_session=False)
        try:
            return upload(ftp, "x.bin", b"data"), download(ftp, "x.bin")
        finally:
            close(ftp)

    assert await asyncio.to_thread(run) == ("226 Transfer complete.", b"data")


async def test_upload_beyond_capacity_gets_552_and_leaves_nothing(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(capacity=300_000)

    def run() -> tuple[str, str]:
        ftp = connect(sim.port, client_context)
        try:
            full = store_tolerant(ftp, "big.bin", os.urandom(1024 * 1024))
            return full, upload(ftp, "small.bin", b"s" * 1000)
        finally:
            close(ftp)

    full, small = await asyncio.to_thread(run)
    assert full.startswith("552 "), full
    assert small == "226 Transfer complete."
    assert leftovers(sim.storage) == ["small.bin"]
    assert sim.stored == ["/small.bin"]


async def test_fail_uploads_after_bytes_gets_426_and_leaves_nothing(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(faults=FtpsFaults(fail_uploads_after_bytes=100_000))
    data = os.urandom(1024 * 1024)

    def run() -> str:
        ftp = connect(sim.port, client_context)
        try:
            return store_tolerant(ftp, "job.bin", data)
        finally:
            close(ftp)

    assert (await asyncio.to_thread(run)).startswith("426 ")
    assert leftovers(sim.storage) == []
    assert sim.stored == []
    sim.server.faults = FtpsFaults()  # replaced at run time: the next upload goes through

    def again() -> str:
        ftp = connect(sim.port, client_context)
        try:
            return upload(ftp, "job.bin", data)
        finally:
            close(ftp)

    assert await asyncio.to_thread(again) == "226 Transfer complete."
    assert (sim.storage.root / "job.bin").read_bytes() == data


async def test_eof_without_close_notify_still_stores_and_answers_226(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    data = os.urandom(300_000)

    def run() -> str:
        ftp = connect(sim.port, client_context)
        try:
            conn = ftp.transfercmd("STOR a1.bin")
            assert isinstance(conn, ssl.SSLSocket)
            conn.sendall(data)
            # SSLSocket.shutdown drops the TLS layer and shuts the TCP socket: no close_notify.
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            return ftp.voidresp()
        finally:
            close(ftp)

    assert await asyncio.to_thread(run) == "226 Transfer complete."
    assert (sim.storage.root / "a1.bin").read_bytes() == data


async def test_two_clients_at_once(make_sim: SimFactory, client_context: ssl.SSLContext) -> None:
    sim = await make_sim()
    payloads = {f"c{i}.bin": os.urandom(600_000) for i in range(2)}

    def run(name: str) -> str:
        ftp = connect(sim.port, client_context)
        try:
            return upload(ftp, name, payloads[name])
        finally:
            close(ftp)

    replies = await asyncio.gather(*(asyncio.to_thread(run, name) for name in payloads))
    assert replies == ["226 Transfer complete."] * 2
    for name, data in payloads.items():
        assert (sim.storage.root / name).read_bytes() == data


async def test_passive_port_listens_on_the_control_address(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(host="127.0.0.3")

    def run() -> tuple[str, str, str]:
        ftp = connect(sim.port, client_context, host="127.0.0.3")
        try:
            pasv = ftp.sendcmd("PASV")
            epsv = ftp.sendcmd("EPSV")  # replaces the PASV listener
            return pasv, epsv, upload(ftp, "p.bin", b"p")
        finally:
            close(ftp)

    pasv, epsv, reply = await asyncio.to_thread(run)
    assert re.fullmatch(r"227 Entering Passive Mode \(127,0,0,3,\d+,\d+\)\.", pasv), pasv
    assert re.fullmatch(r"229 Entering Extended Passive Mode \(\|\|\|\d+\|\)", epsv), epsv
    assert reply == "226 Transfer complete."


async def test_data_connection_from_another_address_is_ignored(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    strangers: list[socket.socket] = []

    def intrude(host: str, port: int) -> None:
        strangers.append(socket.create_connection((host, port), 5, source_address=("127.0.0.2", 0)))

    def run() -> tuple[str, bytes]:
        ftp = connect(sim.port, client_context, before_data_connect=intrude)
        try:
            reply = upload(ftp, "mine.bin", b"mine")
            strangers[0].settimeout(5)
            return reply, strangers[0].recv(10)
        finally:
            close(ftp)
            for stranger in strangers:
                stranger.close()

    assert await asyncio.to_thread(run) == ("226 Transfer complete.", b"")
    assert (sim.storage.root / "mine.bin").read_bytes() == b"mine"


async def test_truncated_3mf_is_refused_and_complete_one_stored(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Metadata/plate_1.gcode", "G28\n" * 5000)
    archive_bytes = buffer.getvalue()

    def run() -> tuple[str, str]:
        ftp = connect(sim.port, client_context)
        try:
            truncated = store_tolerant(ftp, "cut.gcode.3mf", archive_bytes[:-100])
            return truncated, upload(ftp, "ok.gcode.3mf", archive_bytes)
        finally:
            close(ftp)

    truncated, complete = await asyncio.to_thread(run)
    assert truncated.startswith("451 "), truncated
    assert complete == "226 Transfer complete."
    assert leftovers(sim.storage) == ["ok.gcode.3mf"]


async def test_write_rate_cap_paces_the_upload(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(faults=FtpsFaults(write_rate_bytes_per_s=400_000))
    data = os.urandom(200_000)

    def run() -> tuple[str, float]:
        ftp = connect(sim.port, client_context)
        try:
            started = time.monotonic()
            reply = upload(ftp, "slow.bin", data)
            return reply, time.monotonic() - started
        finally:
            close(ftp)

    reply, elapsed = await asyncio.to_thread(run)
    assert reply == "226 Transfer complete."
    # 200 kB at 400 kB/s cannot finish in less than 0.5 s (lower bound only: never flaky).
    assert elapsed >= 0.45
    assert (sim.storage.root / "slow.bin").read_bytes() == data


async def test_data_commands_need_pasv_and_protection(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> list[str]:
        ftp = connect(sim.port, client_context, login=False)
        replies = []
        try:
            ftp.login("bblp", CODE)
            for command in ("PROT C", "PROT X", "STOR x.bin", "PORT 127,0,0,1,4,1"):
                try:
                    replies.append(ftp.sendcmd(command))
                except ftplib.Error as err:
                    replies.append(str(err)[:3])
            ftp.makepasv()
            try:
                ftp.sendcmd("LIST")
            except ftplib.Error as err:
                replies.append(str(err))
        finally:
            close(ftp)
        return replies

    assert await asyncio.to_thread(run) == [
        "536",
        "504",
        "425",
        "502",
        "522 Data connections must be encrypted.",
    ]


async def test_prot_c_when_allowed(make_sim: SimFactory, client_context: ssl.SSLContext) -> None:
    sim = await make_sim(allow_prot_c=True)

    def run() -> tuple[str, str, bytes]:
        ftp = connect(sim.port, client_context, login=False)
        try:
            ftp.login("bblp", CODE)
            prot = ftp.prot_c()
            return prot, upload(ftp, "clear.bin", b"plain"), download(ftp, "clear.bin")
        finally:
            close(ftp)

    assert await asyncio.to_thread(run) == (
        "200 PROT now Clear.",
        "226 Transfer complete.",
        b"plain",
    )


# --- robustness -------------------------------------------------------------------------------


class RawControl:
    """A bare implicit-TLS control connection for sending bytes no well-behaved client sends."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection((HOST, port), 10)
        self.sock = context.wrap_socket(raw, server_hostname=HOST)
        self.file = self.sock.makefile("rb")

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def send(self, data: bytes) -> str:
        self.sock.sendall(data)
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


async def test_malformed_and_overlong_lines_get_500_and_the_session_continues(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()

    def run() -> list[str]:
        control = RawControl(sim.port, client_context)
        other = connect(sim.port, client_context)
        try:
            replies = [control.line()]
            replies.append(control.send(b"NOOP " + b"x" * 10_000 + b"\r\n"))
            replies.append(control.send(b"\xff\xfe\r\n"))
            replies.append(control.send(b"\r\n"))
            replies.append(control.send(b"N0OP\r\n"))
            replies.append(control.send(b"NOOP a\x00b\r\n"))
            replies.append(control.send(b"USER bblp\r\n"))
            replies.append(control.send(f"PASS {CODE}\n".encode()))
            replies.append(control.send(b"XYZZ\r\n"))
            replies.append(control.send(b"noop\r\n"))
            # Another client was never disturbed.
            replies.append(upload(other, "other.bin", b"ok"))
            return replies
        finally:
            control.close()
            close(other)

    replies = await asyncio.to_thread(run)
    assert replies[0] == "220 (vsFTPd 3.0.5)"
    assert replies[1] == "500 Command line too long (limit 4096 bytes)."
    assert [r[:4] for r in replies[2:6]] == ["500 "] * 4
    assert replies[6:] == [
        "331 Please specify the password.",
        "230 Login successful.",
        "500 Unknown command.",
        "200 NOOP ok.",
        "226 Transfer complete.",
    ]


async def test_idle_control_connection_is_dropped(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim(idle_timeout=0.3)

    def run() -> tuple[str, str, bytes]:
        control = RawControl(sim.port, client_context)
        try:
            # Blocks for idle_timeout (0.3 s of real time): the server's timer is the loop's.
            return control.line(), control.line(), control.file.read()
        finally:
            control.close()

    assert await asyncio.to_thread(run) == ("220 (vsFTPd 3.0.5)", "421 Timeout.", b"")


async def test_close_drops_connected_clients(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    sim = await make_sim()
    ftp = await asyncio.to_thread(connect, sim.port, client_context)
    try:
        await sim.server.close()
        with pytest.raises((EOFError, OSError)):
            await asyncio.to_thread(ftp.sendcmd, "NOOP")
    finally:
        ftp.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(connect, sim.port, client_context)


async def test_close_during_an_upload_leaves_no_partial_file(
    make_sim: SimFactory, client_context: ssl.SSLContext
) -> None:
    # 20 kB/s: the 1 MB upload is still running when the server closes.
    sim = await make_sim(faults=FtpsFaults(write_rate_bytes_per_s=20_000))
    ftp = await asyncio.to_thread(connect, sim.port, client_context)
    try:
        transfer = asyncio.create_task(
            asyncio.to_thread(store_tolerant, ftp, "big.bin", os.urandom(1024 * 1024))
        )
        for _ in range(500):
            if any(sim.storage.root.glob(".upload-*")):
                break
            await asyncio.sleep(0.01)  # real time: polls until the upload reaches the storage
        await sim.server.close()
        reply = await transfer
    finally:
        ftp.close()
    assert not reply.startswith("226"), reply
    assert leftovers(sim.storage) == []
    assert sim.stored == []


def test_a_context_allowing_tls_1_3_is_refused(tmp_path: Path, tls_files: TlsFiles) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.pem)
    storage = PrinterStorage(tmp_path, capacity_bytes=1000)
    with pytest.raises(ValueError, match=r"TLS 1\.2"):
        FtpsServer(storage, CODE, context)


# --- curl -------------------------------------------------------------------------------------


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {name}; make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


async def _curl(*args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        _require_tool("curl"),
        "--silent",
        "--show-error",
        "--max-time",
        "60",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


@pytest.mark.system
async def test_curl_implicit_ftps_upload_list_and_download(
    make_sim: SimFactory, tmp_path: Path, tls_files: TlsFiles
) -> None:
    _require_tool("curl")
    sim = await make_sim(require_session_reuse=True)
    source = tmp_path / "curl.gcode.bin"
    source.write_bytes(os.urandom(400_000))
    common = ("--ssl-reqd", "--cacert", str(tls_files.pem), "--user", f"bblp:{CODE}")
    base = f"ftps://{HOST}:{sim.port}/"

    await _curl(*common, "-T", str(source), base)
    assert (sim.storage.root / "curl.gcode.bin").read_bytes() == source.read_bytes()
    assert sim.stored == ["/curl.gcode.bin"]

    lines = (await _curl(*common, base)).decode().splitlines()
    matches = [LIST_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert {m["name"]: m["size"] for m in matches if m}["curl.gcode.bin"] == "400000"

    names = (await _curl(*common, "--list-only", base + "cache/")).decode().splitlines()
    assert names == []

    target = tmp_path / "back.bin"
    await _curl(*common, "-o", str(target), base + "curl.gcode.bin")
    assert target.read_bytes() == source.read_bytes()
