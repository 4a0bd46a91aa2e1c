"""Pre-staging's decisions on fixture states: which file goes where early, and which job a free
printer takes when it already holds a file (FIFO bends among equals, priority never)."""

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from bambufarm.fleet.events import EventBus
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.jobs.dispatch import JobRequest, PrinterView, match
from bambufarm.jobs.library import Library
from bambufarm.jobs.staging import Staging
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.models import model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import PrinterState, empty_state, merge
from bambufarm.protocol.threemf import PlateFilament
from tests.support.reports import load_report

P1S = model_by_name("P1S")
A, B = "01P00A000000001", "01P00A000000002"
WHITE = (PlateFilament(1, "GFA00", "PLA", "#FFFFFF", 10.0, 3.3),)
FILES = {"1": "a" * 64, "2": "b" * 64, "3": "c" * 64}


def state(serial: str, **fields: Any) -> PrinterState:
    """The P1S fixture (white PLA in AMS slot 1) with a delta of `fields`."""
    merged = merge(empty_state(serial), parse_report(load_report("p1s_full")))
    body = {"command": "push_status", "msg": 1, "sequence_id": "1", **fields}
    return merge(merged, parse_report(orjson.dumps({"print": body})))


def view(serial: str, **fields: Any) -> PrinterView:
    return PrinterView(serial, serial, P1S, state(serial, **fields))


def job(job_id: str, *, priority: int = 0, created: float = 0) -> JobRequest:
    return JobRequest(job_id, "C12", WHITE, 0.4, priority=priority, created=created)


def staging(tmp_path: Path) -> Staging:
    # The fleet only answers "is an upload running to this printer"; no printer is added.
    fleet = Fleet(bus=EventBus(), tls=TlsPolicy(TlsMode.INSECURE))
    library = Library(tmp_path, None)  # type: ignore[arg-type]  # no file is read here
    return Staging(fleet=fleet, library=library, wakeup=Wakeup())


def test_printers_that_free_first_get_the_queue_head_staged(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    soon = view(A, gcode_state="RUNNING", mc_remaining_time=5)
    late = view(B, gcode_state="RUNNING", mc_remaining_time=50)
    jobs = [job("1", created=1), job("2", created=2)]
    planned = stage.plan([late, soon], jobs, FILES, now=0.0, spare=4)
    assert sorted(planned) == [(A, FILES["1"]), (B, FILES["2"])]
    # The next round guesses nothing new: each printer and job keeps its earmark.
    assert stage.plan([late, soon], jobs, FILES, now=1.0, spare=4) == []


def test_no_spare_transfer_slot_means_no_pre_stage_yet(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    busy = view(A, gcode_state="RUNNING", mc_remaining_time=5)
    assert stage.plan([busy], [job("1")], FILES, now=0.0, spare=0) == []
    # Planned once a slot is free: the job was not earmarked without its upload.
    assert stage.plan([busy], [job("1")], FILES, now=1.0, spare=1) == [(A, FILES["1"])]


def test_idle_and_held_printers_are_not_staged(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    stage.add(A, FILES["1"])
    holding = view(A, gcode_state="RUNNING", mc_remaining_time=5)
    idle = view(B, gcode_state="IDLE")
    assert stage.plan([holding, idle], [job("1")], FILES, now=0.0, spare=4) == []


def test_a_free_printer_takes_a_job_whose_file_it_holds_among_equals(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    stage.add(A, FILES["2"])
    free = view(A, gcode_state="IDLE")
    jobs = [job("1", created=1), job("2", created=2)]
    plan = match([free], jobs, now=0.0)
    assert [a.job_id for a in plan.assignments] == ["1"]
    chosen, passed = stage.prefer_held(plan.assignments, {A: free}, jobs, FILES, now=0.0)
    assert [(a.job_id, a.serial) for a in chosen] == [("2", A)]
    assert passed == ["1"]


def test_priority_is_never_bent_for_a_held_file(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    stage.add(A, FILES["2"])
    free = view(A, gcode_state="IDLE")
    jobs = [job("1", priority=5), job("2", priority=0)]
    plan = match([free], jobs, now=0.0)
    chosen, passed = stage.prefer_held(plan.assignments, {A: free}, jobs, FILES, now=0.0)
    assert [a.job_id for a in chosen] == ["1"]
    assert passed == []


def test_a_held_job_the_printer_cannot_print_is_not_swapped_in(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    stage.add(A, FILES["2"])
    free = view(A, gcode_state="IDLE")
    other = (PlateFilament(1, "GFA00", "PLA", "#123456", 10.0, 3.3),)
    jobs = [job("1", created=1), dataclasses.replace(job("2", created=2), filaments=other)]
    plan = match([free], jobs, now=0.0)
    chosen, passed = stage.prefer_held(plan.assignments, {A: free}, jobs, FILES, now=0.0)
    assert [a.job_id for a in chosen] == ["1"]
    assert passed == []


def test_a_free_printer_leaves_a_job_staged_elsewhere_to_that_printer(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    printing = view(A, gcode_state="RUNNING", mc_remaining_time=5)
    jobs = [job("1", created=1), job("2", created=2)]
    assert stage.plan([printing], jobs[:1], FILES, now=0.0, spare=1) == [(A, FILES["1"])]
    free = view(B, gcode_state="IDLE")
    plan = match([free], jobs, now=0.0)
    assert [a.job_id for a in plan.assignments] == ["1"]
    chosen, passed = stage.prefer_held(plan.assignments, {B: free}, jobs, FILES, now=0.0)
    assert [(a.job_id, a.serial) for a in chosen] == [("2", B)]
    assert passed == ["1"]


def test_a_job_is_passed_over_for_held_files_a_few_times_only(tmp_path: Path) -> None:
    stage = staging(tmp_path)
    stage.add(A, FILES["2"])
    free = view(A, gcode_state="IDLE")
    jobs = [job("1", created=1), job("2", created=2)]
    plan = match([free], jobs, now=0.0)
    taken = []
    for _ in range(5):
        chosen, _passed = stage.prefer_held(plan.assignments, {A: free}, jobs, FILES, now=0.0)
        taken.append(chosen[0].job_id)
    assert taken == ["2", "2", "2", "1", "1"]
