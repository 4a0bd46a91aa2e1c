"""Pure parts of the queue's engine: stage deadlines, confirm verdicts, sightings, summaries."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.jobs.attempt import (
    TASK_ID_LOW,
    Attempt,
    Sighting,
    failure_text,
    is_cancel_error,
    observe,
    remote_name,
    task_id_for,
)
from bambufarm.jobs.dispatch import CandidateReason, WaitReason
from bambufarm.jobs.views import wait_summary
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.jobs.watchdog import (
    ConfirmVerdict,
    Stage,
    StageLimits,
    Watchdog,
    confirm_verdict,
    prepare_reason,
    upload_reason,
)
from bambufarm.protocol.envelope import INT32_MAX
from bambufarm.protocol.job import GcodeState, Job

SHA = "ab" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def attempt(**overrides: object) -> Attempt:
    fields: dict[str, object] = {
        "job_id": 7, "attempt": 2, "serial": "01P00A000000001", "printer": "P1S #1",
        "batch": "b" * 32, "copy_index": 1, "name": "bracket", "sha256": SHA, "size": 1000,
        "plate": 1, "filaments": (),
    }  # fmt: skip
    fields.update(overrides)
    return Attempt(**fields)  # type: ignore[arg-type]


# --- watchdog ------------------------------------------------------------------------------


def test_deadlines_expire_in_order_and_rearming_replaces_them() -> None:
    clock = FakeClock()
    dog = Watchdog(clock)
    dog.arm(1, 1, Stage.UPLOAD, 10)
    dog.arm(2, 1, Stage.CONFIRM, 5)
    dog.arm(3, 1, Stage.PREPARE, 7)
    dog.arm(3, 1, Stage.STOP, 20)  # re-armed: the PREPARE deadline is gone
    dog.disarm(2)
    clock.now += 9.9
    assert dog.due() == []
    clock.now += 0.1
    (first,) = dog.due()
    assert (first.job_id, first.stage, first.limit) == (1, Stage.UPLOAD, 10)
    assert dog.stage(3) is Stage.STOP
    clock.now += 10
    assert [(e.job_id, e.stage) for e in dog.due()] == [(3, Stage.STOP)]
    assert len(dog) == 0


async def test_expired_wakes_for_a_deadline_armed_while_it_sleeps() -> None:
    loop = asyncio.get_running_loop()
    dog = Watchdog(loop.time)
    waiter = asyncio.create_task(dog.expired())
    await asyncio.sleep(0)  # let it sleep with nothing armed
    dog.arm(9, 3, Stage.CONFIRM, 0.05)
    async with asyncio.timeout(2):
        (expiry,) = await waiter
    assert (expiry.job_id, expiry.attempt, expiry.stage) == (9, 3, Stage.CONFIRM)


def test_stage_limits_scale_uploads_with_size_and_refuse_nonsense() -> None:
    limits = StageLimits(upload_min_s=60, upload_min_rate=20_000)
    assert limits.limit(Stage.UPLOAD, size=40_000_000) == 60 + 2000
    assert limits.limit(Stage.PREPARE) == 1800
    with pytest.raises(ValueError, match="prepare_s"):
        StageLimits(prepare_s=0)
    with pytest.raises(ValueError, match="upload_min_rate"):
        StageLimits(upload_min_rate=float("nan"))


@pytest.mark.parametrize(
    ("online", "known", "since", "verdict"),
    [
        (True, True, True, ConfirmVerdict.FAIL),
        (False, True, True, ConfirmVerdict.WAIT),  # out of sight: it may be printing
        (True, False, True, ConfirmVerdict.WAIT),  # no state yet
        (True, True, False, ConfirmVerdict.WAIT),  # silent since the start went out
    ],
)
def test_a_start_is_only_failed_on_fresh_evidence(
    online: bool, known: bool, since: bool, verdict: ConfirmVerdict
) -> None:
    assert confirm_verdict(online=online, state_known=known, reported_since=since) is verdict


def test_reasons_are_concrete() -> None:
    assert upload_reason("P1S #1", 180, 1_500_000, 40_000_000) == (
        "the upload to P1S #1 did not finish within 3 min (1.5 MB of 40.0 MB sent); "
        "check the printer's network and SD card"
    )
    text = prepare_reason("P1S #1", 1800, "filament 1 → AMS 1 slot 3")
    assert "30 min" in text
    assert "filament 1 → AMS 1 slot 3" in text


# --- sightings -----------------------------------------------------------------------------


def test_the_printer_reports_our_attempt_by_task_id() -> None:
    mine = attempt()
    ours = str(mine.task_id)
    running = Job(gcode_state=GcodeState.RUNNING, task_id=ours, subtask_id=ours)
    assert observe(mine, running) is Sighting.RUNNING
    for state, seen in [
        (GcodeState.PREPARE, Sighting.PREPARING),
        (GcodeState.PAUSE, Sighting.PAUSED),
        (GcodeState.FINISH, Sighting.FINISHED),
        (GcodeState.FAILED, Sighting.FAILED),
        (GcodeState.IDLE, Sighting.IDLE),
    ]:
        assert observe(mine, Job(gcode_state=state, task_id=ours)) is seen
    other = Job(gcode_state=GcodeState.RUNNING, task_id="1234567", subtask_name="bracket")
    assert observe(mine, other) is Sighting.ELSEWHERE


def test_without_echoed_ids_the_file_and_name_must_both_match() -> None:
    mine = attempt()
    same = Job(
        gcode_state=GcodeState.RUNNING, task_id="0", file=mine.remote, subtask_name="bracket"
    )
    assert observe(mine, same) is Sighting.RUNNING
    renamed = Job(gcode_state=GcodeState.RUNNING, task_id="0", file=mine.remote, subtask_name="x")
    assert observe(mine, renamed) is Sighting.ELSEWHERE


def test_a_report_that_names_no_job_tells_nothing_unless_idle() -> None:
    mine = attempt()
    assert observe(mine, Job()) is Sighting.UNKNOWN
    assert observe(mine, Job(gcode_state=GcodeState.FINISH)) is Sighting.UNKNOWN
    assert observe(mine, Job(gcode_state=GcodeState.RUNNING)) is Sighting.UNKNOWN
    assert observe(mine, Job(gcode_state=GcodeState.IDLE)) is Sighting.ELSEWHERE


@given(st.text(min_size=1, max_size=32), st.integers(1, 1000), st.integers(1, 100))
def test_task_ids_are_stable_in_range_and_differ_per_attempt(
    batch: str, copy_index: int, number: int
) -> None:
    task = task_id_for(batch, copy_index, number)
    assert TASK_ID_LOW <= task <= INT32_MAX
    assert task == task_id_for(batch, copy_index, number)
    assert task != task_id_for(batch, copy_index, number + 1)


def test_files_are_named_by_content_and_errors_decoded() -> None:
    assert remote_name(SHA) == f"bf-{SHA[:24]}.gcode.3mf"
    assert failure_text(0x0500C010).startswith("0500_C010: The printer could not read")
    assert failure_text(0x12345678) == "1234_5678: Printer error 1234_5678."
    assert failure_text(-1) == "the printer reported error -1"
    assert is_cancel_error(0x0300400C)
    assert not is_cancel_error(0)


# --- summaries and wake-ups ----------------------------------------------------------------


def reason(serial: str, why: WaitReason, detail: str = "d") -> CandidateReason:
    return CandidateReason(serial, why, detail)


def test_wait_summary_counts_reasons_most_actionable_first() -> None:
    text = wait_summary(
        [
            reason("A", WaitReason.BUSY, "printing x (4 %)"),
            reason("B", WaitReason.PLATE_NOT_CLEARED),
            reason("C", WaitReason.BUSY, "printing y (80 %)"),
            reason("D", WaitReason.NOT_TARGETED),
        ]
    )
    assert text == "waiting: none of 3 candidate printers fits now (plate not cleared, busy)"
    # How many printers are busy changes all the time; the summary does not.
    fewer = wait_summary(
        [
            reason("A", WaitReason.PLATE_NOT_CLEARED),
            reason("B", WaitReason.PLATE_NOT_CLEARED),
            reason("C", WaitReason.BUSY, "printing y (80 %)"),
        ]
    )
    assert fewer == text
    one = wait_summary([reason("A", WaitReason.MISSING_FILAMENT, "no PLA #FFFFFF loaded")])
    assert one == "waiting for A: no PLA #FFFFFF loaded"
    # A busy printer's detail moves every round; the summary must not.
    assert wait_summary([reason("A", WaitReason.BUSY, "printing (5 %)")]) == wait_summary(
        [reason("A", WaitReason.BUSY, "printing (6 %)")]
    )
    assert "no printers" in wait_summary([])
    assert "matches the target" in wait_summary([reason("A", WaitReason.NOT_TARGETED, "P1S only")])


async def test_wakeup_folds_pokes_and_times_out_quietly() -> None:
    wakeup = Wakeup()
    quiet = await wakeup.wait(0.01)
    assert quiet.timed_out
    wakeup.poke("job added")
    wakeup.poke("job added")
    wakeup.job_cancelled(4)
    pokes = await wakeup.wait(1)
    assert pokes.reasons == {"job added", "job cancelled"}
    assert pokes.cancelled == {4}
    assert not pokes.timed_out
    assert not wakeup.pending
