"""A private vsftpd configured like a Bambu printer's FTPS server (protocol.md §2.1, §12).

`running_vsftpd(tmp_path)` starts `vsftpd` as a subprocess on a loopback address and a free
port and stops it (its whole process group) on exit. The configuration mirrors a printer:
implicit TLS, TLS 1.2 only, `require_ssl_reuse=YES` (data connections must resume the control
session, 522 otherwise), TLS forced for login and data, passive ports only, user `bblp` whose
password is the access code, writes allowed, chrooted into a fresh storage directory.

What it needs from the machine (make test / scripts/system-deps.sh installs vsftpd):
* root, to run vsftpd with a local user. Without vsftpd or root the tests are skipped with the
  apt-get line, or fail under `CI=true`, where nothing may be skipped.
* a system user `bblp` (created here if missing, marked by its comment) with the access code as
  password, no shell and an account that expired in 1970: PAM's account check refuses it for
  every other service, while the rig's own PAM service (`/etc/pam.d/bambufarm-test-ftps`,
  written here) checks only the password.
* vsftpd 3.0.3 (Debian 12) has no `ssl_tlsv1_2`/`ssl_tlsv1_3` options, so TLS 1.2 is enforced
  through an OpenSSL config file given to the process (MinProtocol = MaxProtocol = TLSv1.2).
"""

import datetime
import ipaddress
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

USER = "bblp"
ACCESS_CODE = "31415926"
SERIAL = "01P00A000000042"  # the CN a P1S leaf carries
USER_COMMENT = "bambufarm test FTPS user"
PAM_SERVICE = "bambufarm-test-ftps"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
# Password from /etc/shadow; the account phase allows the expired account for this service only.
# nodelay: pam_unix otherwise sleeps ~2 s after a wrong password.
PAM_RULES = "auth required pam_unix.so nodelay\naccount required pam_permit.so\n"
INSTALL_HINT = "sudo apt-get install vsftpd"
# vsftpd is up in ~50 ms; a loaded 2-core machine can take far longer.
START_TIMEOUT = 20.0
PASSIVE_PORTS = 64
# What printers offer (protocol.md §1.1): ECDHE and plain-RSA AES-GCM suites.
CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-GCM-SHA384"
)
OPENSSL_CONF = """openssl_conf = conf_sect
[conf_sect]
ssl_conf = ssl_sect
[ssl_sect]
system_default = tls12_only
[tls12_only]
MinProtocol = TLSv1.2
MaxProtocol = TLSv1.2
"""


@dataclass(frozen=True, slots=True)
class Vsftpd:
    """A running vsftpd: where it listens, the directory it serves, how to log in."""

    host: str
    port: int
    root: Path
    access_code: str
    cert_pem: bytes
    log: Path

    def client_context(self) -> ssl.SSLContext:
        """A TLS 1.2 client context that verifies the rig's certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=self.cert_pem.decode())
        return context


def _missing(reason: str) -> NoReturn:
    message = f"vsftpd tests need {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def _vsftpd_binary() -> str:
    found = shutil.which("vsftpd") or shutil.which("vsftpd", path="/usr/sbin:/sbin")
    if found is None:
        _missing(f"vsftpd installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        _missing("root (vsftpd switches to the local user bblp)")
    return found


def _ensure_user() -> pwd.struct_passwd:
    """The test user `bblp`, created if missing; its password set to the access code."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        argv = ["useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", shell]
        argv += ["--comment", USER_COMMENT, USER]
        subprocess.run(argv, check=False, capture_output=True)  # a parallel run may win
        entry = pwd.getpwnam(USER)
    if entry.pw_gecos != USER_COMMENT:
        pytest.fail(
            f"a user {USER!r} exists that these tests did not create (comment "
            f"{entry.pw_gecos!r}); the vsftpd rig will not change its password",
            pytrace=False,
        )
    # Expired since 1970 (useradd --system skips aging fields): PAM's account check (pam_unix)
    # refuses the account for every service but the rig's own.
    subprocess.run(["usermod", "--expiredate", "1970-01-02", USER], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{ACCESS_CODE}\n", text=True, check=True)
    return entry


def _ensure_pam_service() -> None:
    if PAM_FILE.exists() and PAM_FILE.read_text() == PAM_RULES:
        return
    temp = PAM_FILE.with_name(f".{PAM_SERVICE}.{os.getpid()}")
    temp.write_text(PAM_RULES)
    temp.replace(PAM_FILE)


def _certificate(host: str) -> tuple[bytes, bytes]:
    """A self-signed RSA certificate, CN = a P1S serial, IP SAN = `host`, as (cert, key) PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _supports(binary: str, option: str) -> bool:
    """Whether this vsftpd build knows `option` (3.0.3 dies on unknown config options)."""
    return b"\0" + option.encode() + b"\0" in Path(binary).read_bytes()


def _config(
    binary: str, work: Path, host: str, port: int, *, max_rate: int | None, strict_eof: bool
) -> str:
    # Passive ports below Linux's ephemeral range (32768+), on an address of our own.
    first = random.randrange(20000, 32000 - PASSIVE_PORTS)
    lines = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": host,
        "listen_port": str(port),
        "background": "NO",
        "anonymous_enable": "NO",
        "local_enable": "YES",
        "write_enable": "YES",
        "local_umask": "022",
        "chroot_local_user": "YES",
        "allow_writeable_chroot": "YES",
        "local_root": str(work / "sd"),
        "secure_chroot_dir": str(work / "empty"),
        "pam_service_name": PAM_SERVICE,
        "userlist_enable": "NO",
        "ssl_enable": "YES",
        "implicit_ssl": "YES",
        "require_ssl_reuse": "YES",
        "force_local_logins_ssl": "YES",
        "force_local_data_ssl": "YES",
        "ssl_sslv2": "NO",
        "ssl_sslv3": "NO",
        "ssl_ciphers": CIPHERS,
        "rsa_cert_file": str(work / "cert.pem"),
        "rsa_private_key_file": str(work / "key.pem"),
        "pasv_enable": "YES",
        "pasv_min_port": str(first),
        "pasv_max_port": str(first + PASSIVE_PORTS - 1),
        # Announce an address nobody listens on: clients must use the control host (§2.1).
        "pasv_address": "127.255.255.254",
        # The seccomp sandbox and namespaces fail in containers; printers do not need them.
        "seccomp_sandbox": "NO",
        "isolate": "NO",
        "isolate_network": "NO",
        "delay_failed_login": "0",
        "xferlog_enable": "YES",
        "xferlog_std_format": "NO",
        "log_ftp_protocol": "YES",
        "vsftpd_log_file": str(work / "vsftpd.log"),
        "syslog_enable": "NO",
    }
    if _supports(binary, "ssl_tlsv1_2"):  # vsftpd >= 3.0.4
        lines |= {"ssl_tlsv1": "NO", "ssl_tlsv1_1": "NO", "ssl_tlsv1_2": "YES"}
        if _supports(binary, "ssl_tlsv1_3"):
            lines["ssl_tlsv1_3"] = "NO"
    else:  # 3.0.3: ssl_tlsv1 enables TLS 1.x; the OpenSSL config keeps only 1.2
        lines["ssl_tlsv1"] = "YES"
    if max_rate is not None:
        lines["local_max_rate"] = str(max_rate)
    if strict_eof:
        # Printers accept a bare end of file (protocol.md §12.3); this makes a missing
        # close_notify on an upload a 426, to prove that a client sends one.
        lines["strict_ssl_read_eof"] = "YES"
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _wait_until_listening(
    process: subprocess.Popen[bytes], host: str, port: int, out: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vsftpd exited at start: {out.read_text(errors='replace')}", pytrace=False)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a subprocess's port: there is nothing to await
    pytest.fail(f"vsftpd did not listen on {host}:{port} within {START_TIMEOUT} s", pytrace=False)


@contextmanager
def running_vsftpd(
    tmp_path: Path, *, max_rate: int | None = None, strict_eof: bool = False
) -> Iterator[Vsftpd]:
    """Start a printer-like vsftpd (optionally capped at `max_rate` bytes/s per transfer)."""
    binary = _vsftpd_binary()
    user = _ensure_user()
    _ensure_pam_service()
    # One address per test process, so parallel runs do not share passive ports.
    host = f"127.0.99.{os.getpid() % 250 + 1}"
    # vsftpd changes into local_root as bblp, so its parents must be traversable: not under
    # pytest's 0700 tmp directory.
    work = Path(tempfile.mkdtemp(prefix="bambufarm-vsftpd-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        work.chmod(0o755)
        (work / "empty").mkdir(mode=0o755)
        storage = work / "sd"
        storage.mkdir(mode=0o755)
        os.chown(storage, user.pw_uid, user.pw_gid)
        cert_pem, key_pem = _certificate(host)
        (work / "cert.pem").write_bytes(cert_pem)
        (work / "key.pem").write_bytes(key_pem)
        (work / "key.pem").chmod(0o600)
        (work / "openssl.cnf").write_text(OPENSSL_CONF)
        port = _free_port(host)
        conf = tmp_path / "vsftpd.conf"
        conf.write_text(_config(binary, work, host, port, max_rate=max_rate, strict_eof=strict_eof))
        out = tmp_path / "vsftpd.out"
        env = {"PATH": os.environ.get("PATH", ""), "OPENSSL_CONF": str(work / "openssl.cnf")}
        with out.open("wb") as sink:
            process = subprocess.Popen(
                [binary, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: sessions are stopped with it
            )
        _wait_until_listening(process, host, port, out)
        yield Vsftpd(host, port, storage, ACCESS_CODE, cert_pem, work / "vsftpd.log")
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(work, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop vsftpd and the session processes it forked (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
