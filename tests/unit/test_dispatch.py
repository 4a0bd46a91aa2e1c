"""jobs.dispatch.match on printer states merged from the report fixtures (protocol.md §1.5).

Fixture facts the tests lean on (tests/fixtures/reports):
* p1s_full: RUNNING "benchy" 37 %, no `fun`, 0.4 mm; AMS 1: slot 1 PLA #FFFFFF 82 % of 1000 g,
  slot 2 PETG #161616 remain unknown; no external spool loaded.
* x1c_full: RUNNING, Developer Mode on; AMS 1: ABS #000000 550 g, ABS #FFFFFF 1000 g;
  external PLA #F5E6C8, grams unknown.
* x1c_multi_ams_full: IDLE; AMS 1 PLA #7D6556 / PLA #0A2989 (120 g) / PETG #FFFFFF (400 g) /
  TPU #FF6A13; AMS 2 PLA #C0C0C0 / PLA #00AE42 / ASA #2850E0 / PLA-CF #000000 (15 g);
  AMS HT (128) PA6-CF #262626 880 g.
* h2d_full: RUNNING, Developer Mode on, dual nozzle; AMS 1 PLA #FFFFFF 730 g, PLA #000000
  180 g; right external spool (255) PETG #00FF00, grams unknown.
* a1_ams_lite_full: FINISH, Developer Mode off; AMS Lite PLA #F72323 640 g, PLA #FEC600 970 g,
  PLA #0086D6 unknown; external PETG #FFFFFF (alpha 80).
"""

import dataclasses
import random
from typing import Any

import orjson
import pytest

from bambufarm.jobs.dispatch import (
    ANY_PRINTER,
    CandidateReason,
    DispatchInputError,
    DispatchPlan,
    JobRequest,
    PrinterView,
    Target,
    WaitReason,
    match,
)
from bambufarm.jobs.filament_match import delta_e, parse_colour
from bambufarm.protocol.commands import EXTERNAL_LEFT, EXTERNAL_SPOOL
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import PrinterModel, model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import PrinterState, empty_state, merge
from bambufarm.protocol.threemf import PlateFilament, read_3mf
from tests.support.reports import load_report
from tests.support.threemf_factory import FilamentSpec, PlateSpec, build_gcode_3mf

P1S, X1C, H2D, A1 = (model_by_name(n) for n in ("P1S", "X1C", "H2D", "A1"))
P1S_A, P1S_B, P1S_C = "01P00A000000001", "01P00A000000002", "01P00A000000003"
X1C_A, H2D_A, A1_A = "00M00A000000001", "09400A000000001", "03900A000000001"
DEV_MODE_ON = "3EC18FFF9CFF"


# --- building states and requests ----------------------------------------------------------


def state_of(serial: str, *fixtures: str, **fields: Any) -> PrinterState:
    """Merge the named fixtures, then a delta with `fields` (if any)."""
    state = empty_state(serial)
    for name in fixtures:
        state = merge(state, parse_report(load_report(name)))
    return push(state, **fields) if fields else state


def push(state: PrinterState, **fields: Any) -> PrinterState:
    """Merge one push_status delta carrying `fields`."""
    body = {"command": "push_status", "msg": 1, "sequence_id": "1", **fields}
    return merge(state, parse_report(orjson.dumps({"print": body})))


def tray(slot: int, kind: str = "", color: str = "", remain: int = -1, weight: str = "0") -> Any:
    """A wire tray object; an empty `kind` is an empty slot."""
    if not kind:
        return {"id": str(slot)}
    return {
        "id": str(slot),
        "tray_type": kind,
        "tray_color": color,
        "remain": remain,
        "tray_weight": weight,
    }


def loaded_state(
    serial: str,
    *trays: Any,
    external: Any = None,
    gcode_state: str = "IDLE",
    nozzle: str = "0.4",
    **fields: Any,
) -> PrinterState:
    """A full report with one AMS holding `trays` (none: no AMS) and an optional vt_tray."""
    body: dict[str, Any] = {
        "command": "push_status",
        "msg": 0,
        "sequence_id": "1",
        "gcode_state": gcode_state,
        "nozzle_diameter": nozzle,
        **fields,
    }
    if trays:
        body["ams"] = {"ams": [{"id": "0", "tray": list(trays)}]}
    if external is not None:
        body["vt_tray"] = external
    return merge(empty_state(serial), parse_report(orjson.dumps({"print": body})))


def view(
    serial: str,
    model: PrinterModel,
    state: PrinterState,
    **kwargs: Any,
) -> PrinterView:
    return PrinterView(serial, f"printer-{serial[-3:]}", model, state, **kwargs)


def idle_p1s(serial: str = P1S_A, **kwargs: Any) -> PrinterView:
    """The P1S fixture after its print ended and the plate was cleared."""
    return view(serial, P1S, state_of(serial, "p1s_full", gcode_state="IDLE"), **kwargs)


def fil(slot: int, kind: str | None, color: str | None, grams: float | None = 10.0) -> Any:
    return PlateFilament(slot, None, kind, color, grams, None if grams is None else grams / 3)


def job(
    job_id: str,
    *filaments: PlateFilament,
    model: str = "C12",
    nozzle: float | None = 0.4,
    **kwargs: Any,
) -> JobRequest:
    return JobRequest(job_id, model, filaments or (fil(1, "PLA", "#FFFFFF"),), nozzle, **kwargs)


def only_reason(plan: DispatchPlan, job_id: str, serial: str) -> CandidateReason:
    """The reason `job_id` gives for `serial`; the job must be waiting."""
    assert not any(a.job_id == job_id for a in plan.assignments), f"{job_id} was assigned"
    found = [r for r in plan.waiting[job_id] if r.serial == serial]
    assert len(found) == 1
    return found[0]


# --- the happy path and the mapping --------------------------------------------------------


def test_idle_p1s_takes_a_white_pla_job_from_ams_slot_1() -> None:
    plan = match([idle_p1s()], [job("j1", fil(1, "PLA", "#FFFFFF", 17.3))], now=100.0)
    assert plan.now == 100.0
    assert plan.waiting == {}
    (assignment,) = plan.assignments
    assert (assignment.job_id, assignment.serial) == ("j1", P1S_A)
    assert assignment.ams_mapping.flat == (0,)
    assert assignment.ams_mapping.slots == ((0, 0),)
    assert assignment.ams_mapping.uses_ams
    (choice,) = assignment.trays
    assert (choice.slot, choice.tray_id, choice.location) == (1, 0, "AMS 1 slot 1")
    assert (choice.type, choice.color) == ("PLA", "#FFFFFF")
    assert choice.grams_left == pytest.approx(820.0)  # 82 % of 1000 g
    assert choice.grams_needed == pytest.approx(17.3)
    assert not assignment.filament_unverified


def test_type_case_sub_brand_and_alpha_are_ignored() -> None:
    # Tray: PLA (sub-brand "PLA Basic"), FFFFFFFF; plate: lower case type and colour.
    plan = match([idle_p1s()], [job("j1", fil(1, "pla", "#ffffff"))], now=0)
    assert plan.assignments[0].trays[0].tray_id == 0
    # The A1's external spool is PETG FFFFFF80: alpha 0x80 does not change the colour.
    a1 = view(A1_A, A1, state_of(A1_A, "a1_ams_lite_full"), read_only=False)
    plan = match([a1], [job("j2", fil(1, "PETG", "#FFFFFF"), model="N2S")], now=0)
    assert plan.assignments[0].ams_mapping.slots == ((EXTERNAL_SPOOL, 0),)


def test_unused_project_slots_stay_unmapped() -> None:
    # Filaments 1 and 3 of the project are on the plate; ams_mapping[1] must be -1.
    x1c = view(X1C_A, X1C, state_of(X1C_A, "x1c_multi_ams_full"))
    plate = (fil(1, "PLA", "#0A2989", 20), fil(3, "PETG", "#FFFFFF", 300))
    plan = match([x1c], [job("j1", *plate, model="BL-P001")], now=0)
    mapping = plan.assignments[0].ams_mapping
    assert mapping.flat == (1, -1, 2)
    assert mapping.slots == ((0, 1), (255, 255), (0, 2))
    assert [c.slot for c in plan.assignments[0].trays] == [1, 3]


def test_second_ams_unit_and_ams_ht_trays() -> None:
    x1c = view(X1C_A, X1C, state_of(X1C_A, "x1c_multi_ams_full"))
    plate = (fil(1, "PLA", "#00AE42"), fil(2, "PA6-CF", "#262626", 100))
    plan = match([x1c], [job("j1", *plate, model="BL-P001")], now=0)
    assignment = plan.assignments[0]
    # AMS 2 slot 2 is global tray 1*4+1 = 5; the AMS HT is unit 128, slot 0.
    assert assignment.ams_mapping.flat == (5, 128)
    assert assignment.ams_mapping.slots == ((1, 1), (128, 0))
    assert [c.location for c in assignment.trays] == ["AMS 2 slot 2", "AMS HT 1"]
    assert assignment.trays[1].grams_left == pytest.approx(880.0)
    # PLA #00AE42 is a non-RFID spool: accepted, but its amount is not known.
    assert assignment.filament_unverified


def test_printer_without_ams_prints_from_the_external_spool() -> None:
    # Legacy firmware reports the one external spool as 254; the mapping names it 255 (§1.8.2).
    state = loaded_state(P1S_A, external=tray(254, "PLA", "000000FF"))
    plan = match([view(P1S_A, P1S, state)], [job("j1", fil(1, "PLA", "#000000"))], now=0)
    assignment = plan.assignments[0]
    assert assignment.ams_mapping.flat == (-1,)
    assert assignment.ams_mapping.slots == ((EXTERNAL_SPOOL, 0),)
    assert not assignment.ams_mapping.uses_ams
    assert assignment.trays[0].location == "external spool"
    assert assignment.filament_unverified


def test_dual_nozzle_mixes_ams_and_both_external_spools() -> None:
    state = state_of(
        H2D_A,
        "h2d_full",
        gcode_state="IDLE",
        vir_slot=[
            tray(255, "PETG", "00FF00FF"),
            tray(254, "TPU", "FF0000FF"),
        ],
    )
    plate = (fil(1, "PLA", "#FFFFFF"), fil(2, "PETG", "#00FF00"), fil(3, "TPU", "#FF0000"))
    plan = match([view(H2D_A, H2D, state)], [job("j1", *plate, model="O1D")], now=0)
    mapping = plan.assignments[0].ams_mapping
    assert mapping.flat == (0, -1, -1)
    assert mapping.slots == ((0, 0), (EXTERNAL_SPOOL, 0), (EXTERNAL_LEFT, 0))
    assert mapping.uses_ams
    locations = [c.location for c in plan.assignments[0].trays]
    assert locations == ["AMS 1 slot 1", "right external spool", "left external spool"]


def test_single_nozzle_never_mixes_ams_and_external_spool() -> None:
    state = loaded_state(
        P1S_A, tray(0, "PLA", "FFFFFFFF", 80, "1000"), external=tray(254, "TPU", "000000FF")
    )
    printer = view(P1S_A, P1S, state)
    mixed = job("mixed", fil(1, "PLA", "#FFFFFF"), fil(2, "TPU", "#000000"))
    tpu_only = job("tpu", fil(1, "TPU", "#000000"))
    plan = match([printer], [mixed], now=0)
    reason = only_reason(plan, "mixed", P1S_A)
    assert reason.reason is WaitReason.MISSING_FILAMENT
    assert "not both" in reason.detail
    assert "the AMS has no TPU #000000" in reason.detail
    plan = match([printer], [tpu_only], now=0)
    assert plan.assignments[0].ams_mapping.slots == ((EXTERNAL_SPOOL, 0),)
    assert not plan.assignments[0].ams_mapping.uses_ams


def test_two_filaments_of_one_colour_share_a_tray_and_its_grams() -> None:
    state = loaded_state(P1S_A, tray(0, "PLA", "FFFFFFFF", 50, "1000"))  # 500 g
    printer = view(P1S_A, P1S, state)
    fits = job("fits", fil(1, "PLA", "#FFFFFF", 200), fil(2, "PLA", "#FFFFFF", 250))
    plan = match([printer], [fits], now=0)
    assert plan.assignments[0].ams_mapping.flat == (0, 0)
    too_much = job("too_much", fil(1, "PLA", "#FFFFFF", 300), fil(2, "PLA", "#FFFFFF", 250))
    reason = only_reason(match([printer], [too_much], now=0), "too_much", P1S_A)
    assert reason.reason is WaitReason.NOT_ENOUGH_FILAMENT
    # The 300 g filament is served first; 200 g are left for the 250 g one.
    assert reason.detail == "PLA #FFFFFF (filament 2): 250 g needed, ~200 g left on AMS 1 slot 1"


# --- tray preference -------------------------------------------------------------------


def test_prefers_the_tray_with_most_filament_then_ams_then_lowest_id() -> None:
    state = loaded_state(
        P1S_A,
        tray(0, "PLA", "FFFFFFFF", 10, "1000"),  # 100 g
        tray(1, "PLA", "FFFFFFFF", 60, "1000"),  # 600 g
        tray(2, "PLA", "FFFFFFFF", 60, "1000"),  # 600 g, higher id
    )
    plan = match([view(P1S_A, P1S, state)], [job("j1")], now=0)
    assert plan.assignments[0].trays[0].tray_id == 1
    # Unknown amounts rank after any tray known to hold enough, AMS before external.
    state = state_of(H2D_A, "h2d_full", gcode_state="IDLE", vir_slot=[tray(255, "PLA", "FFFFFFFF")])
    plan = match([view(H2D_A, H2D, state)], [job("j2", model="O1D")], now=0)
    assert plan.assignments[0].trays[0].location == "AMS 1 slot 1"
    unknown = loaded_state(
        H2D_A, tray(3, "PLA", "FFFFFFFF"), vir_slot=[tray(255, "PLA", "FFFFFFFF")]
    )
    plan = match([view(H2D_A, H2D, unknown)], [job("j3", model="O1D")], now=0)
    assert plan.assignments[0].trays[0].location == "AMS 1 slot 4"


def test_known_empty_spool_is_refused_even_when_grams_needed_are_unknown() -> None:
    state = loaded_state(P1S_A, tray(0, "PLA", "FFFFFFFF", 0, "1000"))
    reason = only_reason(
        match([view(P1S_A, P1S, state)], [job("j1", fil(1, "PLA", "#FFFFFF", None))], now=0),
        "j1",
        P1S_A,
    )
    assert reason.reason is WaitReason.NOT_ENOUGH_FILAMENT
    assert "~0 g left on AMS 1 slot 1" in reason.detail


def test_colour_tolerance_accepts_near_colours_and_prefers_exact() -> None:
    near = loaded_state(P1S_A, tray(0, "PLA", "FDFDFDFF", 90, "1000"))
    exact_too = loaded_state(
        P1S_B, tray(0, "PLA", "FDFDFDFF", 90, "1000"), tray(1, "PLA", "FFFFFFFF", 10, "1000")
    )
    strict = job("strict")
    reason = only_reason(match([view(P1S_A, P1S, near)], [strict], now=0), "strict", P1S_A)
    assert reason.reason is WaitReason.MISSING_FILAMENT
    lenient = job("lenient", color_tolerance=2.0)
    plan = match([view(P1S_A, P1S, near)], [lenient], now=0)
    assert plan.assignments[0].trays[0].color == "#FDFDFD"
    plan = match([view(P1S_B, P1S, exact_too)], [lenient], now=0)
    assert plan.assignments[0].trays[0].color == "#FFFFFF"  # exact beats fuller-but-near
    # FAFAFA is ΔE 1.73 from white: outside a tolerance of 1.5, inside one of 2.
    greyish = loaded_state(P1S_C, tray(0, "PLA", "FAFAFAFF", 90, "1000"))
    tight = job("tight", color_tolerance=1.5)
    reason = only_reason(match([view(P1S_C, P1S, greyish)], [tight], now=0), "tight", P1S_C)
    assert reason.reason is WaitReason.MISSING_FILAMENT
    assert match([view(P1S_C, P1S, greyish)], [lenient], now=0).assignments
    far = job("far", fil(1, "PLA", "#FF0000"), color_tolerance=2.0)
    reason = only_reason(match([view(P1S_A, P1S, near)], [far], now=0), "far", P1S_A)
    assert reason.reason is WaitReason.MISSING_FILAMENT


def test_colour_difference_is_cie76_in_lab() -> None:
    assert delta_e(0xFFFFFF, 0x000000) == pytest.approx(100.0, abs=0.01)  # L* 100 -> 0
    # sRGB red is L*a*b* (53.24, 80.09, 67.20).
    assert delta_e(0xFF0000, 0x000000) == pytest.approx(117.3, abs=0.1)
    assert delta_e(0x123456, 0x123456) == 0
    assert parse_colour("#abc") == 0xAABBCC
    assert parse_colour("FFFFFF80") == 0xFFFFFF
    assert parse_colour("") is None
    assert parse_colour("#GGGGGG") is None
    assert parse_colour("#12345") is None


# --- every reason ------------------------------------------------------------------------


def test_offline_and_maintenance() -> None:
    printers = [idle_p1s(P1S_A, online=False), idle_p1s(P1S_B, enabled=False)]
    plan = match(printers, [job("j1")], now=0)
    assert only_reason(plan, "j1", P1S_A) == CandidateReason(
        P1S_A, WaitReason.OFFLINE, "not connected"
    )
    assert only_reason(plan, "j1", P1S_B) == CandidateReason(
        P1S_B, WaitReason.MAINTENANCE, "disabled for maintenance"
    )


def test_read_only_when_developer_mode_is_off() -> None:
    a1 = view(A1_A, A1, state_of(A1_A, "a1_ams_lite_full"))  # fun bit 29 set
    red = job("red", fil(1, "PLA", "#F72323"), model="N2S")
    reason = only_reason(match([a1], [red], now=0), "red", A1_A)
    assert reason.reason is WaitReason.READ_ONLY
    assert "enable Developer Mode" in reason.detail
    turned_on = view(A1_A, A1, push(a1.state, fun=DEV_MODE_ON))
    assert match([turned_on], [red], now=0).assignments[0].serial == A1_A
    # The caller's own judgement wins over the state's.
    forced = view(A1_A, A1, turned_on.state, read_only=True)
    assert only_reason(match([forced], [red], now=0), "red", A1_A).reason is WaitReason.READ_ONLY


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({}, "printing benchy (37 %, 83 min left)"),
        ({"gcode_state": "PAUSE"}, "a print is paused"),
        ({"gcode_state": "PREPARE"}, "preparing a print"),
        ({"gcode_state": "SLICING"}, "slicing a job"),
    ],
)
def test_busy_while_a_job_runs(fields: dict[str, Any], detail: str) -> None:
    printer = view(P1S_A, P1S, state_of(P1S_A, "p1s_full", **fields))
    reason = only_reason(match([printer], [job("j1")], now=0), "j1", P1S_A)
    assert (reason.reason, reason.detail) == (WaitReason.BUSY, detail)


def test_busy_when_reserved_or_never_reported() -> None:
    reserved = idle_p1s(P1S_A, reserved_for="j0")
    silent = view(P1S_B, P1S, empty_state(P1S_B))
    plan = match([reserved, silent], [job("j1", nozzle=None)], now=0)
    assert only_reason(plan, "j1", P1S_A).detail == "reserved for job j0"
    assert only_reason(plan, "j1", P1S_B) == CandidateReason(
        P1S_B, WaitReason.BUSY, "no status report received yet"
    )


def test_plate_not_cleared_after_finish_and_failure() -> None:
    finished = state_of(A1_A, "a1_ams_lite_full")  # FINISH
    failed = state_of(P1S_A, "p1s_full", gcode_state="FAILED")
    printers = [
        view(A1_A, A1, finished, read_only=False, plate_cleared=False),
        view(P1S_A, P1S, failed, plate_cleared=False),
    ]
    jobs = [job("a1job", fil(1, "PLA", "#F72323"), model="N2S"), job("p1sjob")]
    plan = match(printers, jobs, now=0)
    a1_reason = only_reason(plan, "a1job", A1_A)
    assert a1_reason.reason is WaitReason.PLATE_NOT_CLEARED
    assert a1_reason.detail == "the last print finished; confirm the plate is cleared"
    assert only_reason(plan, "p1sjob", P1S_A).detail.startswith("the last print failed")


def test_wrong_model_and_wrong_nozzle() -> None:
    x1c = view(X1C_A, X1C, state_of(X1C_A, "x1c_multi_ams_full"))
    plan = match([x1c, idle_p1s()], [job("j1", nozzle=0.6)], now=0)
    assert only_reason(plan, "j1", X1C_A) == CandidateReason(
        X1C_A, WaitReason.WRONG_MODEL, "file sliced for P1S, printer is X1C"
    )
    assert only_reason(plan, "j1", P1S_A) == CandidateReason(
        P1S_A, WaitReason.WRONG_NOZZLE, "file sliced for a 0.6 mm nozzle, printer has 0.4 mm"
    )


def test_nozzle_not_reported_yet() -> None:
    unknown = loaded_state(P1S_A, tray(0, "PLA", "FFFFFFFF"), nozzle_diameter=None)
    assert unknown.nozzle.diameter is None
    plan = match([view(P1S_A, P1S, unknown)], [job("j1")], now=0)
    reason = only_reason(plan, "j1", P1S_A)
    assert reason.reason is WaitReason.WRONG_NOZZLE
    assert "has not reported its nozzle" in reason.detail
    # Offline says more than an unknown nozzle.
    plan = match([view(P1S_A, P1S, unknown, online=False)], [job("j1")], now=0)
    assert only_reason(plan, "j1", P1S_A).reason is WaitReason.OFFLINE
    # A file that does not name its nozzle runs on it.
    assert match([view(P1S_A, P1S, unknown)], [job("j2", nozzle=None)], now=0).assignments


def test_missing_filament_names_material_colour_and_slot() -> None:
    plate = (fil(1, "PLA", "#FFFFFF"), fil(2, "PLA", "#000000"), fil(4, "ASA", "#123456"))
    plan = match([idle_p1s()], [job("j1", *plate)], now=0)
    assert only_reason(plan, "j1", P1S_A) == CandidateReason(
        P1S_A,
        WaitReason.MISSING_FILAMENT,
        "no PLA #000000 loaded (filament 2); no ASA #123456 loaded (filament 4)",
    )


def test_not_enough_filament_names_grams_and_tray() -> None:
    plan = match([idle_p1s()], [job("j1", fil(1, "PLA", "#FFFFFF", 900))], now=0)
    assert only_reason(plan, "j1", P1S_A) == CandidateReason(
        P1S_A,
        WaitReason.NOT_ENOUGH_FILAMENT,
        "PLA #FFFFFF (filament 1): 900 g needed, ~820 g left on AMS 1 slot 1",
    )


def test_higher_priority_job_takes_the_printer() -> None:
    low = job("low", priority=0, created=1)
    high = job("high", priority=5, created=2)
    plan = match([idle_p1s()], [low, high], now=0)
    assert [a.job_id for a in plan.assignments] == ["high"]
    assert only_reason(plan, "low", P1S_A) == CandidateReason(
        P1S_A,
        WaitReason.HIGHER_PRIORITY_JOB,
        "job high, ahead in the queue, takes this printer this round",
    )


def test_not_targeted_by_serial_or_model() -> None:
    printers = [idle_p1s(P1S_A), idle_p1s(P1S_B)]
    plan = match(printers, [job("j1", target=Target.printer(P1S_B))], now=0)
    assert [(a.job_id, a.serial) for a in plan.assignments] == [("j1", P1S_B)]
    plan = match(printers, [job("j2", target=Target.printer("01P00A999999999"))], now=0)
    reason = only_reason(plan, "j2", P1S_A)
    assert reason.reason is WaitReason.NOT_TARGETED
    assert reason.detail == "job is for printer 01P00A999999999 (not in the fleet) only"
    plan = match([printers[0]], [job("j3", target=Target.printer(P1S_B))], now=0)
    assert "not in the fleet" in only_reason(plan, "j3", P1S_A).detail
    x1c_only = job("j4", target=Target.of_models("BL-P001", "3DPrinter-X1-Carbon"))
    reason = only_reason(match(printers, [x1c_only], now=0), "j4", P1S_B)
    assert reason == CandidateReason(P1S_B, WaitReason.NOT_TARGETED, "job is for X1C printers only")


def test_targeting_names_the_printer() -> None:
    printers = [idle_p1s(P1S_A), idle_p1s(P1S_B, online=False)]
    plan = match(printers, [job("j1", target=Target.printer(P1S_B))], now=0)
    assert only_reason(plan, "j1", P1S_A).detail == f"job is for printer-002 ({P1S_B}) only"
    assert only_reason(plan, "j1", P1S_B).reason is WaitReason.OFFLINE


def test_permanent_reasons_come_before_passing_ones() -> None:
    # Offline and wrong model: the model is what the operator must fix.
    x1c = view(X1C_A, X1C, state_of(X1C_A, "x1c_full"), online=False)
    assert only_reason(match([x1c], [job("j1")], now=0), "j1", X1C_A).reason is (
        WaitReason.WRONG_MODEL
    )
    # Busy and missing filament: wait for the print, the AMS may change.
    busy = view(P1S_A, P1S, state_of(P1S_A, "p1s_full"))
    black = job("j2", fil(1, "PLA", "#000000"))
    assert only_reason(match([busy], [black], now=0), "j2", P1S_A).reason is WaitReason.BUSY


# --- order and determinism ---------------------------------------------------------------


def test_queue_order_is_priority_then_due_then_created() -> None:
    printers = [idle_p1s(s) for s in (P1S_A, P1S_B, P1S_C)]
    jobs = [
        job("late", created=1, due=500.0),
        job("no_due", created=0),
        job("urgent", created=9, due=100.0),
        job("vip", created=10, priority=1),
    ]
    plan = match(printers, jobs, now=0)
    assert [a.job_id for a in plan.assignments] == ["vip", "urgent", "late"]
    assert [r.reason for r in plan.waiting["no_due"]] == [WaitReason.HIGHER_PRIORITY_JOB] * 3


def test_idle_longest_printer_first_then_lowest_serial() -> None:
    printers = [
        idle_p1s(P1S_A, ready_since=50.0),
        idle_p1s(P1S_B, ready_since=10.0),
        idle_p1s(P1S_C),
    ]
    jobs = [job(f"j{i}", created=i) for i in range(3)]
    plan = match(printers, jobs, now=60.0)
    assert [(a.job_id, a.serial) for a in plan.assignments] == [
        ("j0", P1S_B),
        ("j1", P1S_A),
        ("j2", P1S_C),
    ]
    plan = match([idle_p1s(P1S_C), idle_p1s(P1S_A), idle_p1s(P1S_B)], jobs[:1], now=0)
    assert plan.assignments[0].serial == P1S_A


def test_reasons_cover_every_printer_in_serial_order() -> None:
    printers = [
        idle_p1s(P1S_C),
        view(X1C_A, X1C, state_of(X1C_A, "x1c_full")),
        idle_p1s(P1S_A, online=False),
        view(A1_A, A1, state_of(A1_A, "a1_ams_lite_full")),
    ]
    plan = match(printers, [job("j1", fil(1, "PLA", "#ABCDEF"))], now=0)
    assert [r.serial for r in plan.waiting["j1"]] == sorted(p.serial for p in printers)


def test_the_same_inputs_in_any_order_give_the_same_plan() -> None:
    printers = [
        idle_p1s(P1S_A),
        idle_p1s(P1S_B, ready_since=3.0),
        idle_p1s(P1S_C, online=False),
        view(X1C_A, X1C, state_of(X1C_A, "x1c_multi_ams_full")),
        view(H2D_A, H2D, state_of(H2D_A, "h2d_full", gcode_state="IDLE")),
    ]
    jobs = [
        job("a", created=1),
        job("b", created=1),
        job("c", fil(1, "PLA", "#7D6556"), model="BL-P001", priority=2),
        job("d", fil(1, "PLA", "#000000", 100), model="O1D"),
        job("e", fil(1, "PLA", "#000000", 500), model="O1D", due=5.0),
        job("f", created=0, target=Target.printer(P1S_C)),
    ]
    first = match(printers, jobs, now=7.0)
    rng = random.Random(4)
    for _ in range(5):
        rng.shuffle(printers)
        rng.shuffle(jobs)
        assert match(printers, jobs, now=7.0) == first
    # c first (priority); e (due) needs 500 g of black, the H2D has 180 g; d (created 0) then
    # fits it; f waits for its offline printer; a and b tie on created, so by id, and P1S_B
    # has been idle longest.
    assert [(a.job_id, a.serial) for a in first.assignments] == [
        ("c", X1C_A),
        ("d", H2D_A),
        ("a", P1S_B),
        ("b", P1S_A),
    ]
    assert only_reason(first, "e", H2D_A).reason is WaitReason.NOT_ENOUGH_FILAMENT
    assert only_reason(first, "f", P1S_C).reason is WaitReason.OFFLINE


def test_empty_fleet_and_empty_queue() -> None:
    assert match([], [], now=0) == DispatchPlan(0, (), {})
    plan = match([], [job("j1")], now=0)
    assert plan.waiting == {"j1": ()}


# --- inputs the matcher refuses ------------------------------------------------------------


def test_duplicate_printers_and_jobs_are_refused() -> None:
    with pytest.raises(DispatchInputError, match="printer 01P00A000000001 is listed twice"):
        match([idle_p1s(), idle_p1s()], [], now=0)
    with pytest.raises(DispatchInputError, match="job j1 is listed twice"):
        match([], [job("j1"), job("j1", priority=3)], now=0)


def test_bad_requests_are_refused_when_built() -> None:
    with pytest.raises(ModelError, match="Z9"):
        job("j1", model="Z9")
    with pytest.raises(ModelError, match="Q1"):
        Target.of_models("Q1")
    with pytest.raises(DispatchInputError, match="not both"):
        Target(serial=P1S_A, models=frozenset({"C12"}))
    with pytest.raises(DispatchInputError, match="at least one"):
        Target.of_models()
    with pytest.raises(DispatchInputError, match="distinct"):
        job("j1", fil(1, "PLA", "#FFFFFF"), fil(1, "PLA", "#000000"))
    with pytest.raises(DispatchInputError, match="1-64"):
        job("j1", fil(0, "PLA", "#FFFFFF"))
    with pytest.raises(DispatchInputError, match="color_tolerance"):
        job("j1", color_tolerance=-1.0)
    with pytest.raises(DispatchInputError, match="used_g"):
        job("j1", fil(1, "PLA", "#FFFFFF", float("nan")))
    with pytest.raises(DispatchInputError, match="nozzle"):
        job("j1", nozzle=0.0)
    with pytest.raises(DispatchInputError, match="state is for"):
        PrinterView(P1S_A, "p", P1S, empty_state(P1S_B))


def test_target_models_are_canonical_codes() -> None:
    assert Target.of_models("3DPrinter-X1-Carbon").models == frozenset({"BL-P001"})
    assert Target() == ANY_PRINTER


# --- from a sliced file ------------------------------------------------------------------


def test_request_for_a_plate_of_a_sliced_file() -> None:
    data = build_gcode_3mf(
        plates=(
            PlateSpec(),
            PlateSpec(filaments=(FilamentSpec(slot=2, type="PLA", color="#FFFFFF", used_g=40),)),
        ),
        printer_model_id="C12",
        nozzle_diameter=0.4,
    )
    file = read_3mf(data)
    request = JobRequest.for_plate("j1", file, file.plate(2), priority=3)
    assert (request.printer_model_id, request.nozzle_diameter, request.priority) == ("C12", 0.4, 3)
    plan = match([idle_p1s()], [request], now=0)
    assert plan.assignments[0].ams_mapping.flat == (-1, 0)
    unnamed = dataclasses.replace(file, printer_model_id=None)
    with pytest.raises(DispatchInputError, match="which printer model"):
        JobRequest.for_plate("j2", unnamed, file.plate(1))
