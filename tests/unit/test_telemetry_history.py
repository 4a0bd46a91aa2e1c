"""The temperature history: when it samples, how it bounds itself, and what it costs."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.farm.telemetry_history import (
    CAPACITY,
    CHANNELS,
    SAMPLE_BYTES,
    TemperatureHistory,
    sample_of,
)
from bambufarm.fleet.events import ConnectionChanged, EventBus, PrinterRemoved, StateChanged
from bambufarm.protocol.telemetry import Extruder, Temperatures

SERIAL = "01P00A000000001"


class Readings:
    """What the fake fleet reports per serial; tests change it between observations."""

    def __init__(self) -> None:
        self.now: dict[str, Temperatures] = {}

    def __call__(self, serial: str) -> Temperatures | None:
        return self.now.get(serial)


def temps(nozzle: float = 25.0, bed: float = 24.0, bed_target: float = 0.0) -> Temperatures:
    return Temperatures(
        nozzle=nozzle,
        nozzle_target=0.0,
        bed=bed,
        bed_target=bed_target,
        chamber=30.5,
        chamber_target=None,
    )


def history(readings: Readings, **options: float) -> TemperatureHistory:
    return TemperatureHistory(EventBus(), readings, clock=lambda: 0.0, **options)  # type: ignore[arg-type]


def test_one_sample_per_interval_unless_a_target_steps() -> None:
    readings = Readings()
    h = history(readings)
    readings.now[SERIAL] = temps()
    assert h.observe(SERIAL, 0.0)
    readings.now[SERIAL] = temps(nozzle=26.0)
    assert not h.observe(SERIAL, 5.0)  # within 10 s and no target moved
    assert h.observe(SERIAL, 10.0)
    readings.now[SERIAL] = temps(nozzle=26.0, bed_target=60.0)
    assert h.observe(SERIAL, 11.0)  # the bed's target stepped: drawn where it happened
    series = h.series(SERIAL, now=12.0)
    assert series.times == (0.0, 10.0, 11.0)
    assert series.columns["bed_target"] == (0.0, 0.0, 60.0)
    assert series.columns["nozzle"] == (25.0, 26.0, 26.0)
    assert series.columns["chamber"] == (30.5, 30.5, 30.5)
    assert series.columns["chamber_target"] == (None, None, None)
    assert set(series.columns) == set(CHANNELS)


def test_going_offline_breaks_the_line_once_and_the_next_reading_is_kept_at_once() -> None:
    readings = Readings()
    h = history(readings)
    readings.now[SERIAL] = temps()
    h.observe(SERIAL, 0.0)
    h.gap(SERIAL, 1.0)
    h.gap(SERIAL, 2.0)  # one marker per outage
    assert h.observe(SERIAL, 3.0)  # after a gap the first reading is due whatever the interval
    series = h.series(SERIAL, now=4.0)
    assert series.times == (0.0, 1.0, 3.0)
    assert series.columns["bed"] == (24.0, None, 24.0)


def test_the_ring_keeps_the_newest_samples_and_the_window_hides_old_ones() -> None:
    readings = Readings()
    h = history(readings, interval_s=1.0, capacity=5)
    for second in range(12):
        readings.now[SERIAL] = temps(nozzle=float(second))
        h.observe(SERIAL, float(second))
    series = h.series(SERIAL, now=11.0)
    assert series.times == (7.0, 8.0, 9.0, 10.0, 11.0)
    assert series.columns["nozzle"] == (7.0, 8.0, 9.0, 10.0, 11.0)
    # A window of an hour: samples older than it are not returned.
    assert h.series(SERIAL, now=8.5 + 3600.0).times == (9.0, 10.0, 11.0)
    assert h.series("another", now=0.0).times == ()


def test_a_dual_nozzle_printer_has_a_left_and_a_right_nozzle() -> None:
    both = Temperatures(
        nozzle=220.0,
        nozzle_target=220.0,
        extruders=(Extruder(0, temp=215, target=220), Extruder(1, temp=150, target=0)),
    )
    sample = dict(zip(CHANNELS, sample_of(both), strict=True))
    assert (sample["nozzle"], sample["nozzle_target"]) == (2150, 2200)
    assert (sample["left_nozzle"], sample["left_nozzle_target"]) == (1500, 0)


@given(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
def test_any_reading_fits_a_channel(value: float | None) -> None:
    sample = sample_of(Temperatures(nozzle=value))
    assert all(-32768 <= v <= 32767 for v in sample)
    if value is not None and abs(value) < 3000:
        assert sample[0] == round(value * 10)


async def test_events_drive_it_and_a_removed_printer_forgets() -> None:
    readings = Readings()
    bus = EventBus()
    h = TemperatureHistory(bus, readings, clock=lambda: 100.0)
    h.start()
    readings.now[SERIAL] = temps()
    bus.publish(StateChanged(SERIAL, 1.0, frozenset({"job"})))  # no temperatures: not sampled
    bus.publish(StateChanged(SERIAL, 2.0, frozenset({"temperatures"})))
    bus.publish(ConnectionChanged(SERIAL, 3.0, "offline", "gone"))
    bus.publish(ConnectionChanged(SERIAL, 3.5, "stale", "quiet"))  # still connected: no gap
    for _ in range(10):
        await asyncio.sleep(0)  # the follower task takes the queued events in a loop turn
    assert h.series(SERIAL).times == (2.0, 3.0)
    bus.publish(PrinterRemoved(SERIAL, 4.0))
    for _ in range(10):
        await asyncio.sleep(0)  # as above
    assert len(h) == 0
    await h.close()


def test_a_thousand_printers_of_a_full_hour_fit_the_budget() -> None:
    readings = Readings()
    h = history(readings)
    for index in range(1000):
        serial = f"01P00A{index:09d}"
        readings.now[serial] = temps()
        for step in range(CAPACITY + 10):
            h.observe(serial, step * 10.0)
    # 24 bytes a sample, 420 samples, a little per printer for the arrays and the table.
    assert SAMPLE_BYTES == 24
    per_printer = h.memory_bytes() / 1000
    assert CAPACITY * SAMPLE_BYTES <= per_printer < 11_500, per_printer
    print(f"temperature history: {h.memory_bytes() / 1e6:.1f} MB for 1,000 printers")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        history(Readings(), interval_s=0)
