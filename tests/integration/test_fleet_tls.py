"""Fleet TLS policy against simulated printers over real loopback handshakes."""

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from bambufarm.fleet.errors import TlsVerificationFailed
from bambufarm.fleet.tls import (
    PIN_STORE_FILE,
    PinStore,
    TlsMode,
    TlsPolicy,
    check_peer,
    client_context,
    fingerprint,
    handshake_failure,
)
from bambufarm.simulator.manifest import Manifest
from tests.support.sim import running_fleet

TIMEOUT = 10.0


@asynccontextmanager
async def handshake(manifest: Manifest, context: ssl.SSLContext) -> AsyncIterator[ssl.SSLObject]:
    """A TLS connection to the first printer's MQTT port; yields the client's SSL object."""
    printer = manifest.printers[0]
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(printer.host, printer.ports.mqtt, ssl=context), TIMEOUT
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        yield ssl_object
    finally:
        writer.close()
        await writer.wait_closed()


def verify_policy(manifest: Manifest) -> TlsPolicy:
    return TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))


async def test_verify_accepts_the_printer_signed_by_the_configured_ca(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as (_fleet, manifest):
        policy = verify_policy(manifest)
        context = client_context(policy)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert not context.check_hostname
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert not context.verify_flags & ssl.VERIFY_X509_STRICT
        async with handshake(manifest, context) as ssl_object:
            seen = check_peer(manifest.printers[0].serial, ssl_object, policy)
            der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        assert seen == fingerprint(der)


async def test_verify_refuses_a_printer_signed_by_another_ca(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path / "a") as (_fleet, manifest),
        running_fleet(tmp_path / "b") as (_other, other_manifest),
    ):
        assert manifest.ca_cert != other_manifest.ca_cert
        policy = verify_policy(other_manifest)  # trusts fleet b's CA, talks to fleet a
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            async with handshake(manifest, client_context(policy)):
                pytest.fail("the handshake should have failed")
    serial = manifest.printers[0].serial
    error = handshake_failure(serial, caught.value, policy)
    assert isinstance(error, TlsVerificationFailed)
    assert error.serial == serial
    message = str(error)
    assert serial in message
    assert "not trusted" in message
    assert other_manifest.ca_cert in message  # says which CA file to fix
    assert "tofu" in message


async def test_verify_refuses_a_certificate_for_another_serial(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as (_fleet, manifest):
        policy = verify_policy(manifest)
        actual = manifest.printers[0].serial
        expected = "01P00A999999999"
        async with handshake(manifest, client_context(policy)) as ssl_object:
            with pytest.raises(TlsVerificationFailed) as caught:
                check_peer(expected, ssl_object, policy)
    message = str(caught.value)
    assert caught.value.serial == expected
    assert f"certificate is for {actual!r}, expected CN {expected!r}" in message
    assert "IP address" in message
    assert manifest.printers[0].access_code not in message


async def test_tofu_pins_on_first_contact_and_then_detects_a_changed_certificate(
    tmp_path: Path,
) -> None:
    pin_file = tmp_path / "server" / PIN_STORE_FILE
    policy = TlsPolicy(TlsMode.TOFU, pin_store=pin_file)
    context = client_context(policy)
    assert context.verify_mode == ssl.CERT_NONE
    pins = PinStore(pin_file)
    async with running_fleet(tmp_path / "first") as (_fleet, manifest):
        serial = manifest.printers[0].serial
        async with handshake(manifest, context) as ssl_object:
            pinned = check_peer(serial, ssl_object, policy, pins)
        assert orjson.loads(pin_file.read_bytes()) == {"version": 1, "pins": {serial: pinned}}
        # A second contact with the same certificate passes, also after reloading the store.
        pins = PinStore(pin_file)
        async with handshake(manifest, context) as ssl_object:
            assert check_peer(serial, ssl_object, policy, pins) == pinned
    # Same serial, new simulator data dir: a new CA and so a different leaf certificate.
    async with running_fleet(tmp_path / "second") as (_fleet, manifest):
        assert manifest.printers[0].serial == serial
        async with handshake(manifest, context) as ssl_object:
            with pytest.raises(TlsVerificationFailed) as caught:
                check_peer(serial, ssl_object, policy, pins)
            new = fingerprint(ssl_object.getpeercert(binary_form=True) or b"")
        message = str(caught.value)
        assert serial in message
        assert f"pinned sha256 {pinned}, now {new}" in message
        assert str(pin_file) in message
        assert pins.get(serial) == pinned  # a mismatch never overwrites the pin
        # The operator's way out: forget the pin, and the next contact pins the new one.
        assert pins.forget(serial)
        assert not pins.forget(serial)
        async with handshake(manifest, context) as ssl_object:
            assert check_peer(serial, ssl_object, policy, pins) == new
    assert PinStore(pin_file).get(serial) == new


async def test_insecure_accepts_a_certificate_from_an_unknown_ca(tmp_path: Path) -> None:
    policy = TlsPolicy(TlsMode.INSECURE)
    async with (
        running_fleet(tmp_path) as (_fleet, manifest),
        handshake(manifest, client_context(policy)) as ssl_object,
    ):
        # Even the wrong serial passes: insecure means no check at all.
        assert len(check_peer("01P00A999999999", ssl_object, policy)) == 64


def test_verify_needs_a_ca_file_and_tofu_a_pin_store() -> None:
    with pytest.raises(ValueError, match="needs a CA file"):
        TlsPolicy(TlsMode.VERIFY)
    with pytest.raises(ValueError, match="needs a pin store"):
        TlsPolicy(TlsMode.TOFU)


def test_default_policy_verifies_with_a_ca_and_pins_without(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    assert TlsPolicy.default(tmp_path, ca).mode is TlsMode.VERIFY
    fallback = TlsPolicy.default(tmp_path)
    assert fallback.mode is TlsMode.TOFU
    assert fallback.pin_store == tmp_path / PIN_STORE_FILE


def test_an_unreadable_ca_file_says_what_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TlsVerificationFailed, match=r"cannot load printer CA .*nowhere\.pem"):
        client_context(TlsPolicy(TlsMode.VERIFY, ca_file=missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsVerificationFailed, match="PEM file"):
        client_context(TlsPolicy(TlsMode.VERIFY, ca_file=garbage))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": 2, "pins": {}}',
        b'{"version": 1, "pins": []}',
        b'{"version": 1, "pins": {"01P00A000000000": "abc"}}',
    ],
)
def test_a_damaged_pin_store_is_refused_not_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / PIN_STORE_FILE
    path.write_bytes(content)
    with pytest.raises(TlsVerificationFailed, match="damaged; restore it, or delete it"):
        PinStore(path)
    assert path.read_bytes() == content


def test_pin_store_writes_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "pins" / PIN_STORE_FILE
    pins = PinStore(path)
    assert len(pins) == 0
    for n in range(3):
        pins.pin(f"01P00A00000000{n}", f"{n:064x}")
    assert len(PinStore(path)) == 3
    assert [p.name for p in path.parent.iterdir()] == [PIN_STORE_FILE]


async def test_each_service_can_keep_its_own_pin(tmp_path: Path) -> None:
    pin_file = tmp_path / PIN_STORE_FILE
    policy = TlsPolicy(TlsMode.TOFU, pin_store=pin_file)
    pins = PinStore(pin_file)
    pins.pin("01P00A000000000/camera", "0" * 64)  # another service's different certificate
    async with (
        running_fleet(tmp_path / "sim") as (_fleet, manifest),
        handshake(manifest, client_context(policy)) as ssl_object,
    ):
        serial = manifest.printers[0].serial
        assert serial == "01P00A000000000"
        seen = check_peer(serial, ssl_object, policy, pins)
        with pytest.raises(TlsVerificationFailed, match=r"remove the pin '01P00A000000000/camera'"):
            check_peer(serial, ssl_object, policy, pins, pin_name=f"{serial}/camera")
    assert PinStore(pin_file).get(serial) == seen
