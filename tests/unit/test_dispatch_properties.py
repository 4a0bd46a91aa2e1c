"""Properties of jobs.dispatch.match over generated fleets and queues.

Every job is assigned or explains itself for every printer; no printer gets two jobs; every
assignment maps every plate filament to a tray of its material and colour, on a printer that
can take the job, with the grams known to be there; reasons are true of the printer they name;
the plan does not depend on the order of the inputs.
"""

import dataclasses
import math
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.jobs.dispatch import (
    ANY_PRINTER,
    DispatchPlan,
    JobRequest,
    PrinterView,
    Target,
    WaitReason,
    match,
)
from bambufarm.jobs.filament_match import delta_e, parse_colour
from bambufarm.protocol.commands import EXTERNAL_LEFT, EXTERNAL_SPOOL
from bambufarm.protocol.models import model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import GcodeState, PrinterState, empty_state, merge
from bambufarm.protocol.threemf import PlateFilament

MODELS = tuple(model_by_name(n) for n in ("P1S", "X1C", "A1", "H2D"))
# Choices are weighted by repetition so that enough printers are free and fitting for
# assignments to happen (with even odds, almost every job waited).
MOSTLY = st.sampled_from([True] * 5 + [False])
TOLERANCES = st.sampled_from([0.0, 0.0, 1.0, 1.0, 2.0, 30.0])
TYPES = ("PLA", "pla", "PETG", "TPU")
# FEFEFE and FAFAFA are ΔE 0.3 and 1.7 from white: inside and outside a tolerance of 1.
TRAY_COLOURS = ("FFFFFFFF", "000000FF", "FF0000FF", "ffffff80", "FEFEFEFF", "FAFAFAFF", "")
PLATE_COLOURS = ("#FFFFFF", "#000000", "#FF0000", "#00FF00", None)
FUN = (None, "3EC18FFF9CFF", "3EC1AFFF9CFF")  # absent, Developer Mode on, off
NOT_READY = frozenset(
    {
        GcodeState.PREPARE,
        GcodeState.RUNNING,
        GcodeState.PAUSE,
        GcodeState.SLICING,
        GcodeState.INIT,
        GcodeState.UNKNOWN,
    }
)


@st.composite
def wire_tray(draw: st.DrawFn, tray_id: int) -> dict[str, Any]:
    if not draw(MOSTLY):
        return {"id": str(tray_id)}  # an empty slot
    return {
        "id": str(tray_id),
        "tray_type": draw(st.sampled_from(TYPES)),
        "tray_color": draw(st.sampled_from(TRAY_COLOURS)),
        "remain": draw(st.sampled_from([-1, 0, 5, 50, 100])),
        "tray_weight": draw(st.sampled_from(["0", "250", "1000"])),
    }


@st.composite
def printer_state(draw: st.DrawFn, serial: str, dual: bool) -> PrinterState:
    body: dict[str, Any] = {
        "command": "push_status",
        "msg": 0,
        "sequence_id": "1",
        "gcode_state": draw(
            st.sampled_from(["IDLE"] * 6 + ["RUNNING", "FINISH", "FAILED", "PAUSE"])
        ),
        "nozzle_diameter": draw(st.sampled_from(["0.4", "0.4", "0.6"])),
    }
    fun = draw(st.sampled_from((*FUN, None, FUN[1], FUN[1])))
    if fun is not None:
        body["fun"] = fun
    units = draw(st.lists(st.sampled_from([0, 1, 128]), unique=True, max_size=3))
    body["ams"] = {
        "ams": [
            {
                "id": str(unit),
                "tray": [draw(wire_tray(slot)) for slot in range(1 if unit >= 128 else 4)],
            }
            for unit in units
        ]
    }
    if dual:
        body["vir_slot"] = [draw(wire_tray(255)), draw(wire_tray(254))]
    elif draw(st.booleans()):
        body["vt_tray"] = draw(wire_tray(draw(st.sampled_from([254, 255]))))
    return merge(empty_state(serial), parse_report(orjson.dumps({"print": body})))


@st.composite
def printer_view(draw: st.DrawFn, index: int) -> PrinterView:
    model = draw(st.sampled_from(MODELS))
    serial = f"{model.serial_prefix}{index:012d}"
    return PrinterView(
        serial,
        f"printer {index}",
        model,
        draw(printer_state(serial, model.dual_nozzle)),
        online=draw(MOSTLY),
        enabled=draw(MOSTLY),
        read_only=draw(st.sampled_from([None, None, None, False, True])),
        plate_cleared=draw(MOSTLY),
        reserved_for=draw(st.sampled_from([None, None, None, "held"])),
        ready_since=draw(st.one_of(st.none(), st.integers(0, 5).map(float))),
    )


@st.composite
def fleet(draw: st.DrawFn) -> list[PrinterView]:
    count = draw(st.integers(0, 6))
    return [draw(printer_view(i)) for i in range(count)]  # 0: test_dispatch covers it too


@st.composite
def plate_filaments(draw: st.DrawFn) -> tuple[PlateFilament, ...]:
    slots = draw(
        st.lists(
            st.integers(1, 5), unique=True, min_size=1, max_size=draw(st.sampled_from([1, 1, 3]))
        )
    )
    return tuple(
        PlateFilament(
            slot,
            None,
            draw(st.sampled_from(("PLA", "PLA", "PETG", "TPU", "ABS", None))),
            draw(st.sampled_from(PLATE_COLOURS)),
            draw(st.one_of(st.none(), st.floats(0, 600, allow_nan=False))),
            None,
        )
        for slot in slots
    )


def _loaded_trays(printer: PrinterView) -> list[Any]:
    ams = printer.state.ams
    trays = [t for unit in ams.units for t in unit.trays] + list(ams.external)
    return [t for t in trays if t.type]


@st.composite
def fitting_filaments(draw: st.DrawFn, printer: PrinterView) -> tuple[PlateFilament, ...] | None:
    """Filaments copied from the printer's own trays, so that the job has a chance to fit."""
    trays = _loaded_trays(printer)
    if not trays:
        return None
    picked = draw(
        st.one_of(
            st.lists(st.sampled_from(trays), min_size=1, max_size=3),
            st.sampled_from(trays).map(lambda tray: [tray, tray]),  # two filaments, one tray
        )
    )
    slots = draw(st.permutations(range(1, 6)))
    return tuple(
        PlateFilament(
            slot,
            None,
            tray.type,
            # The tray's own colour, or white: near-white trays then test the tolerance.
            draw(st.sampled_from([f"#{tray.color[:6]}"] * 3 + ["#FFFFFF"]))
            if len(tray.color) >= 6
            else None,
            # Up to 300 g: more than some trays hold (250 g spools, 5 % left), so grams and
            # shared trays decide.
            draw(st.one_of(st.none(), st.floats(0, 300, allow_nan=False))),
            None,
        )
        for slot, tray in zip(slots, picked, strict=False)
    )


@st.composite
def queue(draw: st.DrawFn, printers: list[PrinterView]) -> list[JobRequest]:
    serials = [p.serial for p in printers]
    count = draw(st.integers(0, 6))
    jobs = []
    for i in range(count):
        target = draw(
            st.sampled_from(
                [
                    *[ANY_PRINTER] * 6,
                    Target.of_models("C12", "N2S"),
                    Target.printer(serials[0] if serials else "01P000000000099"),
                    Target.printer("01P000000000099"),
                ]
            )
        )
        # Most jobs are made for one of the printers (its model, nozzle and filaments), the
        # rest at random: with only random jobs almost nothing would ever be assigned.
        model = draw(st.sampled_from(MODELS))
        nozzle = draw(st.sampled_from([0.4, 0.4, 0.6, None]))
        filaments = None
        if printers and draw(MOSTLY):
            base = draw(st.sampled_from(printers))
            model, nozzle = base.model, base.state.nozzle.diameter
            filaments = draw(fitting_filaments(base))
        jobs.append(
            JobRequest(
                f"job{i}",
                model.code,
                filaments or draw(plate_filaments()),
                nozzle,
                priority=draw(st.integers(0, 2)),
                created=draw(st.integers(0, 3)),
                due=draw(st.one_of(st.none(), st.integers(0, 10).map(float))),
                target=target,
                color_tolerance=draw(TOLERANCES),
            )
        )
    return jobs


@st.composite
def round_inputs(draw: st.DrawFn) -> tuple[list[PrinterView], list[JobRequest]]:
    printers = draw(fleet())
    return printers, draw(queue(printers))


def _queue_key(job: JobRequest) -> tuple[int, bool, float, float, str]:
    return (-job.priority, job.due is None, job.due or 0.0, job.created, job.job_id)


def _targets(job: JobRequest, printer: PrinterView) -> bool:
    target = job.target
    if target.serial is not None:
        return target.serial == printer.serial
    return not target.models or printer.model.code in target.models


def _physical_tray(printer: PrinterView, tray_id: int) -> Any:
    if tray_id in (EXTERNAL_SPOOL, EXTERNAL_LEFT) and not printer.model.dual_nozzle:
        return next(t for t in printer.state.ams.external if t.type)
    return printer.state.ams.tray(tray_id)


def _check_assignment(printer: PrinterView, job: JobRequest, plan_job: Any) -> None:
    # The printer can take the job.
    assert printer.online
    assert printer.enabled
    assert not printer.is_read_only
    assert printer.plate_cleared
    assert printer.reserved_for is None
    assert printer.state.job.gcode_state not in NOT_READY
    assert printer.model.code == job.model.code
    assert _targets(job, printer)
    if job.nozzle_diameter is not None:
        assert printer.state.nozzle.diameter is not None
        assert math.isclose(printer.state.nozzle.diameter, job.nozzle_diameter, abs_tol=1e-3)
    # Every plate filament has a tray of its material and colour.
    choices = {c.slot: c for c in plan_job.trays}
    assert sorted(choices) == sorted(f.slot for f in job.filaments)
    grams: dict[int, float] = defaultdict(float)
    for filament in job.filaments:
        choice = choices[filament.slot]
        tray = _physical_tray(printer, choice.tray_id)
        assert tray is not None
        assert tray.type
        if filament.type:
            assert tray.type.casefold() == filament.type.casefold()
        wanted = parse_colour(filament.color)
        have = parse_colour(tray.color)
        if wanted is not None:
            assert have is not None
            if job.color_tolerance == 0:
                assert have == wanted
            else:
                assert delta_e(have, wanted) <= job.color_tolerance + 1e-9
        if choice.grams_left is not None:
            assert choice.grams_left > 0
            grams[choice.tray_id] += choice.grams_needed or 0.0
            assert grams[choice.tray_id] <= choice.grams_left + 1e-6
    # The mapping says the same, in both wire forms.
    mapping = plan_job.ams_mapping
    width = max(f.slot for f in job.filaments)
    assert len(mapping.flat) == len(mapping.slots) == width
    for index in range(width):
        choice = choices.get(index + 1)
        if choice is None:
            assert (mapping.flat[index], mapping.slots[index]) == (-1, (255, 255))
        elif choice.tray_id in (EXTERNAL_SPOOL, EXTERNAL_LEFT):
            assert mapping.flat[index] == -1
            assert mapping.slots[index] == (choice.tray_id, 0)
        else:
            assert mapping.flat[index] == choice.tray_id
    external = {c.tray_id in (EXTERNAL_SPOOL, EXTERNAL_LEFT) for c in choices.values()}
    assert mapping.uses_ams == (False in external)
    if not printer.model.dual_nozzle:
        assert len(external) == 1, "a single-nozzle printer mixed AMS and external spool"


def _check_reason(printer: PrinterView, job: JobRequest, reason: WaitReason, plan: Any) -> None:
    """The reason given is true of the printer."""
    if reason is WaitReason.NOT_TARGETED:
        assert not _targets(job, printer)
    elif reason is WaitReason.WRONG_MODEL:
        assert printer.model.code != job.model.code
    elif reason is WaitReason.MAINTENANCE:
        assert not printer.enabled
    elif reason is WaitReason.OFFLINE:
        assert not printer.online
    elif reason is WaitReason.READ_ONLY:
        assert printer.is_read_only
    elif reason is WaitReason.BUSY:
        assert printer.reserved_for is not None or printer.state.job.gcode_state in NOT_READY
    elif reason is WaitReason.PLATE_NOT_CLEARED:
        assert not printer.plate_cleared
    elif reason is WaitReason.HIGHER_PRIORITY_JOB:
        (winner,) = [a for a in plan.assignments if a.serial == printer.serial]
        assert winner.job_id != job.job_id


@settings(max_examples=300, deadline=None)
@given(round_inputs())
def test_every_job_is_placed_or_explained_for_every_printer(
    inputs: tuple[list[PrinterView], list[JobRequest]],
) -> None:
    printers, jobs = inputs
    plan = match(printers, jobs, now=10.0)
    by_serial = {p.serial: p for p in printers}
    by_id = {j.job_id: j for j in jobs}
    assigned = [a.job_id for a in plan.assignments]
    assert len(set(assigned)) == len(assigned)
    assert set(assigned).isdisjoint(plan.waiting)
    assert set(assigned) | set(plan.waiting) == set(by_id)
    serials = [a.serial for a in plan.assignments]
    assert len(set(serials)) == len(serials), "a printer got two jobs"
    # Assignments come in queue order, and each one is sound.
    assert assigned == sorted(assigned, key=lambda i: _queue_key(by_id[i]))
    for assignment in plan.assignments:
        _check_assignment(by_serial[assignment.serial], by_id[assignment.job_id], assignment)
    for job_id, reasons in plan.waiting.items():
        assert [r.serial for r in reasons] == sorted(by_serial)
        for reason in reasons:
            assert reason.detail
            _check_reason(by_serial[reason.serial], by_id[job_id], reason.reason, plan)


@settings(max_examples=100, deadline=None)
@given(round_inputs(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(
    inputs: tuple[list[PrinterView], list[JobRequest]], rng: Any
) -> None:
    printers, jobs = inputs
    plan = match(printers, jobs, now=1.0)
    rng.shuffle(printers)
    rng.shuffle(jobs)
    again = match(printers, jobs, now=1.0)
    assert again == plan
    assert list(again.waiting) == list(plan.waiting)  # the same queue order, too


@settings(max_examples=100, deadline=None)
@given(round_inputs())
def test_a_waiting_job_with_a_free_fitting_printer_lost_it_to_an_earlier_job(
    inputs: tuple[list[PrinterView], list[JobRequest]],
) -> None:
    printers, jobs = inputs
    plan: DispatchPlan = match(printers, jobs, now=0.0)
    order = {j.job_id: _queue_key(j) for j in jobs}
    holder = {a.serial: a.job_id for a in plan.assignments}
    for job_id, reasons in plan.waiting.items():
        for reason in reasons:
            if reason.reason is WaitReason.HIGHER_PRIORITY_JOB:
                assert order[holder[reason.serial]] < order[job_id]
        # Alone in the queue, a job that lost every fitting printer would get one of them.
        if any(r.reason is WaitReason.HIGHER_PRIORITY_JOB for r in reasons):
            alone = match(printers, [j for j in jobs if j.job_id == job_id], now=0.0)
            assert [a.job_id for a in alone.assignments] == [job_id]


@st.composite
def one_free_printer_and_a_job(draw: st.DrawFn) -> tuple[PrinterView, JobRequest]:
    """A printer ready for work and a job sliced for its model from (mostly) its own trays."""
    model = draw(st.sampled_from(MODELS))
    serial = f"{model.serial_prefix}000000000001"
    state = draw(printer_state(serial, model.dual_nozzle))
    state = merge(
        state,
        parse_report(orjson.dumps({"print": {"msg": 1, "gcode_state": "IDLE"}})),
    )
    printer = PrinterView(serial, "free", model, state, read_only=False)
    filaments = draw(st.one_of(fitting_filaments(printer), plate_filaments()))
    request = JobRequest(
        "job",
        model.code,
        filaments or draw(plate_filaments()),
        None,
        color_tolerance=draw(TOLERANCES),
    )
    return printer, request


def _fits(filament: PlateFilament, tray: Any, tolerance: float) -> bool:
    if not tray.type:
        return False
    if filament.type and tray.type.casefold() != filament.type.casefold():
        return False
    wanted, have = parse_colour(filament.color), parse_colour(tray.color)
    if wanted is None or wanted == have:
        return True
    return have is not None and tolerance > 0 and delta_e(wanted, have) <= tolerance


@settings(max_examples=300, deadline=None)
@given(one_free_printer_and_a_job())
def test_filament_choice_on_a_free_printer(inputs: tuple[PrinterView, JobRequest]) -> None:
    printer, request = inputs
    plan = match([printer], [request], now=0.0)
    ams = printer.state.ams
    ams_trays = [t for unit in ams.units for t in unit.trays if t.type]
    external = [t for t in ams.external if t.type]
    if not printer.model.dual_nozzle:
        external = external[:1]  # one holder
    tol = request.color_tolerance
    anywhere = [any(_fits(f, t, tol) for t in ams_trays + external) for f in request.filaments]
    if plan.assignments:
        _check_assignment(printer, request, plan.assignments[0])
        return
    (reason,) = plan.waiting["job"]
    if reason.reason is WaitReason.NOT_ENOUGH_FILAMENT:
        assert all(anywhere)
        return
    assert reason.reason is WaitReason.MISSING_FILAMENT
    if not all(anywhere):
        for filament, found in zip(request.filaments, anywhere, strict=True):
            assert (f"(filament {filament.slot})" in reason.detail) == (not found)
        return
    # Everything is loaded somewhere, so this must be a single-nozzle printer whose AMS and
    # external spool each lack something.
    assert not printer.model.dual_nozzle
    assert "not both" in reason.detail
    for feed in (ams_trays, external):
        assert not all(any(_fits(f, t, tol) for t in feed) for f in request.filaments)


@settings(max_examples=200, deadline=None)
@given(one_free_printer_and_a_job())
def test_unknown_amounts_never_hold_a_job_back(inputs: tuple[PrinterView, JobRequest]) -> None:
    printer, request = inputs
    # The same job with no grams stated: any feed holding every filament must be accepted.
    unknown = JobRequest(
        "job",
        request.printer_model_id,
        tuple(dataclasses.replace(f, used_g=None) for f in request.filaments),
        None,
        color_tolerance=request.color_tolerance,
    )
    ams = printer.state.ams
    ams_trays = [t for unit in ams.units for t in unit.trays if t.type]
    external = [t for t in ams.external if t.type]
    if not printer.model.dual_nozzle:
        external = external[:1]
    feeds = [ams_trays + external] if printer.model.dual_nozzle else [ams_trays, external]

    def usable(tray: Any) -> bool:  # not known to be empty
        return not (tray.remain == 0 and (tray.weight_g or 0) > 0)

    tol = request.color_tolerance
    fits_somewhere = any(
        all(any(_fits(f, t, tol) and usable(t) for t in feed) for f in unknown.filaments)
        for feed in feeds
    )
    plan = match([printer], [unknown], now=0.0)
    assert bool(plan.assignments) == fits_somewhere
