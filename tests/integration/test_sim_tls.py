"""The simulator CA: generated once, reused, leaves cached, and a client trusting it verifies."""

import asyncio
import ssl
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from bambufarm.simulator.tls import LeafFiles, SimulatorCA, server_context

SERIAL = "01P00A123456789"


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # RSA key generation costs ~0.1 s per key: one CA for the whole module.
    directory = tmp_path_factory.mktemp("ca")
    SimulatorCA.load_or_create(directory)
    return directory


def _common_name(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


def test_ca_is_generated_with_private_key_files(ca_dir: Path) -> None:
    ca = SimulatorCA.load_or_create(ca_dir)
    cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    assert _common_name(cert) == "bambufarm Simulator CA"
    assert "BBL" not in cert.subject.rfc4514_string()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in ("ca.key", "leaf.key"):
        assert stat.S_IMODE((ca_dir / key).stat().st_mode) == 0o600


def test_ca_is_reused_across_restarts(ca_dir: Path) -> None:
    before = (ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca.key").read_bytes()
    SimulatorCA.load_or_create(ca_dir)
    assert ((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca.key").read_bytes()) == before


def test_leaf_has_serial_cn_and_ip_sans(ca_dir: Path) -> None:
    ca = SimulatorCA.load_or_create(ca_dir)
    leaf = ca.issue_leaf(SERIAL, ["127.0.0.1", "127.0.0.2", "localhost"])
    cert = x509.load_pem_x509_certificate(leaf.cert_path.read_bytes())
    assert _common_name(cert) == SERIAL
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "127.0.0.2",
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    cert.verify_directly_issued_by(ca_cert)


def test_leaves_are_cached_and_share_one_key(ca_dir: Path) -> None:
    ca = SimulatorCA.load_or_create(ca_dir)
    first = ca.issue_leaf(SERIAL, ["127.0.0.1"])
    pem = first.cert_path.read_bytes()
    again = SimulatorCA.load_or_create(ca_dir).issue_leaf(SERIAL, ["127.0.0.1"])
    assert again == first
    assert again.cert_path.read_bytes() == pem
    other = ca.issue_leaf("01S00A000000001", ["127.0.0.1"])
    assert other.cert_path != first.cert_path
    assert other.key_path == first.key_path
    moved = ca.issue_leaf(SERIAL, ["127.0.0.3"])
    assert moved.cert_path != first.cert_path


def test_cached_leaf_near_expiry_is_reissued(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    clock = [now]
    ca = SimulatorCA.load_or_create(tmp_path, now=lambda: clock[0])
    leaf = ca.issue_leaf(SERIAL, ["127.0.0.1"])
    pem = leaf.cert_path.read_bytes()
    clock[0] = now + timedelta(days=800)
    assert ca.issue_leaf(SERIAL, ["127.0.0.1"]).cert_path.read_bytes() != pem


def test_incomplete_ca_directory_is_regenerated(tmp_path: Path) -> None:
    SimulatorCA.load_or_create(tmp_path)
    old = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "ca.key").unlink()
    ca = SimulatorCA.load_or_create(tmp_path)
    assert ca.cert_path.read_bytes() != old
    assert (tmp_path / "ca.key").exists()


@pytest.fixture
async def tls_server(ca_dir: Path) -> AsyncIterator[tuple[SimulatorCA, int]]:
    ca = SimulatorCA.load_or_create(ca_dir)
    context = server_context(ca.issue_leaf(SERIAL, ["127.0.0.1"]))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield ca, port
    server.close()
    await server.wait_closed()


async def _handshake(port: int, context: ssl.SSLContext) -> tuple[ssl.SSLObject, bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        return ssl_object, await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_client_trusting_only_the_ca_sees_cn_serial(
    tls_server: tuple[SimulatorCA, int],
) -> None:
    ca, port = tls_server
    context = ssl.create_default_context(cafile=ca.cert_path)  # hostname check on: IP SAN
    ssl_object, data = await _handshake(port, context)
    assert data == b"hello"
    assert ssl_object.version() == "TLSv1.2"
    peer = ssl_object.getpeercert()
    assert peer is not None
    subject = dict(item for rdn in peer["subject"] for item in rdn)
    assert subject["commonName"] == SERIAL


@pytest.mark.parametrize("cipher", ["AES256-GCM-SHA384", "AES128-GCM-SHA256"])
async def test_plain_rsa_gcm_suites_are_offered(
    tls_server: tuple[SimulatorCA, int], cipher: str
) -> None:
    ca, port = tls_server
    context = ssl.create_default_context(cafile=ca.cert_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    ssl_object, _ = await _handshake(port, context)
    negotiated = ssl_object.cipher()
    assert negotiated is not None
    assert negotiated[0] == cipher


async def test_tls13_only_client_is_refused(tls_server: tuple[SimulatorCA, int]) -> None:
    ca, port = tls_server
    context = ssl.create_default_context(cafile=ca.cert_path)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # The server answers with a protocol_version alert; whether the client reads the alert or
    # first sees the reset depends on timing.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await _handshake(port, context)


async def test_client_without_the_ca_fails_verification(
    tls_server: tuple[SimulatorCA, int],
) -> None:
    _, port = tls_server
    context = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(port, context)


def test_leaf_files_are_paths(ca_dir: Path) -> None:
    leaf = SimulatorCA.load_or_create(ca_dir).issue_leaf(SERIAL, [])
    assert isinstance(leaf, LeafFiles)
    assert leaf.cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in leaf.key_path.read_bytes()
