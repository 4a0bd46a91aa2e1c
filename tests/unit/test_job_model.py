"""The job state machine and the typed Job/JobSpec (pure: no database)."""

from collections import deque
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.jobs.dispatch import ANY_PRINTER, Target
from bambufarm.jobs.model import (
    DISPATCHABLE,
    FINISHED,
    ON_PRINTER,
    PROGRESS_STATES,
    TRANSITIONS,
    UNFINISHED,
    IllegalTransition,
    Job,
    JobSpec,
    JobState,
    allowed_from,
    can_transition,
    cancel,
    check_transition,
    claim,
    fail,
    retry,
    transition,
)
from bambufarm.storage.job_tables import JOB_STATES
from bambufarm.storage.jobs import JobRecord
from bambufarm.storage.unset import UNSET

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def _reachable(start: JobState) -> set[JobState]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_states_are_the_stored_vocabulary_in_the_same_order() -> None:
    assert tuple(s.value for s in JobState) == JOB_STATES


def test_every_state_has_its_transitions_and_they_stay_inside_the_machine() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for targets in TRANSITIONS.values():
        assert targets <= set(JobState)


def test_done_is_final_and_failed_or_cancelled_only_retry() -> None:
    assert TRANSITIONS[JobState.DONE] == frozenset()
    assert TRANSITIONS[JobState.FAILED] == {JobState.QUEUED}
    assert TRANSITIONS[JobState.CANCELLED] == {JobState.QUEUED}
    assert {JobState.DONE, JobState.FAILED, JobState.CANCELLED} == FINISHED
    assert set(JobState) - FINISHED == UNFINISHED
    assert all(s.finished for s in FINISHED)
    assert not any(s.finished for s in UNFINISHED)


def test_every_state_is_reachable_from_queued_and_every_job_can_still_end_done() -> None:
    assert _reachable(JobState.QUEUED) == set(JobState)
    for state in JobState:
        assert JobState.DONE in _reachable(state)


def test_once_past_uploading_a_job_never_goes_back_to_the_queue_in_the_same_attempt() -> None:
    # The write-ahead rule: `starting` is stored before project_file is sent, so any state
    # after it may end the attempt (failed, cancelled, done) but never requeue it.
    for state in (JobState.STARTING, JobState.PRINTING, JobState.PAUSED, JobState.AWAITING_CLEAR):
        assert JobState.QUEUED not in TRANSITIONS[state]
        assert JobState.WAITING not in TRANSITIONS[state]
        assert JobState.UPLOADING not in TRANSITIONS[state]


def test_groups_of_states() -> None:
    assert {JobState.QUEUED, JobState.WAITING} == DISPATCHABLE
    assert JobState.UPLOADING in ON_PRINTER
    assert not ON_PRINTER & (DISPATCHABLE | FINISHED)
    assert PROGRESS_STATES <= ON_PRINTER


def test_allowed_from_is_the_inverse_of_transitions() -> None:
    for to in JobState:
        assert allowed_from(to) == {s for s in JobState if to in TRANSITIONS[s]}
    assert allowed_from(JobState.DONE) == {
        JobState.STARTING,
        JobState.PRINTING,
        JobState.AWAITING_CLEAR,
    }


@given(st.sampled_from(JobState), st.sampled_from(JobState))
def test_check_transition_agrees_with_can_transition(current: JobState, to: JobState) -> None:
    if can_transition(current, to):
        check_transition(current, to)
    else:
        with pytest.raises(IllegalTransition, match=f"a {current} job cannot become {to}"):
            check_transition(current, to)


def test_an_illegal_move_says_what_the_job_can_do_instead() -> None:
    with pytest.raises(IllegalTransition, match="can become: queued"):
        check_transition(JobState.FAILED, JobState.PRINTING)
    with pytest.raises(IllegalTransition, match=r"nothing \(it is final\)"):
        check_transition(JobState.DONE, JobState.CANCELLED)


def test_claim_starts_a_new_attempt_on_one_printer() -> None:
    change = claim("01P00A000000001")
    assert change.to == "uploading"
    assert change.allowed_from == {"queued", "waiting"}
    assert change.printer_serial == "01P00A000000001"
    assert change.new_attempt
    assert change.reset
    assert change.reason is None


def test_uploading_is_reached_only_by_a_claim() -> None:
    with pytest.raises(IllegalTransition, match="claim"):
        transition(JobState.UPLOADING)


def test_changes_carry_the_stamps_their_target_implies() -> None:
    printing = transition(JobState.PRINTING)
    assert printing.stamp_started
    assert not printing.stamp_finished
    assert not printing.reset
    assert printing.allowed_from == {"starting", "paused"}
    assert printing.reason is UNSET
    for change in (transition(JobState.DONE), fail("nozzle clog"), cancel("by alice")):
        assert change.stamp_finished
        assert not change.stamp_started
    assert fail("nozzle clog").reason == "nozzle clog"
    assert fail("x").allowed_from == {s.value for s in allowed_from(JobState.FAILED)}
    assert cancel("by alice").allowed_from == {
        "queued",
        "waiting",
        "uploading",
        "starting",
        "printing",
        "paused",
    }


def test_back_to_the_queue_clears_the_previous_attempt() -> None:
    requeue = transition(JobState.QUEUED)
    assert requeue.reset
    assert requeue.reason is None
    assert not requeue.new_attempt
    again = retry()
    assert again.to == "queued"
    assert again.reset
    assert again.allowed_from == {"failed", "cancelled"}
    assert retry("operator asked").reason == "operator asked"


def test_waiting_may_be_entered_again_when_its_reason_changes() -> None:
    change = transition(JobState.WAITING, reason="all P1S busy")
    assert "waiting" in change.allowed_from
    assert change.reason == "all P1S busy"


@pytest.mark.parametrize(
    ("target", "serial", "models"),
    [
        (ANY_PRINTER, None, ()),
        (Target.printer("01P00A000000001"), "01P00A000000001", ()),
        (Target.of_models("C12", "3DPrinter-X1-Carbon"), None, ("BL-P001", "C12")),
    ],
)
def test_a_spec_becomes_storage_values_and_a_record_becomes_a_typed_job(
    target: Target, serial: str | None, models: tuple[str, ...]
) -> None:
    spec = JobSpec(SHA, "cube", plate=2, copies=3, priority=5, due=T0, target=target)
    new = spec.to_new_job()
    assert (new.target_serial, new.target_models) == (serial, models)
    assert (new.plate, new.copies, new.priority, new.due_at) == (2, 3, 5, T0)
    record = JobRecord(
        id=7, batch="b" * 32, copy_index=2, copies=3, name="cube", file_sha256=SHA, plate=2,
        priority=5, position=2048, due_at=T0, target_serial=serial, target_models=models,
        state="printing", reason=None, printer_serial="01P00A000000009", attempt=1,
        progress=40, layer=60, remaining_s=1800, created_by="alice", created_at=T0,
        updated_at=T0, started_at=T0, finished_at=None,
    )  # fmt: skip
    job = Job.from_record(record)
    assert job.target == target
    assert job.state is JobState.PRINTING
    assert not job.finished
    assert (job.printer, job.attempt, job.progress, job.due) == ("01P00A000000009", 1, 40, T0)
