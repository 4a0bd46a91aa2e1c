"""Reconnect backoff: growth, cap, reset, jitter bounds, and a hundred printers spread out."""

import random

import pytest

from bambufarm.fleet.backoff import Backoff, Jitter


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(base=1, factor=2, cap=30, jitter=Jitter.NONE)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.attempts == 8


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(base=0.5, jitter=Jitter.NONE)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_a_week_of_failures_does_not_overflow() -> None:
    backoff = Backoff(base=1, factor=2, cap=300, jitter=Jitter.NONE)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 300


def test_full_jitter_stays_within_the_ceiling() -> None:
    rng = random.Random(7)
    backoff = Backoff(base=1, factor=2, cap=60, rng=rng.random)
    for attempt in range(12):
        ceiling = backoff.ceiling()
        assert ceiling == min(60, 2**attempt)
        assert 0 <= backoff.next_delay() <= ceiling


def test_equal_jitter_keeps_at_least_half_the_ceiling() -> None:
    backoff = Backoff(base=2, cap=64, jitter=Jitter.EQUAL, rng=random.Random(3).random)
    delays = [(backoff.ceiling(), backoff.next_delay()) for _ in range(10)]
    assert all(ceiling / 2 <= delay <= ceiling for ceiling, delay in delays)


def test_the_rng_decides_where_in_the_window_the_delay_falls() -> None:
    assert Backoff(base=10, rng=lambda: 0.0).next_delay() == 0
    assert Backoff(base=10, rng=lambda: 0.25).next_delay() == 2.5
    assert Backoff(base=10, jitter=Jitter.EQUAL, rng=lambda: 0.0).next_delay() == 5


@pytest.mark.parametrize(
    "kwargs", [{"base": 0}, {"base": -1}, {"base": 10, "cap": 5}, {"factor": 0.5}]
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)


def test_factor_one_is_a_constant_delay() -> None:
    backoff = Backoff(base=3, factor=1, cap=3, jitter=Jitter.NONE)
    assert [backoff.next_delay() for _ in range(3)] == [3, 3, 3]


def test_a_hundred_printers_reconnecting_at_once_are_spread_out() -> None:
    # A switch reboot: 100 printers fail together five times, so each is in the 0..32 s window.
    # Each session owns its Backoff with its own random stream, as the supervisor builds them.
    seeds = random.Random(2021)
    delays = []
    for _ in range(100):
        backoff = Backoff(base=1, factor=2, cap=300, rng=random.Random(seeds.random()).random)
        for _ in range(5):
            backoff.next_delay()
        delays.append(backoff.next_delay())
    assert all(0 <= d <= 32 for d in delays)
    # Uniform over 32 s puts 12.5 printers in each 4-second bucket; no bucket is a stampede
    # and none is empty, and no second of the window takes more than a handful of reconnects.
    buckets = [sum(1 for d in delays if 4 * i <= d < 4 * (i + 1)) for i in range(8)]
    assert min(buckets) >= 4, buckets
    assert max(buckets) <= 25, buckets
    per_second = [sum(1 for d in delays if s <= d < s + 1) for s in range(32)]
    assert max(per_second) <= 10, per_second
    # Without jitter every printer would retry in the same instant.
    unjittered = set()
    for _ in range(100):
        backoff = Backoff(base=1, factor=2, cap=300, jitter=Jitter.NONE)
        unjittered.add([backoff.next_delay() for _ in range(6)][-1])
    assert unjittered == {32}


def test_the_default_rng_spreads_too() -> None:
    firsts = {Backoff(base=10).next_delay() for _ in range(50)}
    assert len(firsts) > 40
    assert all(0 <= d <= 10 for d in firsts)
