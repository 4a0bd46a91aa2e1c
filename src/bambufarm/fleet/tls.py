"""How the fleet trusts a printer's TLS certificate (design.md §7, protocol.md §1.1).

A printer presents a leaf with `CN=<serial>` and no DNS/IP name, issued under Bambu's private
CA. Three policies:

* `verify` — the handshake verifies the chain against a configured CA file, and `check_peer`
  then requires CN == serial (hostname matching is off: nothing in the certificate could match
  a LAN address).
* `tofu` — trust on first use: the chain is not verified (for printers whose intermediate is in
  no public bundle), but the leaf's SHA-256 fingerprint is pinned on first contact and must
  match on every later one.
* `insecure` — accept anything; only when asked for, and the caller logs a warning once.

Build one context per policy and share it across sessions: each SSLContext holds its own copy
of the CA store, which 1,000 sessions should not multiply.
"""

import hashlib
import logging
import os
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import orjson

from bambufarm.fleet.errors import TlsVerificationFailed

logger = logging.getLogger(__name__)

PIN_STORE_FILE = "tls_pins.json"
_PIN_STORE_VERSION = 1
_FINGERPRINT_HEX_LENGTH = 64


class TlsMode(StrEnum):
    """How a printer's certificate is trusted."""

    VERIFY = "verify"
    TOFU = "tofu"
    INSECURE = "insecure"


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """The TLS trust settings for printer connections."""

    mode: TlsMode = TlsMode.VERIFY
    ca_file: Path | None = None  # PEM bundle of the printers' CAs (verify mode)
    pin_store: Path | None = None  # JSON file of pinned fingerprints (tofu mode)

    def __post_init__(self) -> None:
        if self.mode is TlsMode.VERIFY and self.ca_file is None:
            raise ValueError(
                "TLS mode 'verify' needs a CA file with the printers' CA certificates; "
                "set one, or choose 'tofu' to pin each printer's certificate on first contact"
            )
        if self.mode is TlsMode.TOFU and self.pin_store is None:
            raise ValueError("TLS mode 'tofu' needs a pin store file to remember certificates")

    @classmethod
    def default(cls, data_dir: Path, ca_file: Path | None = None) -> "TlsPolicy":
        """Verify against `ca_file` when one is given, else trust on first use in `data_dir`."""
        if ca_file is not None:
            return cls(TlsMode.VERIFY, ca_file=ca_file, pin_store=data_dir / PIN_STORE_FILE)
        return cls(TlsMode.TOFU, pin_store=data_dir / PIN_STORE_FILE)


def client_context(policy: TlsPolicy) -> ssl.SSLContext:
    """A client SSLContext for printer connections under `policy` (TLS 1.2 or newer)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Printer leaves carry no DNS or IP SAN: hostname matching could never succeed, so
    # `check_peer` checks CN == serial instead.
    context.check_hostname = False
    if policy.mode is not TlsMode.VERIFY:
        context.verify_mode = ssl.CERT_NONE
        return context
    context.verify_mode = ssl.CERT_REQUIRED
    # Python 3.13 turns on VERIFY_X509_STRICT, which rejects Bambu's CA for lacking a key-usage
    # extension (protocol.md §1.1). Clearing it here is a no-op on 3.11/3.12, where it is off.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    try:
        context.load_verify_locations(cafile=policy.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise TlsVerificationFailed(
            f"cannot load printer CA certificates from {policy.ca_file}: {err}; "
            "point the TLS CA setting at a PEM file holding the printers' CA certificates"
        ) from err
    return context


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as lowercase hex."""
    return hashlib.sha256(der).hexdigest()


class PinStore:
    """Pinned leaf fingerprints by serial, kept in a JSON file rewritten atomically."""

    def __init__(self, path: Path) -> None:
        """Load the pins in `path` (none yet when the file does not exist)."""
        self.path = path
        self._pins = _load_pins(path)

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, name: str) -> str | None:
        """The pinned fingerprint for `name` (a serial), or None before first contact."""
        return self._pins.get(name)

    def pin(self, name: str, value: str) -> None:
        """Remember `value` as the fingerprint of `name` and save the file."""
        self._pins[name] = value
        self._save()

    def forget(self, name: str) -> bool:
        """Drop the pin for `name` (a replaced or reset printer); True if there was one."""
        if self._pins.pop(name, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        # A pin is written once per printer, ever. Pinning 1,000 printers one by one rewrote
        # the file 1,000 times in ~0.3 s in all here, under the cost of their handshakes.
        body = {"version": _PIN_STORE_VERSION, "pins": dict(sorted(self._pins.items()))}
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self.path)


def check_peer(
    serial: str,
    ssl_object: ssl.SSLObject | ssl.SSLSocket,
    policy: TlsPolicy,
    pins: PinStore | None = None,
    *,
    pin_name: str | None = None,
) -> str:
    """Check the printer's certificate after the handshake; returns its fingerprint.

    `pin_name` keys the pin when a printer has several TLS services that may present different
    certificates (the camera on 6000); it defaults to the serial (MQTT, FTPS).
    Raises TlsVerificationFailed when the certificate is not the one this policy trusts.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        raise TlsVerificationFailed(
            f"printer {serial} sent no TLS certificate: is something else listening on its "
            "address? Check the printer's IP address",
            serial=serial,
        )
    seen = fingerprint(der)
    match policy.mode:
        case TlsMode.VERIFY:
            _check_common_name(serial, ssl_object)
        case TlsMode.TOFU:
            if pins is None:
                raise ValueError("TLS mode 'tofu' needs the PinStore to check against")
            _check_pin(serial, pin_name or serial, seen, pins)
        case TlsMode.INSECURE:
            logger.debug("printer %s: TLS certificate accepted unverified (insecure)", serial)
    return seen


def _check_common_name(serial: str, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> None:
    # With CERT_REQUIRED the handshake already verified the chain; getpeercert() then decodes
    # the subject for us.
    subject = (ssl_object.getpeercert() or {}).get("subject", ())
    names = [
        str(attr[1])
        for rdn in subject
        if isinstance(rdn, tuple)
        for attr in rdn
        if isinstance(attr, tuple) and attr[0] == "commonName"
    ]
    if names != [serial]:
        seen = ", ".join(repr(name) for name in names) or "no CN"
        raise TlsVerificationFailed(
            f"printer {serial}: certificate is for {seen}, expected CN {serial!r}; the address "
            "may belong to another printer — check the printer's IP address and serial",
            serial=serial,
        )


def _check_pin(serial: str, name: str, seen: str, pins: PinStore) -> None:
    pinned = pins.get(name)
    if pinned is None:
        pins.pin(name, seen)
        logger.info("printer %s: pinned TLS certificate sha256 %s on first contact", name, seen)
        return
    if pinned != seen:
        raise TlsVerificationFailed(
            f"printer {serial}: TLS certificate changed since it was pinned (pinned sha256 "
            f"{pinned}, now {seen}); if the printer was replaced or reset, remove the pin "
            f"{name!r} from {pins.path} to trust the new certificate, otherwise something may be "
            "intercepting the connection",
            serial=serial,
        )


def handshake_failure(
    serial: str, err: ssl.SSLError | ssl.CertificateError, policy: TlsPolicy
) -> TlsVerificationFailed:
    """A TlsVerificationFailed explaining a failed handshake (raise it `from err`)."""
    detail = getattr(err, "verify_message", None) or getattr(err, "reason", None) or str(err)
    if policy.mode is TlsMode.VERIFY and isinstance(err, ssl.SSLCertVerificationError):
        return TlsVerificationFailed(
            f"printer {serial}: certificate not trusted ({detail}); add the printer's CA to "
            f"{policy.ca_file}, or use TLS mode 'tofu' to pin its certificate on first contact",
            serial=serial,
        )
    return TlsVerificationFailed(
        f"printer {serial}: TLS handshake failed ({detail})", serial=serial
    )


def _load_pins(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise TlsVerificationFailed(f"cannot read TLS pin store {path}: {err.strerror}") from err
    # A damaged store must not be replaced silently: that would re-trust every printer.
    problem = f"TLS pin store {path} is damaged; restore it, or delete it to re-pin every printer"
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise TlsVerificationFailed(f"{problem} (not JSON: {err})") from err
    pins = body.get("pins") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("version") != _PIN_STORE_VERSION:
        raise TlsVerificationFailed(f"{problem} (not a version {_PIN_STORE_VERSION} pin store)")
    if not isinstance(pins, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) == _FINGERPRINT_HEX_LENGTH
        for k, v in pins.items()
    ):
        raise TlsVerificationFailed(f"{problem} (pins must map serials to SHA-256 hex)")
    return dict(pins)
