"""The simulated printer: a pure, clock-driven state machine that speaks Bambu MQTT payloads.

`SimPrinter` owns no sockets and no tasks. The broker hands it each payload received on
`device/<serial>/request` (`handle_request`) and publishes what it returns on
`device/<serial>/report`; the fleet calls `tick()` about once a second and publishes that too.
Time comes only from the injected clock and randomness only from the injected RNG, so a test
can drive a whole print (protocol.md §1.5.9) deterministically by advancing a manual clock.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bambufarm.protocol.errors import ThreeMFError
from bambufarm.protocol.threemf import Plate, read_3mf

from .clock import Clock
from .commands import CommandHandlers
from .identity import PrinterIdentity
from .print_job import (
    EXTERNAL_TRAY_IDS,
    SPEED_PERCENT,
    STAGE_HEAT_BED,
    STAGE_LEVELLING,
    STAGE_NOZZLE_CLEAN,
    STAGE_PRINTING,
    STAGE_RUNOUT_PAUSE,
    Job,
    Phase,
    map_trays,
    plate_number,
    subtask_name,
    tray_path,
    wants_levelling,
)
from .quirks import HmsEntry, Quirks
from .report_builder import (
    Path,
    idle_stage,
    initial_report,
    is_full_mode,
    is_new_protocol,
    material,
    uses_sdcard_gcode_name,
)
from .report_state import ReportState
from .thermal import Thermals

logger = logging.getLogger(__name__)

PUSH_INTERVAL_S = 1.0  # one report per simulated second (BD pushes at 1 Hz)
# Idle P1-class printers publish rarely; a delta every few seconds keeps clients' no-data
# watchdogs (HA: 60 s) quiet without costing 1 Hz per idle printer.
HEARTBEAT_S = 5.0
# protocol.md §1.5.9: after `stop` the printer shows 50348044 (0x0300400C "task was
# canceled") for a few seconds, then clears it.
CANCELLED_ERROR = 50_348_044
CANCELLED_SHOWN_S = 5.0
# 0x0500C010 "MicroSD card read/write exception": what firmware shows for an unreadable job file.
FILE_ERROR = 0x0500_C010
EXTERNAL_RUNOUT_ERROR = 50_364_437  # 0x03008015: external-spool runout (protocol.md §8.2)
BUSY_STATES = frozenset({"PREPARE", "RUNNING", "PAUSE"})
AMS_MODULE = 0x07  # HMS module id of the AMS (protocol.md §8.1)


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the SSDP announcer and the camera overlay need to know about the printer."""

    name: str
    gcode_state: str
    progress: int  # mc_percent
    layer_num: int
    total_layer_num: int
    subtask_name: str
    remaining_minutes: int


class SimPrinter:
    """One simulated Bambu printer on the printer side of the LAN protocol."""

    def __init__(
        self,
        identity: PrinterIdentity,
        *,
        quirks: Quirks,
        read_file: Callable[[str], bytes | None],
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.identity = identity
        self.quirks = quirks
        self._read_file = read_file
        self._clock = clock
        self._rng = rng
        self.report = ReportState(initial_report(identity, quirks))
        self._full_mode = is_full_mode(identity)
        self._new_protocol = is_new_protocol(identity)
        self.thermals = Thermals(identity, self.report, rng)
        self._stale = quirks.stale
        self._pushing = True
        self._job: Job | None = None
        self._paused_stage = 0
        self._paused_from = "RUNNING"
        self._error_clear_at: float | None = None
        now = clock.now()
        self._last_advance = now
        self._next_push = now
        self._last_publish = now - HEARTBEAT_S  # the first tick publishes
        self._push_seq = rng.randrange(100, 10_000)
        self._commands = CommandHandlers(self)

    # ---------------------------------------------------------------- public API

    def handle_request(self, payload: bytes) -> list[bytes]:
        """The payloads to publish in answer to one request payload (never raises)."""
        try:
            message = orjson.loads(payload.rstrip(b"\x00 \t\r\n"))
        except orjson.JSONDecodeError:
            logger.debug("%s: ignored a request that is not JSON", self.identity.serial)
            return []
        if not isinstance(message, dict):
            logger.debug("%s: ignored a request that is not an object", self.identity.serial)
            return []
        if self._stale:
            # A hung push task: the printer neither answers nor acts (the manager must notice).
            return []
        self.advance()
        return self._commands.handle(message)

    def tick(self) -> list[bytes]:
        """Advance to the clock's now and return what the printer publishes now (0 or 1 report)."""
        now = self._clock.now()
        if not self._full_mode and self._quiet() and now - self._last_publish < HEARTBEAT_S:
            # The common case at fleet scale: an idle delta printer with nothing to say.
            self._last_advance = now
            return []
        self.advance()
        if self._stale or not self._pushing or now < self._next_push:
            return []
        self._next_push = max(self._next_push + PUSH_INTERVAL_S, now)
        if self._full_mode:
            return [self._publish_full()]
        busy = self.gcode_state in BUSY_STATES
        if self.report.dirty or busy or now - self._last_publish >= HEARTBEAT_S:
            return [self._publish_delta()]
        return []

    def full_report(self) -> bytes:
        """A full report (`msg: 0`), e.g. right after CONNACK and after SUBSCRIBE."""
        self.advance()
        return self._publish_full()

    def immediate_report(self) -> bytes:
        """The report a printer pushes right after a command changed its state."""
        return self._publish_full() if self._full_mode else self._publish_delta()

    def storage_report(self, free: int, total: int) -> None:
        """Report the simulated SD card's capacity (bytes); slicers gate "Send" on it."""
        if not 0 <= free <= total:
            raise ValueError(f"storage free {free} must be between 0 and total {total}")
        self.report.put("sdcard", True)
        self.report.put("storage", {"free": free, "total": total})

    @property
    def gcode_state(self) -> str:
        """IDLE, PREPARE, RUNNING, PAUSE, FINISH or FAILED."""
        state: str = self.report.data["gcode_state"]
        return state

    @property
    def stale(self) -> bool:
        """True while the printer publishes nothing."""
        return self._stale

    @property
    def pushing(self) -> bool:
        """False after `pushing.stop` until `pushing.start`."""
        return self._pushing

    @pushing.setter
    def pushing(self, value: bool) -> None:
        self._pushing = value

    def status(self) -> PrinterStatus:
        """A snapshot for SSDP and the camera overlay."""
        data = self.report.data
        return PrinterStatus(
            name=self.identity.name,
            gcode_state=data["gcode_state"],
            progress=data["mc_percent"],
            layer_num=data["layer_num"],
            total_layer_num=data["total_layer_num"],
            subtask_name=data["subtask_name"],
            remaining_minutes=data["mc_remaining_time"],
        )

    # ---------------------------------------------------------------- fault injection

    def inject_hms(self, attr: int, code: int) -> None:
        """Add an active HMS condition (protocol.md §8.1)."""
        entry = HmsEntry(attr=attr, code=code).to_wire()
        current: list[dict[str, int]] = self.report.data["hms"]
        if entry not in current:
            self.report.put("hms", [*current, entry])

    def clear_hms(self) -> None:
        """Clear every HMS condition."""
        self.report.put("hms", [])

    def set_print_error(self, code: int) -> None:
        """Set `print_error` (0 clears it)."""
        HmsEntry(attr=0, code=code)  # the same unsigned 32-bit check
        self._error_clear_at = None
        self.report.put("print_error", code)

    def filament_runout(self, tray: int) -> None:
        """The spool in global tray `tray` ran out: pause a running print with stage 6 + HMS."""
        if tray in EXTERNAL_TRAY_IDS:
            self.report.put("print_error", EXTERNAL_RUNOUT_ERROR)
        else:
            unit, slot = (tray, 0) if tray >= 128 else divmod(tray, 4)
            # AMS module 0x07, instance = unit, part 0x2<slot>: 0700_2000_0002_0001 is
            # "AMS A Slot 1 filament has run out" (protocol.md §8.1).
            attr = AMS_MODULE << 24 | (unit & 0xFF) << 16 | (0x20 | slot) << 8
            self.inject_hms(attr, 0x0002_0001)
        path = self.tray_path(tray)
        if path is not None and "remain" in self.report.get(path):
            self.report.set((*path, "remain"), 0)
        self.report.put("hw_switch_state", 0)
        if self.gcode_state == "RUNNING":
            self.pause(STAGE_RUNOUT_PAUSE)

    def set_stale(self, stale: bool) -> None:
        """Stop (True) or resume (False) every publication, as a hung push task would."""
        self._stale = stale

    # ---------------------------------------------------------------- simulation

    def _quiet(self) -> bool:
        # Nothing can change by itself: no job moving, no heater moving, no timer pending.
        return (
            self._job is None
            and self._error_clear_at is None
            and not self.report.dirty
            and self.thermals.settled
        )

    def advance(self) -> None:
        """Bring the simulation up to the clock's now."""
        now = self._clock.now()
        dt = now - self._last_advance
        if dt <= 0:
            return
        self._last_advance = now
        if self._error_clear_at is not None and now >= self._error_clear_at:
            self._error_clear_at = None
            self.report.put("print_error", 0)
        job = self._job
        if job is not None and self.gcode_state in ("PREPARE", "RUNNING"):
            self._advance_job(job, dt)
        self.thermals.step(dt, int(self.report.data["ams"]["tray_now"]))

    def _advance_job(self, job: Job, dt: float) -> None:
        speed = self.report.data["spd_mag"]
        before = (job.phase, job.stage_index)
        job.advance(dt, speed)
        if (job.phase, job.stage_index) != before:
            self._enter_phase(job)
        self.report.put("gcode_file_prepare_percent", str(job.prepare_percent))
        if job.phase in (Phase.PRINTING, Phase.DONE):
            self._put_progress(job.percent(), job.remaining_minutes(speed), job.layer())
            for use in job.uses:
                self.report.set((*use.path, "remain"), job.remain_of(use))
        if job.phase is Phase.DONE:
            self._finish(job)

    def _enter_phase(self, job: Job) -> None:
        put = self.report.put
        if job.phase is Phase.STAGES:
            put("stg_cur", job.stage)
            self.thermals.set_nozzle_target(0, job.nozzle_c)
        elif job.phase is Phase.PRINTING:
            self.thermals.set_nozzle_target(0, job.nozzle_c)
            put("gcode_state", "RUNNING")
            put("mc_print_stage", "2")
            put("stg_cur", STAGE_PRINTING)
            put("cooling_fan_speed", "15")
            put("big_fan2_speed", "10")

    def _finish(self, job: Job) -> None:
        self._job = None
        put = self.report.put
        put("gcode_state", "FINISH")
        put("mc_print_stage", "1")
        put("stg_cur", idle_stage(self.identity))
        self._put_progress(100, 0, job.total_layers)
        self._end_of_job_outputs()

    def _end_of_job_outputs(self) -> None:
        self.thermals.all_off()
        self.report.put("cooling_fan_speed", "0")
        self.report.put("big_fan2_speed", "0")

    def _put_progress(self, percent: int, minutes: int, layer: int) -> None:
        put = self.report.put
        put("mc_percent", percent)
        put("mc_remaining_time", minutes)
        put("layer_num", layer)
        if self._new_protocol:
            put("percent", percent)
            put("remain_time", minutes)

    # ---------------------------------------------------------------- job control

    def tray_path(self, tray: int) -> Path | None:
        """The report path of global tray id `tray` (AMS slot or external holder), if present."""
        return tray_path(self.identity, self.report.data, tray)

    def start_job(self, request: dict[str, Any], file: str, mapping: list[int]) -> None:
        """Begin a job after a successful `project_file` ack (PREPARE, or FAILED if unreadable)."""
        name = subtask_name(request, file)
        plate_index = plate_number(request)
        put = self.report.put
        put("subtask_name", name)
        sd_name = uses_sdcard_gcode_name(self.identity)
        put("gcode_file", file if sd_name else f"/data/Metadata/plate_{plate_index}.gcode")
        for key in ("project_id", "profile_id", "task_id", "subtask_id"):
            value = request.get(key)
            put(key, str(value) if isinstance(value, str | int) else "0")
        put("print_type", "local")
        put("print_error", 0)
        put("s_obj", [])
        put("gcode_start_time", str(int(self._clock.now())))
        put("mc_print_stage", "1")
        self._error_clear_at = None
        plate = self._load_plate(file, plate_index)
        if plate is None:
            put("gcode_state", "FAILED")
            put("print_error", FILE_ERROR)
            return
        stages: tuple[int, ...] = (STAGE_HEAT_BED, STAGE_NOZZLE_CLEAN)
        if wants_levelling(request):
            stages = (STAGE_HEAT_BED, STAGE_LEVELLING, STAGE_NOZZLE_CLEAN)
        first = plate.filaments[0].type if plate.filaments and plate.filaments[0].type else "PLA"
        profile = material(first)
        job = Job(
            file=file,
            subtask_name=name,
            plate=plate_index,
            prediction_s=float(max(1, plate.prediction_s or 0)),
            total_layers=max(1, plate.total_layers or 1),
            stages=stages,
            nozzle_c=profile.nozzle,
            bed_c=profile.bed,
        )
        first_tray = map_trays(job, plate, mapping, self.identity, self.report)
        if first_tray is not None:
            self.report.set(("ams", "tray_now"), str(first_tray))
        self._job = job
        put("gcode_state", "PREPARE")
        put("gcode_file_prepare_percent", "0")
        put("stg", list(stages))
        put("stg_cur", idle_stage(self.identity))
        put("total_layer_num", job.total_layers)
        self._put_progress(0, job.remaining_minutes(self.report.data["spd_mag"]), 0)
        self.thermals.set_bed_target(job.bed_c)
        if mapping:
            # Sent once, in the job-start report, never in full reports (protocol.md §1.4).
            self.report.once("ams_mapping", mapping)

    def _load_plate(self, file: str, plate_index: int) -> Plate | None:
        data = self._read_file(file)
        if data is None:
            logger.info("%s: job file %r is not on the card", self.identity.serial, file)
            return None
        try:
            return read_3mf(data).plate(plate_index)
        except ThreeMFError as err:
            logger.info("%s: job file %r is unusable: %s", self.identity.serial, file, err)
            return None

    def pause(self, stage: int) -> bool:
        """Pause a preparing or running job; False if there is nothing to pause."""
        if self.gcode_state not in ("PREPARE", "RUNNING"):
            return False
        self._paused_stage = self.report.data["stg_cur"]
        self._paused_from = self.gcode_state
        self.report.put("gcode_state", "PAUSE")
        self.report.put("stg_cur", stage)
        return True

    def resume(self) -> bool:
        """Resume a paused job; False if the printer is not paused."""
        if self.gcode_state != "PAUSE":
            return False
        data = self.report.data
        if data["stg_cur"] == STAGE_RUNOUT_PAUSE:
            # The operator fed new filament: the runout conditions are gone.
            self.report.put("hms", [h for h in data["hms"] if h["attr"] >> 24 != AMS_MODULE])
            self.report.put("hw_switch_state", 1)
            if data["print_error"] == EXTERNAL_RUNOUT_ERROR:
                self.report.put("print_error", 0)
        self.report.put("gcode_state", self._paused_from)
        self.report.put("stg_cur", self._paused_stage)
        return True

    def stop(self) -> bool:
        """Cancel the job: FAILED with 0x0300400C shown for a few seconds; False if idle."""
        if self.gcode_state not in BUSY_STATES:
            return False
        self._job = None
        put = self.report.put
        put("gcode_state", "FAILED")
        put("mc_print_stage", "1")
        put("stg_cur", idle_stage(self.identity))
        put("print_error", CANCELLED_ERROR)
        self._error_clear_at = self._clock.now() + CANCELLED_SHOWN_S
        self._end_of_job_outputs()
        return True

    def set_speed(self, level: int) -> None:
        """Change the speed preset; the remaining time follows at once."""
        self.report.put("spd_lvl", level)
        self.report.put("spd_mag", SPEED_PERCENT[level])
        job = self._job
        if job is not None and job.phase is not Phase.DONE:
            data = self.report.data
            minutes = job.remaining_minutes(SPEED_PERCENT[level])
            self._put_progress(data["mc_percent"], minutes, data["layer_num"])

    # ---------------------------------------------------------------- publication

    def _publish_full(self) -> bytes:
        self._push_seq += 1
        self._last_publish = self._clock.now()
        return self.report.full(self._push_seq)

    def _publish_delta(self) -> bytes:
        self._push_seq += 1
        self._last_publish = self._clock.now()
        return self.report.delta(self._push_seq)
