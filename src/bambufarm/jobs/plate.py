"""The plate-clear gate: after a print ends, its printer gets no job until the plate is clear.

Closed by the dispatcher when a print ends (finished or failed, ours or one started at the
printer), opened by a person (API, UI, `bambufarm clear <printer>`) or, after a finished print,
by the printer's own ejection routine when its auto-clear is on. Opening it also completes the
printer's finished jobs (`awaiting_clear` → `done`) and wakes the dispatcher, so the next job
starts at once — in about the time of one `project_file` when its file was pre-staged.

The state is in the database (`storage.plates`), so a restart or a second server process sees
the same gate.
"""

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from bambufarm.jobs.model import Job, JobState, transition
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.storage.db import Database
from bambufarm.storage.jobs import JobStateConflict, change_state, list_jobs
from bambufarm.storage.plates import (
    PlateRecord,
    get_plate,
    list_plates,
    mark_cleared,
    set_auto_clear,
)

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PlateGate:
    """Per-printer plate state: read it, clear it, set auto-clear."""

    def __init__(
        self,
        database: Database,
        wakeup: Wakeup,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._db = database
        self._wakeup = wakeup
        self._clock = clock

    async def get(self, serial: str) -> PlateRecord:
        """One printer's plate state (clear when it never ended a print here)."""
        async with self._db.session(readonly=True) as session:
            return await get_plate(session, serial)

    async def states(self) -> Mapping[str, PlateRecord]:
        """Every stored plate state by serial; printers not in it are clear."""
        async with self._db.session(readonly=True) as session:
            return await list_plates(session)

    async def clear(self, serial: str, *, by: str) -> tuple[PlateRecord, tuple[Job, ...]]:
        """Confirm the plate is clear; the printer's finished jobs become done.

        Returns the plate state and the jobs completed by it. Clearing a clear plate is
        harmless (and still completes a job left awaiting, e.g. after a crash).
        """
        now = self._clock()
        done: list[Job] = []
        async with self._db.session() as session:
            plate = await mark_cleared(session, serial, by=by, now=now)
            waiting = await list_jobs(
                session, states={JobState.AWAITING_CLEAR.value}, printer_serial=plate.serial
            )
            for record in waiting.items:
                try:
                    changed = await change_state(
                        session, record.id, transition(JobState.DONE),
                        attempt=record.attempt, now=now,
                    )  # fmt: skip
                except JobStateConflict:
                    continue  # another process completed it first
                done.append(Job.from_record(changed))
        logger.info("plate of %s cleared by %s (%d job(s) done)", plate.serial, by, len(done))
        self._wakeup.poke(f"plate cleared on {plate.serial}")
        return plate, tuple(done)

    async def set_auto_clear(self, serial: str, enabled: bool) -> PlateRecord:
        """Turn auto-clear on or off; it acts on the next finished print, not the current plate."""
        async with self._db.session() as session:
            plate = await set_auto_clear(session, serial, enabled, now=self._clock())
        logger.info("auto-clear %s on %s", "on" if enabled else "off", plate.serial)
        return plate
