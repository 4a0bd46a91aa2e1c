"""Test a printer's connection before it is saved: TLS, login, subscription, a first report.

`probe_printer(config, ...)` runs one `PrinterSession` on a private event bus until the printer
has sent a report (and, if it comes within a moment, its `get_version` answer, which names the
model), then closes it. Failures are the fleet's typed errors with a reason a person can act on:

* `AuthFailed` — the printer refused the access code;
* `TlsVerificationFailed` — the certificate is not one this server trusts (CA, CN, pin);
* `PrinterOffline` — unreachable (refused, timed out), or logged in but silent: a wrong serial
  number subscribes to a topic nobody publishes on.

Trust on first use: the probe must not pin a certificate for a printer that is then not saved,
and must not be fooled when a pin exists. It checks against a throwaway pin store seeded with
the real store's pin for this serial; the fleet pins on its own first contact after saving.
"""

import asyncio
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from bambufarm.fleet.config import PrinterConfig, SessionOptions
from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.errors import FleetError, PrinterOffline
from bambufarm.fleet.events import EventBus, Subscription
from bambufarm.fleet.session import PrinterSession
from bambufarm.fleet.tls import PinStore, TlsMode, TlsPolicy
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_product_name

logger = logging.getLogger(__name__)

# A printer on the LAN answers within a second; 10 s covers a busy Wi-Fi and a slow TLS
# handshake on an A1 mini, and is what the fleet waits for a connection too.
PROBE_TIMEOUT_S: Final = 10.0
# get_version is asked for before pushall and answered within ~100 ms; after the first report
# the probe waits this much longer for it before saving without a firmware-reported model.
FIRMWARE_GRACE_S: Final = 2.0
# How long a closing session gets to say goodbye before its task is cancelled.
CLOSE_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a successful probe learnt about the printer."""

    serial: str
    model_code: str | None  # from get_version's product name; None when it did not say
    firmware: str | None
    developer_mode: bool | None
    seconds: float


async def probe_printer(
    config: PrinterConfig,
    *,
    policy: TlsPolicy,
    options: SessionOptions | None = None,
    timeout: float = PROBE_TIMEOUT_S,  # noqa: ASYNC109 - a deadline for the whole probe
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Connect to the printer, wait for a report, disconnect; a fleet error says what failed."""
    session_options = replace(
        options or SessionOptions(), connect_timeout=timeout, pushall_every=None
    )
    with tempfile.TemporaryDirectory(prefix="bambufarm-probe-") as scratch:
        pins = _probe_pins(policy, config.serial, Path(scratch))
        bus = EventBus()
        # The session's log lines name it as a test, not as the printer coming online.
        label = f"{config.name or 'printer'}, connection test"
        session = PrinterSession(
            session_options.session_config(replace(config, name=label)),
            bus=bus,
            tls_policy=policy,
            pins=pins,
            clock=clock,
            rng=random.Random(),  # noqa: S311 - client ids, not secrets
        )
        events = bus.subscribe(maxsize=64)
        started = clock()
        runner = asyncio.create_task(session.run(), name=f"probe-{config.serial}")
        try:
            await _until_reported(session, events, runner, timeout, clock)
        finally:
            events.close()
            await _close(session, runner)
    state = session.state
    return ProbeResult(
        serial=config.serial,
        model_code=_model_code(state.firmware.product_name),
        firmware=state.firmware.version,
        developer_mode=state.developer_mode,
        seconds=clock() - started,
    )


def _probe_pins(policy: TlsPolicy, serial: str, scratch: Path) -> PinStore | None:
    if policy.mode is not TlsMode.TOFU or policy.pin_store is None:
        return None
    pins = PinStore(scratch / "pins.json")
    known = PinStore(policy.pin_store).get(serial)
    if known is not None:
        pins.pin(serial, known)
    return pins


async def _until_reported(
    session: PrinterSession,
    events: Subscription,
    runner: "asyncio.Task[None]",
    timeout: float,  # noqa: ASYNC109 - the probe's deadline, passed down
    clock: Callable[[], float],
) -> None:
    """Return once the printer reported (and named its model, or the grace passed)."""
    serial = session.serial
    deadline = clock() + timeout
    reported_at: float | None = None
    while True:
        if runner.done():
            # run() only ends by itself with the typed reason the link failed.
            runner.result()
            raise PrinterOffline(f"printer {serial}: the connection closed during the test")
        state = session.state
        if state.report_count and reported_at is None:
            reported_at = clock()
        if reported_at is not None and (
            state.firmware.product_name is not None or clock() >= reported_at + FIRMWARE_GRACE_S
        ):
            return
        until = deadline if reported_at is None else min(deadline, reported_at + FIRMWARE_GRACE_S)
        if clock() >= until:
            raise _silent(session, timeout)
        waiter = asyncio.ensure_future(events.__anext__())
        try:
            await asyncio.wait(
                {waiter, runner}, timeout=until - clock(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not waiter.done():
                waiter.cancel()
                await asyncio.wait([waiter])
            elif not waiter.cancelled():
                # Only the wake-up matters; retrieving the outcome keeps asyncio quiet.
                waiter.exception()


def _silent(session: PrinterSession, timeout: float) -> PrinterOffline:
    serial = session.serial
    link = session.connection
    if link.state is ConnectionState.ONLINE:
        return PrinterOffline(
            f"printer {serial}: logged in, but no report came within {timeout:g} s; check the "
            "serial number (a printer reports only on its own serial's topic)",
            serial=serial,
        )
    return PrinterOffline(
        f"printer {serial}: no connection within {timeout:g} s ({link.reason}); check the "
        "address and the port, and that the printer is on and in LAN mode",
        serial=serial,
    )


async def _close(session: PrinterSession, runner: "asyncio.Task[None]") -> None:
    """Stop the session politely, cancel it if it does not end, and collect its outcome."""
    if not runner.done():
        await session.stop()
        await asyncio.wait([runner], timeout=CLOSE_TIMEOUT_S)
    if not runner.done():
        runner.cancel()
        await asyncio.wait([runner])
    if runner.cancelled():
        return
    error = runner.exception()
    if error is not None and not isinstance(error, FleetError):
        logger.debug("printer %s: probe session ended with %r", session.serial, error)


def _model_code(product_name: str | None) -> str | None:
    if not product_name:
        return None
    try:
        return model_by_product_name(product_name).code
    except ModelError:
        return None
