"""`Farm`: the printers of the database, live in a `Fleet`, kept in step with every change.

At `start()` every stored printer joins the fleet (access codes decrypted only into the fleet's
configuration); disabled ones join in state `disabled`. Adding, editing and removing go through
here so the database, the fleet and the audit log change together:

* add — the connection is tested first (`probe_printer`: TLS, login, a report) unless asked not
  to; the model comes from the request, else from the printer's own `get_version`, else from
  the discovery announcement, else from the serial's prefix; a printer from the discovery list
  needs only its serial and access code;
* edit — a changed address, port or access code is tested again before it is saved, then the
  printer's session restarts with it; enable/disable is an edit;
* remove — the session closes and the printer is forgotten.

Control actions (`command`) are timed for the metrics and audited with their outcome: who,
what, which printer, when, and what the printer answered. Membership changes of one serial are
serialised by a lock per serial, so two admins editing one printer get one result after the
other rather than a mixture.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry

from bambufarm.farm.files import PrinterFiles
from bambufarm.farm.history import RETRY_S, EventRecorder, wall_clock_of
from bambufarm.farm.metrics import FarmMetrics, FleetCollector
from bambufarm.farm.printer_specs import (
    FarmPrinter,
    ImportOutcome,
    ImportResult,
    PrinterEdit,
    PrinterSpec,
    changed_fields,
    edit_action,
    link_of,
    model_code,
    pick,
    printer_config,
    public_details,
    tls_policy,
)
from bambufarm.farm.probe import PROBE_TIMEOUT_S, ProbeResult, probe_printer
from bambufarm.fleet.commands import CommandResult
from bambufarm.fleet.config import PrinterConfig, SessionOptions
from bambufarm.fleet.discovery import DiscoveredPrinter, DiscoveryListener
from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.events import EventBus
from bambufarm.fleet.handle import PrinterHandle
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.uploads import Uploader, UploadResult
from bambufarm.protocol.errors import ModelError, ProtocolError
from bambufarm.protocol.models import model_for_serial
from bambufarm.settings import Settings
from bambufarm.storage.audit import record_action
from bambufarm.storage.db import Database
from bambufarm.storage.errors import (
    DuplicatePrinter,
    InvalidValue,
    PrinterNotFound,
    StorageError,
)
from bambufarm.storage.paging import MAX_LIMIT
from bambufarm.storage.printers import (
    NewPrinter,
    PrinterChanges,
    PrinterRecord,
    add_printer,
    list_printers,
    remove_printer,
    update_printer,
)
from bambufarm.storage.secrets import SecretBox
from bambufarm.storage.unset import UNSET

logger = logging.getLogger(__name__)

# Imports test printers this many at a time: a manifest of 1,000 printers is tested in about
# the time of 1,000 / 16 handshakes, without a thundering herd of TLS handshakes.
IMPORT_CONCURRENCY: Final = 16

Probe = Callable[[PrinterConfig], Awaitable[ProbeResult]]
T = TypeVar("T")


class Farm:
    """The farm's printers: stored, live in the fleet, tested, audited and measured."""

    def __init__(
        self,
        *,
        database: Database,
        secret_box: SecretBox,
        fleet: Fleet,
        files: PrinterFiles,
        registry: CollectorRegistry,
        wall_clock: Callable[[], datetime],
        discovery: DiscoveryListener | None = None,
        probe: Probe | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        import_concurrency: int = IMPORT_CONCURRENCY,
        history_retry_s: float = RETRY_S,
    ) -> None:
        self.database = database
        self._box = secret_box
        self.fleet = fleet
        self.bus = fleet.bus
        self.files = files
        self.discovery = discovery
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self.wall_time = wall_clock_of(monotonic, wall_clock)
        self._probe = probe or self._default_probe
        self._import_slots = asyncio.Semaphore(import_concurrency)
        self._history_retry_s = history_retry_s
        self._records: dict[str, PrinterRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._recorder: EventRecorder | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.metrics = FarmMetrics(registry)
        registry.register(FleetCollector(fleet, lambda: self._recorder))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        database: Database,
        secret_box: SecretBox,
        registry: CollectorRegistry,
        wall_clock: Callable[[], datetime],
    ) -> "Farm":
        """The farm a server runs: TLS trust, discovery port and data directory from settings."""
        fleet = Fleet(bus=EventBus(), tls=tls_policy(settings), uploader=Uploader())
        return cls(
            database=database,
            secret_box=secret_box,
            fleet=fleet,
            files=PrinterFiles(fleet, settings.data_dir / "tmp"),
            registry=registry,
            wall_clock=wall_clock,
            discovery=DiscoveryListener(port=settings.ssdp_port),
        )

    def __repr__(self) -> str:
        return f"Farm({len(self._records)} printers)"

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._stack is not None

    @property
    def history(self) -> EventRecorder | None:
        """The event history writer while the farm runs (its counters: written, lost)."""
        return self._recorder

    async def start(self) -> None:
        """Load every stored printer into the fleet, start the history writer and discovery."""
        if self._stack is not None:
            return
        self.files.clean_scratch()
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.fleet)
            try:
                self._join(await self._load_records())
            except StorageError as err:
                # The API still answers (503s that say why); the printers join when it is back.
                logger.warning(
                    "printers not loaded: %s; retrying every %g s", err, self._history_retry_s
                )
                self._loader = asyncio.create_task(self._load_later(), name="load-printers")
                stack.push_async_callback(self._stop_loader)
            self._recorder = EventRecorder(
                self.bus, self.database, wall_time=self.wall_time, retry_s=self._history_retry_s
            )
            self._recorder_task = asyncio.create_task(self._record_events(), name="event-history")
            stack.push_async_callback(self._stop_recorder)
            if self.discovery is not None:
                await self.discovery.start()
                stack.push_async_callback(self.discovery.close)
            self._stack = stack.pop_all()
        logger.info("farm started with %d printer(s)", len(self._records))

    def _join(self, records: list[PrinterRecord]) -> None:
        """Put loaded printers into the fleet (any added through the API meanwhile stay)."""
        for record in records:
            if record.serial not in self._records:
                self._records[record.serial] = record
                self.fleet.add(self._config(record), enabled=record.enabled)

    async def _load_later(self) -> None:
        """Load the printers once the database answers (it was down at start)."""
        while True:
            await asyncio.sleep(self._history_retry_s)
            try:
                records = await self._load_records()
            except StorageError as err:
                logger.debug("printers still not loaded: %s", err)
                continue
            except Exception:
                # The task's boundary: without it the farm would silently stay empty.
                logger.exception("loading the printers failed; the farm stays without them")
                return
            self._join(records)
            logger.info("the database is back: %d printer(s) loaded", len(records))
            return

    async def _stop_loader(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.cancel()
            await asyncio.wait([loader])

    async def stop(self) -> None:
        """Close every printer session, store the last events, stop the FTPS workers."""
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            uploader = self.fleet.uploader
            if uploader is not None:
                await uploader.aclose()
            await self.files.aclose()

    async def flush_history(self) -> None:
        """Wait until the events published so far are in the database (tests, shutdown)."""
        if self._recorder is not None:
            await self._recorder.flush()

    async def _load_records(self) -> list[PrinterRecord]:
        records: list[PrinterRecord] = []
        async with self.database.session(readonly=True) as session:
            while True:
                page = await list_printers(session, offset=len(records), limit=MAX_LIMIT)
                records.extend(page.items)
                if len(records) >= page.total or not page.items:
                    return records

    async def _record_events(self) -> None:
        recorder = self._recorder
        if recorder is None:
            return
        try:
            await recorder.run()
        except Exception:
            # The task's boundary: the fleet keeps running without a history until restart.
            logger.exception("the event history writer failed; events are no longer stored")

    async def _stop_recorder(self) -> None:
        task, self._recorder_task = self._recorder_task, None
        if self._recorder is not None:
            self._recorder.close()
        if task is not None:
            await task

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, serial: object) -> bool:
        return serial in self._records

    def printers(self) -> list[FarmPrinter]:
        """Every printer, by name then serial."""
        records = sorted(self._records.values(), key=lambda r: (r.name.lower(), r.serial))
        return [FarmPrinter(r, self.fleet.snapshot(r.serial)) for r in records]

    def printer(self, serial: str) -> FarmPrinter:
        """One printer; `PrinterNotFound` if the farm has none with this serial."""
        return FarmPrinter(self._record(serial), self.fleet.snapshot(serial))

    def handle(self, serial: str) -> PrinterHandle:
        """The fleet handle of a printer (commands, uploads)."""
        self._record(serial)
        return self.fleet.get(serial)

    def discovered(self) -> list[DiscoveredPrinter]:
        """Printers announcing themselves on the LAN that are not in the farm yet."""
        if self.discovery is None:
            return []
        return self.discovery.discovered(exclude=self._records.keys())

    def _record(self, serial: str) -> PrinterRecord:
        try:
            return self._records[serial]
        except KeyError:
            raise PrinterNotFound(f"no printer with serial {serial[:32]!r}") from None

    # ------------------------------------------------------------------ membership

    async def add(self, spec: PrinterSpec, *, actor: str, test: bool = True) -> FarmPrinter:
        """Test the connection (unless `test` is False), store the printer, start its session."""
        serial = spec.serial.strip()
        async with self._lock(serial):
            if serial in self._records:
                raise DuplicatePrinter(f"a printer with serial {serial} is already added")
            announced = self._announced(serial)
            host = spec.host if spec.host is not None else self._host_from(announced, serial)
            config = printer_config(
                serial=serial,
                host=host,
                access_code=spec.access_code,
                name=spec.name,
                model=model_code(spec.model) if spec.model else "",
                mqtt_port=spec.mqtt_port,
                ftps_port=spec.ftps_port,
            )
            probed = await self._probe(config) if test else None
            model = self._resolve_model(spec.model, probed, announced, serial)
            name = spec.name.strip() or (announced.name if announced is not None else "")
            now = self._wall_clock()
            new = NewPrinter(
                serial=serial,
                name=name,
                model_code=model,
                host=config.host,
                access_code=spec.access_code,
                mqtt_port=spec.mqtt_port,
                ftps_port=spec.ftps_port,
                camera_port=spec.camera_port,
                enabled=spec.enabled,
            )
            async with self.database.session() as session:
                record = await add_printer(session, self._box, new, now=now)
                await record_action(
                    session,
                    actor,
                    "printer.add",
                    printer_serial=serial,
                    details=public_details(record, tested=probed is not None),
                    at=now,
                )
            self._records[serial] = record
            self.fleet.add(self._config(record), enabled=record.enabled)
            logger.info("printer %s added by %s", serial, actor)
            return self.printer(serial)

    async def import_printers(
        self, specs: Sequence[PrinterSpec], *, actor: str, test: bool = True
    ) -> list[ImportResult]:
        """Add many printers, testing several at once; one result per printer, in order."""

        async def one(spec: PrinterSpec) -> ImportResult:
            serial = spec.serial.strip()
            if serial in self._records:
                return ImportResult(serial, ImportOutcome.EXISTS, "already in the farm; unchanged")
            async with self._import_slots:
                try:
                    added = await self.add(spec, actor=actor, test=test)
                except DuplicatePrinter as err:
                    return ImportResult(serial, ImportOutcome.EXISTS, str(err))
                except (FleetError, StorageError, ProtocolError) as err:
                    return ImportResult(serial, ImportOutcome.FAILED, str(err))
            return ImportResult(serial, ImportOutcome.ADDED, "connection tested, saved", added)

        return list(await asyncio.gather(*(one(spec) for spec in specs)))

    async def update(
        self, serial: str, edit: PrinterEdit, *, actor: str, test: bool = True
    ) -> FarmPrinter:
        """Apply `edit`; a changed address, port or code is tested first (unless `test` is off)."""
        async with self._lock(serial):
            record = self._record(serial)
            old = self._config(record)
            config = printer_config(
                serial=serial,
                host=pick(edit.host, old.host),
                access_code=pick(edit.access_code, old.access_code),
                name=pick(edit.name, record.name),
                model=model_code(edit.model) if isinstance(edit.model, str) else old.model,
                mqtt_port=pick(edit.mqtt_port, record.mqtt_port),
                ftps_port=pick(edit.ftps_port, record.ftps_port),
            )
            link_changed = link_of(config) != link_of(old)
            enabled = pick(edit.enabled, record.enabled)
            if test and link_changed and enabled:
                await self._probe(config)
            changes = PrinterChanges(
                name=edit.name,
                model_code=config.model if isinstance(edit.model, str) else UNSET,
                host=edit.host,
                access_code=edit.access_code,
                mqtt_port=edit.mqtt_port,
                ftps_port=edit.ftps_port,
                camera_port=edit.camera_port,
                enabled=edit.enabled,
            )
            now = self._wall_clock()
            async with self.database.session() as session:
                updated = await update_printer(session, self._box, serial, changes, now=now)
                await record_action(
                    session,
                    actor,
                    edit_action(record, updated),
                    printer_serial=serial,
                    details={"changed": changed_fields(edit)},
                    at=now,
                )
            self._records[serial] = updated
            await self._apply(record, updated)
            return self.printer(serial)

    async def remove(self, serial: str, *, actor: str) -> None:
        """Close the printer's session and delete it (its history stays)."""
        async with self._lock(serial):
            record = self._record(serial)
            now = self._wall_clock()
            async with self.database.session() as session:
                await remove_printer(session, serial)
                await record_action(
                    session,
                    actor,
                    "printer.remove",
                    printer_serial=serial,
                    details={"name": record.name, "host": record.host},
                    at=now,
                )
            del self._records[serial]
            await self.fleet.remove(serial)
        self._locks.pop(serial, None)
        logger.info("printer %s removed by %s", serial, actor)

    async def _apply(self, before: PrinterRecord, after: PrinterRecord) -> None:
        """Bring the fleet in line with an edited record."""
        config = self._config(after)
        if before.enabled and not after.enabled:
            await self.fleet.disable(after.serial)
        if config != self._config(before):
            await self.fleet.update(config)
        if after.enabled and not before.enabled:
            await self.fleet.enable(after.serial)

    # ------------------------------------------------------------------ control

    async def command(
        self,
        serial: str,
        name: str,
        send: Callable[[PrinterHandle], Awaitable[CommandResult]],
        *,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> CommandResult:
        """Send a command through `send(handle)`, time it, audit who sent it and what came back."""
        handle = self.handle(serial)
        started = self._monotonic()
        result = await send(handle)
        self.metrics.command(name, result, self._monotonic() - started)
        await self.audit(
            actor,
            f"printer.{name}",
            serial,
            {
                **(details or {}),
                "status": result.status.value,
                "reason": result.reason,
                "sent": result.sent,
            },
        )
        return result

    async def audit(
        self, actor: str, action: str, serial: str | None, details: Mapping[str, Any]
    ) -> None:
        """Record an action already done; a database outage is logged, never hides the result."""
        try:
            async with self.database.session() as session:
                await record_action(
                    session,
                    actor,
                    action,
                    printer_serial=serial,
                    details=details,
                    at=self._wall_clock(),
                )
        except StorageError as err:
            # The action happened: its result must reach the caller. The log keeps the record.
            logger.warning(
                "audit entry not stored (%s): %s %s on %s %s", err, actor, action, serial, details
            )

    async def upload(
        self,
        serial: str,
        local: Path | bytes,
        remote: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> UploadResult:
        """Upload a file to a printer over FTPS, counted in the upload metrics."""
        handle = self.handle(serial)
        try:
            result = await handle.upload(local, remote, progress)
        except FleetError:
            self.metrics.upload(None)
            raise
        self.metrics.upload(result)
        return result

    # ------------------------------------------------------------------ internals

    def _lock(self, serial: str) -> asyncio.Lock:
        return self._locks.setdefault(serial, asyncio.Lock())

    def _config(self, record: PrinterRecord) -> PrinterConfig:
        return printer_config(
            serial=record.serial,
            host=record.host,
            access_code=record.access_code(self._box),
            name=record.name,
            model=record.model_code,
            mqtt_port=record.mqtt_port,
            ftps_port=record.ftps_port,
        )

    async def _default_probe(self, config: PrinterConfig) -> ProbeResult:
        options: SessionOptions = self.fleet.session_options
        return await probe_printer(
            config,
            policy=self.fleet.tls,
            options=options,
            timeout=min(options.connect_timeout, PROBE_TIMEOUT_S),
        )

    def _announced(self, serial: str) -> DiscoveredPrinter | None:
        if self.discovery is None:
            return None
        return next((p for p in self.discovery.discovered() if p.serial == serial), None)

    @staticmethod
    def _host_from(announced: DiscoveredPrinter | None, serial: str) -> str:
        if announced is None:
            raise InvalidValue(
                f"printer {serial} is not in the discovery list; give its IP address (host)"
            )
        return announced.address

    @staticmethod
    def _resolve_model(
        asked: str | None,
        probed: ProbeResult | None,
        announced: DiscoveredPrinter | None,
        serial: str,
    ) -> str:
        if asked:
            return model_code(asked)
        if probed is not None and probed.model_code:
            return probed.model_code
        if announced is not None and announced.model_name:
            return model_code(announced.model_code)
        try:
            return model_for_serial(serial).code
        except ModelError:
            raise InvalidValue(
                f"the model of printer {serial} cannot be told from its serial and the printer "
                "did not say; give the model (e.g. P1S)"
            ) from None


__all__ = [
    "Farm",
    "FarmPrinter",
    "ImportOutcome",
    "ImportResult",
    "PrinterEdit",
    "PrinterSpec",
    "model_code",
    "tls_policy",
]
