"""When a printer's silence makes its link stale or dead, and when to refresh its full report.

Pure: `next_step` looks at when the printer was last heard from and when a full report was
last asked for or received, and says what the session should do now, or until when it may
sleep (issue 4, item 2; protocol.md §1.4).
"""

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """What the session's watchdog does next."""

    SLEEP = "sleep"  # nothing due before `until`
    STALE = "stale"  # silent for stale_after: mark STALE and ask for a full report
    DROP = "drop"  # still silent stale_grace later: drop the link
    REFRESH = "refresh"  # no full report for pushall_every: ask for one


@dataclass(frozen=True, slots=True)
class Timing:
    """The watchdog's limits, in seconds (from the session config)."""

    stale_after: float
    stale_grace: float
    pushall_every: float | None  # None: no periodic refresh


@dataclass(frozen=True, slots=True)
class Plan:
    """The step to take, and for SLEEP the clock time to wake at."""

    step: Step
    until: float = 0.0


def next_step(
    timing: Timing,
    now: float,
    *,
    last_message: float,
    last_full: float,
    last_pushall: float,
    stale_asked: bool,
) -> Plan:
    """The watchdog's next step at clock time `now`."""
    silent = now - last_message
    if silent >= timing.stale_after + timing.stale_grace:
        return Plan(Step.DROP)
    if silent >= timing.stale_after and not stale_asked:
        return Plan(Step.STALE)
    until = last_message + timing.stale_after
    if stale_asked:
        until += timing.stale_grace
    if timing.pushall_every is not None:
        # X1-family printers send full reports all the time, so they never come due.
        refresh_at = max(last_full, last_pushall) + timing.pushall_every
        if refresh_at <= now:
            return Plan(Step.REFRESH)
        until = min(until, refresh_at)
    return Plan(Step.SLEEP, until)
