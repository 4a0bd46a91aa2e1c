"""The simulator's own certificate authority and per-printer TLS server contexts.

Real printers present a leaf with `CN=<serial>` issued by Bambu's private CA (protocol.md §1.1).
The simulator mimics the shape with its own CA ("bambufarm Simulator CA", never "BBL CA", so
nobody mistakes it for Bambu's), generated once into a directory and reused across restarts, so
a manager configured to trust it keeps trusting it.

Start-up must stay fast for 1,000 printers: an RSA-2048 key takes ~60 ms to generate, about a
minute for 1,000. So every leaf issued from one directory shares ONE leaf key; each printer still
gets its own certificate (its own CN and addresses), cached on disk by serial and addresses.
"""

import hashlib
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CA_COMMON_NAME = "bambufarm Simulator CA"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
LEAF_KEY_FILE = "leaf.key"
LEAF_DIR = "leaves"
# RSA, not EC: the plain-RSA AES-GCM suites slicers need only work with an RSA leaf key.
_KEY_BITS = 2048
_CA_LIFETIME = timedelta(days=3650)
_LEAF_LIFETIME = timedelta(days=825)
# Re-issue a cached leaf when it has less than this left, so a long simulator run never
# crosses an expiry.
_LEAF_RENEW_BEFORE = timedelta(days=30)
# Tolerate a client clock a day behind ours.
_BACKDATE = timedelta(days=1)
# TLS 1.2 ECDHE suites plus the two plain-RSA AES-GCM suites slicer ClientHellos need
# (protocol.md §1.1; BD saw handshakes fail against hardened defaults without them).
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:AES256-GCM-SHA384:AES128-GCM-SHA256"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LeafFiles:
    """A printer's certificate and (shared) private key, as PEM files."""

    cert_path: Path
    key_path: Path


class SimulatorCA:
    """A CA in a directory that issues `CN=<serial>` leaves for simulated printers."""

    __slots__ = (
        "_ca_cert",
        "_ca_key",
        "_directory",
        "_leaf_key",
        "_now",
    )

    def __init__(
        self,
        directory: Path,
        ca_cert: x509.Certificate,
        ca_key: rsa.RSAPrivateKey,
        leaf_key: rsa.RSAPrivateKey,
        now: Callable[[], datetime],
    ) -> None:
        """Use `load_or_create`; this wraps material already on disk."""
        self._directory = directory
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._leaf_key = leaf_key
        self._now = now

    @classmethod
    def load_or_create(
        cls, directory: Path, *, now: Callable[[], datetime] = _utc_now
    ) -> "SimulatorCA":
        """The CA stored in `directory`, generated there on first use."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        loaded = _load(directory, now())
        if loaded is None:
            loaded = _create(directory, now())
        ca_cert, ca_key, leaf_key = loaded
        return cls(directory, ca_cert, ca_key, leaf_key, now)

    @property
    def cert_path(self) -> Path:
        """The CA certificate (PEM) a client trusts to verify simulated printers."""
        return self._directory / CA_CERT_FILE

    @property
    def key_path(self) -> Path:
        """The shared leaf private key (PEM, mode 0600)."""
        return self._directory / LEAF_KEY_FILE

    def issue_leaf(self, serial: str, addresses: Sequence[str]) -> LeafFiles:
        """A leaf for `serial` with SANs for `addresses`, from the disk cache when still good."""
        if not serial:
            raise ValueError("a printer certificate needs a serial for its CN")
        sans = [_san(address) for address in addresses]
        digest = hashlib.sha256("\n".join((serial, *addresses)).encode()).hexdigest()[:32]
        cert_path = self._directory / LEAF_DIR / f"{digest}.pem"
        now = self._now()
        if not self._usable(cert_path, now):
            cert_path.parent.mkdir(mode=0o700, exist_ok=True)
            cert = self._sign_leaf(serial, sans, now)
            _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return LeafFiles(cert_path=cert_path, key_path=self.key_path)

    def _usable(self, cert_path: Path, now: datetime) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except FileNotFoundError:
            return False
        except ValueError:
            logger.warning("re-issuing unreadable cached certificate %s", cert_path)
            return False
        try:
            cert.verify_directly_issued_by(self._ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return (
            cert.public_key() == self._leaf_key.public_key()
            and cert.not_valid_before_utc <= now
            and now + _LEAF_RENEW_BEFORE < cert.not_valid_after_utc
        )

    def _sign_leaf(
        self, serial: str, sans: Sequence[x509.GeneralName], now: datetime
    ) -> x509.Certificate:
        ca_public = self._ca_key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=True,  # the plain-RSA suites encrypt to this key
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._leaf_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self._ca_key, hashes.SHA256())


def server_context(leaf: LeafFiles) -> ssl.SSLContext:
    """A TLS 1.2 server context for a simulated printer, with the suites slicers need."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Real printers speak TLS 1.2; 1.3 session tickets also break some FTPS clients
    # (protocol.md §12 rule 2).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(SERVER_CIPHERS)
    context.load_cert_chain(leaf.cert_path, leaf.key_path)
    return context


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        if not address or not address.isascii():
            raise ValueError(
                f"{address!r} is neither an IP address nor an ASCII host name"
            ) from None
        return x509.DNSName(address)


def _load(
    directory: Path, now: datetime
) -> tuple[x509.Certificate, rsa.RSAPrivateKey, rsa.RSAPrivateKey] | None:
    paths = [directory / name for name in (CA_CERT_FILE, CA_KEY_FILE, LEAF_KEY_FILE)]
    present = [path.exists() for path in paths]
    if not any(present):
        return None
    if not all(present):
        missing = ", ".join(path.name for path, ok in zip(paths, present, strict=True) if not ok)
        logger.warning(
            "simulator CA in %s is incomplete (no %s): creating a new one", directory, missing
        )
        return None
    try:
        ca_cert = x509.load_pem_x509_certificate(paths[0].read_bytes())
        ca_key = serialization.load_pem_private_key(paths[1].read_bytes(), password=None)
        leaf_key = serialization.load_pem_private_key(paths[2].read_bytes(), password=None)
    except ValueError:
        logger.warning("simulator CA in %s is unreadable: creating a new one", directory)
        return None
    if not isinstance(ca_key, rsa.RSAPrivateKey) or not isinstance(leaf_key, rsa.RSAPrivateKey):
        logger.warning("simulator CA in %s has non-RSA keys: creating a new one", directory)
        return None
    if ca_cert.public_key() != ca_key.public_key():
        logger.warning(
            "simulator CA in %s: key does not match certificate: creating a new one", directory
        )
        return None
    if ca_cert.not_valid_after_utc <= now + _LEAF_LIFETIME:
        logger.warning("simulator CA in %s expires soon: creating a new one", directory)
        return None
    return ca_cert, ca_key, leaf_key


def _create(
    directory: Path, now: datetime
) -> tuple[x509.Certificate, rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    logger.info("creating simulator CA in %s", directory)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bambufarm"),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Leaves of a previous CA would no longer verify: drop them before they are looked up.
    for stale in (directory / LEAF_DIR).glob("*.pem"):
        stale.unlink()
    _write_atomic(directory / CA_KEY_FILE, _private_pem(ca_key), mode=0o600)
    _write_atomic(directory / LEAF_KEY_FILE, _private_pem(leaf_key), mode=0o600)
    _write_atomic(
        directory / CA_CERT_FILE, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    return ca_cert, ca_key, leaf_key


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    # Write beside the target and rename, so a crash never leaves half a PEM behind; the mode is
    # set at creation, so a key is never readable by others, not even briefly.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb", closefd=False) as stream:
            stream.write(data)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
