"""The dispatcher's pure matching function: printers' last-known state x queued jobs → a plan.

`match(printers, jobs, now=...)` decides which queued job starts on which printer this round,
and for every job it does not start, why not, printer by printer. It reads no clock and does no
I/O; the code that uploads and sends `project_file` acts on the `DispatchPlan` it returns.

Rules, in the order a printer is checked against a job (the first that fails is the reason):

1. target: a specific printer, a set of models, or any (`not_targeted`);
2. model: the file's `printer_model_id` is the printer's model (`wrong_model`, protocol.md §7.2);
3. nozzle diameter (`wrong_nozzle`); these three never change by waiting, so they come first;
4. the printer: enabled (`maintenance`), connected (`offline`), Developer Mode on or no
   signing firmware (`read_only`, §9.4), no job running or reserved (`busy`), plate confirmed
   clear after FINISH/FAILED (`plate_not_cleared`);
5. filament per slot (`missing_filament`, `not_enough_filament`; see `filament_match`);
6. one job per printer per round: a job earlier in the queue took it (`higher_priority_job`).

Jobs go in queue order: priority (higher first), due time (earlier first, none last), created
order, then job id. Each takes the first printer that passes all checks, preferring the printer
idle longest (`ready_since`, earliest first; unknown last), then the lowest serial.

Cost: O(J·P·(1 + F·T)) for J jobs, P printers, F filaments per plate and T loaded trays. An
assigned job stops at its printer; a waiting job visits every printer to give its reasons.
Target/model/nozzle results are shared by jobs alike in these, printer availability by all
jobs, and which trays hold a plate's filaments by printers loaded alike (`filament_match`).
Measured on this project's 2-core machine, 200 jobs x 1,000 printers: 40-170 ms of CPU for a
farm loaded from a dozen colours (100k-200k reasons), ~0.65 s in the worst case of every
printer idle with 24-bit random colours and 200 distinct plates, ~1.1 s when those jobs also
allow a colour tolerance.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from types import MappingProxyType

from bambufarm.jobs.filament_match import (
    FilamentMatcher,
    FilamentPlan,
    FilamentShortfall,
    Loadout,
    TrayChoice,
)
from bambufarm.protocol.commands import AmsMapping, encode_ams_mapping
from bambufarm.protocol.models import PrinterModel, model_by_code
from bambufarm.protocol.state import GcodeState, PrinterState
from bambufarm.protocol.threemf import Plate, PlateFilament, ThreeMF

__all__ = [
    "ANY_PRINTER",
    "Assignment",
    "CandidateReason",
    "DispatchInputError",
    "DispatchPlan",
    "JobRequest",
    "PrinterView",
    "Target",
    "TrayChoice",
    "WaitReason",
    "match",
]

# Diameters are 0.2/0.4/0.6/0.8 mm; a thousandth absorbs float noise from "0.4" vs 0.4000001.
_NOZZLE_EPSILON = 0.001
_MAX_SLOT = 64  # ams_mapping's limit (protocol.ams_commands.MAX_FILAMENTS)


class DispatchInputError(ValueError):
    """A printer view or job request that the matcher cannot use (duplicate id, odd value)."""


class WaitReason(StrEnum):
    """Why a job is not starting on one printer."""

    NOT_TARGETED = "not_targeted"
    WRONG_MODEL = "wrong_model"
    WRONG_NOZZLE = "wrong_nozzle"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"
    READ_ONLY = "read_only"
    BUSY = "busy"
    PLATE_NOT_CLEARED = "plate_not_cleared"
    MISSING_FILAMENT = "missing_filament"
    NOT_ENOUGH_FILAMENT = "not_enough_filament"
    HIGHER_PRIORITY_JOB = "higher_priority_job"


@dataclass(frozen=True, slots=True)
class Target:
    """Which printers a job may run on: one serial, any of some models, or any (the default)."""

    serial: str | None = None
    models: frozenset[str] = frozenset()  # model codes, e.g. {"C12"}; empty = any model

    def __post_init__(self) -> None:
        if self.serial is not None and self.models:
            raise DispatchInputError("a target names one printer or some models, not both")
        # Aliases ("3DPrinter-X1-Carbon") and unknown codes (ModelError) resolved once here.
        codes = frozenset(model_by_code(code).code for code in self.models)
        object.__setattr__(self, "models", codes)

    @classmethod
    def printer(cls, serial: str) -> "Target":
        """Only the printer with this serial."""
        return cls(serial=serial)

    @classmethod
    def of_models(cls, *codes: str) -> "Target":
        """Any printer of these model codes ("C12", "BL-P001", ...)."""
        if not codes:
            raise DispatchInputError("name at least one printer model code")
        return cls(models=frozenset(codes))


ANY_PRINTER = Target()
_MISSING, _NOT_ENOUGH = WaitReason.MISSING_FILAMENT, WaitReason.NOT_ENOUGH_FILAMENT


@dataclass(frozen=True, slots=True)
class PrinterView:
    """What the dispatcher needs to know about one printer."""

    serial: str
    name: str
    model: PrinterModel
    state: PrinterState  # last known: gcode_state, AMS, nozzle, developer_mode
    online: bool = True
    enabled: bool = True  # False while in maintenance
    # None: from the state (Developer Mode off = read-only; no `fun` = older firmware, fine).
    read_only: bool | None = None
    plate_cleared: bool = True  # False after FINISH/FAILED until the operator confirms
    reserved_for: str | None = None  # job id the queue already gave this printer
    ready_since: float | None = None  # when it became free, same clock as `now`

    def __post_init__(self) -> None:
        if self.state.serial != self.serial:
            raise DispatchInputError(
                f"printer {self.serial}: its state is for {self.state.serial!r}"
            )

    @property
    def is_read_only(self) -> bool:
        """True when the printer would refuse unsigned commands (protocol.md §9.3-9.4)."""
        if self.read_only is not None:
            return self.read_only
        return self.state.developer_mode is False


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One queued job, with the requirements of the plate it prints."""

    job_id: str
    printer_model_id: str  # the file's slice_info printer_model_id, e.g. "C12"
    filaments: tuple[PlateFilament, ...]
    nozzle_diameter: float | None = None  # mm; None = the file does not say
    priority: int = 0  # higher first
    created: float = 0  # queue order among equal priority and due time
    due: float | None = None  # same clock as `now`
    target: Target = ANY_PRINTER
    color_tolerance: float = 0.0  # CIE76 ΔE; 0 = the same RRGGBB (alpha ignored)
    model: PrinterModel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", model_by_code(self.printer_model_id))
        what = f"job {self.job_id}"
        if not math.isfinite(self.color_tolerance) or self.color_tolerance < 0:
            raise DispatchInputError(f"{what}: color_tolerance must be a ΔE ≥ 0")
        slots = [f.slot for f in self.filaments]
        if len(set(slots)) != len(slots) or not all(1 <= s <= _MAX_SLOT for s in slots):
            raise DispatchInputError(
                f"{what}: filament slots must be distinct and 1-{_MAX_SLOT}, got {slots}"
            )
        for filament in self.filaments:
            grams = filament.used_g
            if grams is not None and not (math.isfinite(grams) and grams >= 0):
                raise DispatchInputError(f"{what}: filament {filament.slot} used_g is {grams}")
        if self.nozzle_diameter is not None and not (
            math.isfinite(self.nozzle_diameter) and self.nozzle_diameter > 0
        ):
            raise DispatchInputError(f"{what}: nozzle diameter {self.nozzle_diameter} mm")

    @classmethod
    def for_plate(
        cls,
        job_id: str,
        file: ThreeMF,
        plate: Plate,
        *,
        priority: int = 0,
        created: float = 0,
        due: float | None = None,
        target: Target = ANY_PRINTER,
        color_tolerance: float = 0.0,
    ) -> "JobRequest":
        """A request for one plate of a sliced file, taking model, nozzle and filaments from it."""
        if file.printer_model_id is None:
            raise DispatchInputError(
                f"job {job_id}: the file does not say which printer model it was sliced for"
            )
        return cls(
            job_id,
            file.printer_model_id,
            plate.filaments,
            file.nozzle_diameter,
            priority,
            created,
            due,
            target,
            color_tolerance,
        )


@dataclass(frozen=True, slots=True)
class CandidateReason:
    """Why a job does not start on one printer, for the operator."""

    serial: str
    reason: WaitReason
    detail: str  # e.g. "file sliced for P1S, printer is X1C"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Start this job on this printer with this filament mapping."""

    job_id: str
    serial: str
    ams_mapping: AmsMapping  # for project_file: ams_mapping + ams_mapping2 (+ use_ams)
    trays: tuple[TrayChoice, ...]  # the tray per plate filament, by slot

    @property
    def filament_unverified(self) -> bool:
        """True when some tray's grams left (or the plate's grams needed) are unknown."""
        return not all(choice.verified for choice in self.trays)


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """The outcome of one matching round."""

    now: float  # the clock reading the plan was made for
    assignments: tuple[Assignment, ...]  # in queue order
    # job id -> one reason per printer (by serial) for every job not assigned, in queue order
    waiting: Mapping[str, tuple[CandidateReason, ...]]


def match(
    printers: Iterable[PrinterView], jobs: Iterable[JobRequest], *, now: float
) -> DispatchPlan:
    """Assign queued jobs to free, fitting printers; explain every job left waiting."""
    views = sorted(printers, key=lambda v: v.serial)
    for before, after in pairwise(views):
        if before.serial == after.serial:
            raise DispatchInputError(f"printer {before.serial} is listed twice")
    queue = sorted(jobs, key=_queue_order)
    seen: set[str] = set()
    for job in queue:
        if job.job_id in seen:
            raise DispatchInputError(f"job {job.job_id} is listed twice")
        seen.add(job.job_id)
    # Positions index `views` (serial order, the order reasons are reported in).
    preference = sorted(range(len(views)), key=lambda i: _idle_order(views[i]))
    position = {view.serial: i for i, view in enumerate(views)}
    gates = [_availability(view) for view in views]
    matcher = FilamentMatcher()
    loadouts: list[Loadout | None] = [None] * len(views)  # built when first needed
    statics: dict[tuple[Target, str, float | None], _StaticChecks] = {}
    taken: dict[int, str] = {}  # position -> job id that took the printer this round
    assignments: list[Assignment] = []
    waiting: dict[str, tuple[CandidateReason, ...]] = {}
    for job in queue:
        planner = matcher.plate(job.filaments, job.color_tolerance)
        # Target, model and nozzle decide alike for alike jobs: one memo per combination.
        signature = (job.target, job.model.code, job.nozzle_diameter)
        static = statics.get(signature)
        if static is None:
            static = statics[signature] = _StaticChecks(job, views, position)
        reasons: list[CandidateReason | None] = [None] * len(views)
        assigned: Assignment | None = None
        for i in preference:
            view = views[i]
            outcome: CandidateReason | FilamentPlan | FilamentShortfall | None = static.check(i)
            if outcome is None:
                outcome = gates[i]
            if outcome is None:
                loadout = loadouts[i]
                if loadout is None:
                    dual = view.model.dual_nozzle
                    loadout = loadouts[i] = matcher.loadout(view.state.ams, dual_nozzle=dual)
                outcome = planner.plan(loadout)
            if isinstance(outcome, FilamentPlan):
                other = taken.get(i)
                if other is None:
                    assigned = _assignment(job, view, outcome, planner.needs.width)
                    taken[i] = job.job_id
                    break
                outcome = CandidateReason(
                    view.serial,
                    WaitReason.HIGHER_PRIORITY_JOB,
                    f"job {other}, ahead in the queue, takes this printer this round",
                )
            elif isinstance(outcome, FilamentShortfall):
                reason = _MISSING if outcome.missing else _NOT_ENOUGH
                outcome = CandidateReason(view.serial, reason, outcome.detail)
            reasons[i] = outcome
        if assigned is not None:
            assignments.append(assigned)
        else:
            waiting[job.job_id] = tuple(r for r in reasons if r is not None)
    return DispatchPlan(now, tuple(assignments), MappingProxyType(waiting))


def _queue_order(job: JobRequest) -> tuple[int, bool, float, float, str]:
    return (-job.priority, job.due is None, job.due or 0.0, job.created, job.job_id)


def _idle_order(view: PrinterView) -> tuple[bool, float, str]:
    return (view.ready_since is None, view.ready_since or 0.0, view.serial)


class _StaticChecks:
    """Target, model and nozzle of jobs alike in these against each printer, memoised."""

    __slots__ = ("_checked", "_job", "_model_details", "_results", "_target_detail", "_views")

    def __init__(self, job: JobRequest, views: list[PrinterView], position: dict[str, int]):
        self._job = job
        self._views = views
        self._checked = bytearray(len(views))
        self._results: list[CandidateReason | None] = [None] * len(views)
        self._model_details: dict[str, str] = {}
        target = job.target
        if target.serial is not None:
            i = position.get(target.serial)
            who = (
                f"printer {target.serial} (not in the fleet)"
                if i is None
                else f"{views[i].name} ({target.serial})"
            )
            self._target_detail = f"job is for {who} only"
        elif target.models:
            names = sorted(model_by_code(code).name for code in target.models)
            self._target_detail = f"job is for {', '.join(names)} printers only"
        else:
            self._target_detail = ""

    def check(self, i: int) -> CandidateReason | None:
        """The first of target, model, nozzle that rules printer `i` out, or None."""
        if self._checked[i]:
            return self._results[i]
        result = self._check(self._views[i])
        self._results[i] = result
        self._checked[i] = 1
        return result

    def _check(self, view: PrinterView) -> CandidateReason | None:
        job = self._job
        target = job.target
        if (target.serial is not None and target.serial != view.serial) or (
            target.models and view.model.code not in target.models
        ):
            return CandidateReason(view.serial, WaitReason.NOT_TARGETED, self._target_detail)
        if view.model.code != job.model.code:
            detail = self._model_details.get(view.model.code)
            if detail is None:
                detail = f"file sliced for {job.model.name}, printer is {view.model.name}"
                self._model_details[view.model.code] = detail
            return CandidateReason(view.serial, WaitReason.WRONG_MODEL, detail)
        wanted = job.nozzle_diameter
        if wanted is None:
            return None
        have = view.state.nozzle.diameter
        if have is None:
            if not view.online:
                return None  # offline says more than an unknown nozzle
            detail = f"the printer has not reported its nozzle; file sliced for {wanted:g} mm"
            return CandidateReason(view.serial, WaitReason.WRONG_NOZZLE, detail)
        if abs(have - wanted) > _NOZZLE_EPSILON:
            detail = f"file sliced for a {wanted:g} mm nozzle, printer has {have:g} mm"
            return CandidateReason(view.serial, WaitReason.WRONG_NOZZLE, detail)
        return None


_BUSY_DETAILS: Mapping[GcodeState, str] = MappingProxyType(
    {
        GcodeState.PREPARE: "preparing a print",
        GcodeState.PAUSE: "a print is paused",
        GcodeState.SLICING: "slicing a job",
        GcodeState.INIT: "starting up",
        GcodeState.UNKNOWN: "no status report received yet",
    }
)
_ENDED: Mapping[GcodeState, str] = MappingProxyType(
    {GcodeState.FINISH: "finished", GcodeState.FAILED: "failed"}
)


def _availability(view: PrinterView) -> CandidateReason | None:
    """Why the printer takes no job at all right now (the same for every job), or None."""
    serial = view.serial
    if not view.enabled:
        return CandidateReason(serial, WaitReason.MAINTENANCE, "disabled for maintenance")
    if not view.online:
        return CandidateReason(serial, WaitReason.OFFLINE, "not connected")
    if view.is_read_only:
        return CandidateReason(
            serial,
            WaitReason.READ_ONLY,
            "Developer Mode is off, so the printer refuses unsigned print commands; "
            "enable Developer Mode (LAN only mode) on the printer",
        )
    if view.reserved_for is not None:
        return CandidateReason(serial, WaitReason.BUSY, f"reserved for job {view.reserved_for}")
    job = view.state.job
    state = job.gcode_state
    if state == GcodeState.RUNNING:
        return CandidateReason(serial, WaitReason.BUSY, _printing_detail(view))
    busy = _BUSY_DETAILS.get(state)
    if busy is not None:
        return CandidateReason(serial, WaitReason.BUSY, busy)
    if not view.plate_cleared:
        ended = _ENDED.get(state, "ended")
        return CandidateReason(
            serial,
            WaitReason.PLATE_NOT_CLEARED,
            f"the last print {ended}; confirm the plate is cleared",
        )
    return None


def _printing_detail(view: PrinterView) -> str:
    """E.g. "printing benchy (45 %, 32 min left)"."""
    job = view.state.job
    name = job.subtask_name or job.file or "a job"
    facts = []
    if job.progress is not None:
        facts.append(f"{job.progress} %")
    if job.remaining_minutes is not None:
        facts.append(f"{job.remaining_minutes} min left")
    return f"printing {name}" + (f" ({', '.join(facts)})" if facts else "")


def _assignment(job: JobRequest, view: PrinterView, plan: FilamentPlan, width: int) -> Assignment:
    """The assignment with its project_file mapping; slots the plate does not use stay -1."""
    trays = [-1] * width
    for choice in plan.choices:
        trays[choice.slot - 1] = choice.tray_id
    mapping = encode_ams_mapping(trays, dual_nozzle=view.model.dual_nozzle)
    return Assignment(job.job_id, view.serial, mapping, plan.choices)
