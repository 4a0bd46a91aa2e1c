"""The composition root: every long-lived service, built once from the settings and passed down.

`open_services(settings)` opens the database (migrating it), loads the key for secrets at rest
and builds the password hasher and the login limiter; `Services.start()` starts background
work (session pruning, the farm, the queue) and `Services.stop()` ends it in reverse order
and closes the database. `running_services()` does all three around a block.

Nothing here knows HTTP: `bambufarm.api.create_app(services)` serves these objects, and the
CLI, the demo and the tests build them the same way.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final

from prometheus_client import CollectorRegistry

from bambufarm import __version__
from bambufarm.auth.bootstrap import ensure_admin
from bambufarm.auth.passwords import Passwords
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.auth.sessions import prune_sessions
from bambufarm.farm.service import Farm
from bambufarm.farm.telemetry_history import TemperatureHistory
from bambufarm.fleet.camera import CameraHub
from bambufarm.fleet.tls import PinStore, TlsMode, TlsPolicy
from bambufarm.jobs.closing import RetryPolicy
from bambufarm.jobs.library import Library
from bambufarm.jobs.plate import PlateGate
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.queue_metrics import QueueMetrics
from bambufarm.jobs.runner import Dispatcher, DispatcherOptions
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.jobs.watchdog import StageLimits
from bambufarm.settings import Settings
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.secrets import SecretBox, load_or_create_key

logger = logging.getLogger(__name__)

# Sessions last 12 h; deleting the expired ones hourly keeps the table at about one shift of
# sign-ins without a write every request.
PRUNE_INTERVAL_S: Final = 3600.0


def utc_now() -> datetime:
    """The wall clock, timezone-aware (UTC): the default clock of the services."""
    return datetime.now(UTC)


class Services:
    """Everything the server runs on, built by `open_services`; one per server process."""

    __slots__ = (
        "_prune_interval_s",
        "_pruner",
        "camera",
        "clock",
        "database",
        "dispatcher",
        "farm",
        "library",
        "limiter",
        "metrics",
        "passwords",
        "plates",
        "queue",
        "queue_metrics",
        "secret_box",
        "settings",
        "temperatures",
        "version",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        secret_box: SecretBox,
        passwords: Passwords,
        limiter: LoginLimiter,
        metrics: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utc_now,
        prune_interval_s: float = PRUNE_INTERVAL_S,
        farm: Farm | None = None,
        dispatcher_options: DispatcherOptions | None = None,
        camera: CameraHub | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.secret_box = secret_box
        self.passwords = passwords
        self.limiter = limiter
        # One registry per process, never prometheus_client's global one: two servers in one
        # test process must not share (or collide on) their counters.
        self.metrics = metrics if metrics is not None else CollectorRegistry(auto_describe=True)
        self.clock = clock
        self.farm = (
            farm
            if farm is not None
            else Farm.from_settings(
                settings,
                database=database,
                secret_box=secret_box,
                registry=self.metrics,
                wall_clock=clock,
            )
        )
        # The print queue: sliced files, jobs, the plate gate, and the dispatcher that starts
        # jobs on the farm's printers; the queue and the gate wake the dispatcher.
        self.library = Library(settings.data_dir / "library", database, clock=clock)
        wakeup = Wakeup()
        self.queue = JobQueue(database, wakeup, clock=clock)
        self.plates = PlateGate(database, wakeup, clock=clock)
        self.dispatcher = Dispatcher(
            database=database,
            fleet=self.farm.fleet,
            library=self.library,
            wakeup=wakeup,
            options=dispatcher_options or dispatcher_options_of(settings),
            wall_clock=clock,
        )
        self.queue_metrics = QueueMetrics(self.metrics, lambda: self.dispatcher.stats)
        # The printer page: the last hour of temperatures, and the cameras, one upstream each.
        self.temperatures = TemperatureHistory.of_fleet(self.farm.fleet)
        self.camera = camera if camera is not None else camera_hub(self.farm.fleet.tls)
        self.version = __version__
        self._prune_interval_s = prune_interval_s
        self._pruner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Services(database={self.database.where!r})"

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._pruner is not None

    async def first_admin_password(self) -> str | None:
        """Create the first admin if there are no users; its random password, shown once."""
        async with self.database.session() as session:
            return await ensure_admin(session, self.passwords, now=self.clock())

    async def start(self) -> None:
        """Start background work; idempotent."""
        if self._pruner is None:
            self._pruner = asyncio.create_task(self._prune_forever(), name="prune-sessions")
            # Before the printers, so their first reports are sampled.
            self.temperatures.start()
            await self.farm.start()
            # After the printers: jobs a crash left on them are recognised from their reports.
            await self.dispatcher.start()

    async def stop(self) -> None:
        """Stop background work and close the database; safe to call twice."""
        pruner, self._pruner = self._pruner, None
        try:
            # The dispatcher before the printers it drives; printers keep printing meanwhile.
            await self.dispatcher.stop()
            await self.camera.close()
            await self.temperatures.close()
            # Printers first: their last events are written while the database is still open.
            await self.farm.stop()
        finally:
            if pruner is not None:
                pruner.cancel()
                # The task only ends by this cancellation: its loop logs and survives its errors.
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            await self.database.aclose()

    async def prune_sessions_once(self) -> int:
        """Delete expired login sessions now; returns how many went."""
        async with self.database.session() as session:
            return await prune_sessions(session, now=self.clock())

    async def _prune_forever(self) -> None:
        while True:
            try:
                pruned = await self.prune_sessions_once()
            except StorageError as err:
                # The database being down is the operator's to fix; the next round retries.
                logger.warning("expired sessions not pruned: %s", err)
            except Exception:
                logger.exception("pruning expired sessions failed; retrying next round")
            else:
                if pruned:
                    logger.info("pruned %d expired login session(s)", pruned)
            await asyncio.sleep(self._prune_interval_s)


def camera_hub(policy: TlsPolicy) -> CameraHub:
    """The camera hub, trusting printers as the fleet does (its own pin file under TOFU)."""
    pins = None
    if policy.mode is TlsMode.TOFU and policy.pin_store is not None:
        # Two PinStores on one file would each rewrite it from their own copy and lose the
        # other's pins; camera pins (`<serial>/camera`) live in a file of their own.
        pins = PinStore(policy.pin_store.with_name(f"camera_{policy.pin_store.name}"))
    return CameraHub(policy, pins)


async def open_services(
    settings: Settings,
    *,
    passwords: Passwords | None = None,
    limiter: LoginLimiter | None = None,
    clock: Callable[[], datetime] = utc_now,
    prune_interval_s: float = PRUNE_INTERVAL_S,
) -> Services:
    """Build the services from the settings: key, database (migrated), hasher, limiter."""
    configured_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    secret_box = SecretBox(load_or_create_key(settings.data_dir, configured_key))
    database = await open_database(settings.database_url)
    return Services(
        settings=settings,
        database=database,
        secret_box=secret_box,
        passwords=passwords if passwords is not None else Passwords(),
        limiter=limiter if limiter is not None else LoginLimiter(),
        clock=clock,
        prune_interval_s=prune_interval_s,
    )


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings,
    *,
    passwords: Passwords | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[Services]:
    """Open and start the services for the block; stop and close them after it."""
    services = await open_services(settings, passwords=passwords, clock=clock)
    try:
        await services.start()
        yield services
    finally:
        await services.stop()


def dispatcher_options_of(settings: Settings) -> DispatcherOptions:
    """The queue's behaviour as the settings ask (`BAMBUFARM_QUEUE_*`), defaults elsewhere."""
    return DispatcherOptions(
        limits=StageLimits(prepare_s=settings.queue_prepare_timeout_s),
        retry=RetryPolicy(
            max_attempts=settings.queue_max_attempts,
            retry_print_failures=settings.queue_retry_print_failures,
        ),
        prestage=settings.queue_prestage,
        color_tolerance=settings.queue_color_tolerance,
        sd_cleanup=settings.queue_sd_cleanup,
    )
