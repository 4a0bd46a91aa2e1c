"""The session watchdog's decisions (fleet.health): stale, drop, periodic full-report refresh."""

import pytest

from bambufarm.fleet.health import Plan, Step, Timing, next_step

TIMING = Timing(stale_after=60.0, stale_grace=10.0, pushall_every=300.0)


def plan(now: float, *, message: float = 0.0, full: float = 0.0, pushall: float = 0.0,
         asked: bool = False, timing: Timing = TIMING) -> Plan:  # fmt: skip
    return next_step(
        timing, now, last_message=message, last_full=full, last_pushall=pushall, stale_asked=asked
    )


def test_a_talking_printer_sleeps_until_it_could_go_stale() -> None:
    assert plan(30.0, message=29.0) == Plan(Step.SLEEP, 89.0)


@pytest.mark.parametrize("now", [60.0, 65.0, 69.9])
def test_silence_for_stale_after_asks_for_a_full_report_once(now: float) -> None:
    assert plan(now).step is Step.STALE
    assert plan(now, asked=True) == Plan(Step.SLEEP, 70.0)  # then waits out the grace


@pytest.mark.parametrize("asked", [False, True])
def test_silence_past_the_grace_drops_the_link(asked: bool) -> None:
    assert plan(70.0, asked=asked).step is Step.DROP
    assert plan(500.0, asked=asked).step is Step.DROP


def test_a_delta_printer_gets_a_refresh_every_pushall_every() -> None:
    # Talking all along (last message just now), last full report at 0, last pushall at 0.
    assert plan(299.0, message=298.5) == Plan(Step.SLEEP, 300.0)
    assert plan(300.0, message=299.5).step is Step.REFRESH
    # After asking at 300 the next refresh is due at 600 (the answer moves it further).
    assert plan(301.0, message=300.5, pushall=300.0) == Plan(Step.SLEEP, 360.5)
    assert plan(590.0, message=589.5, pushall=300.0) == Plan(Step.SLEEP, 600.0)


def test_a_full_reporting_printer_never_comes_due() -> None:
    for now in (100.0, 1_000.0, 10_000.0):
        result = plan(now, message=now - 1, full=now - 1)
        assert result == Plan(Step.SLEEP, now - 1 + 60.0)


def test_no_refresh_when_turned_off() -> None:
    off = Timing(stale_after=60.0, stale_grace=10.0, pushall_every=None)
    assert plan(10_000.0, message=9_999.0, timing=off) == Plan(Step.SLEEP, 10_059.0)


def test_stale_checks_come_before_the_refresh() -> None:
    assert plan(400.0, message=300.0).step is Step.DROP
    assert plan(365.0, message=300.0).step is Step.STALE
