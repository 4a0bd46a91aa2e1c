"""Heaters of a simulated printer: temperatures that ramp toward their targets.

A linear ramp is enough for a client's point of view (a number that rises, then holds). Once
a heated target is reached the reading wanders ±0.2 °C as a real thermistor does, so a heated
printer keeps producing deltas; an unheated one settles at ambient and goes quiet.
"""

import random
from dataclasses import dataclass

from .identity import PrinterIdentity
from .report_builder import AMBIENT_C, extruder_info, is_full_mode, is_new_protocol, pack_temp
from .report_state import ReportState

JITTER_C = 0.2


@dataclass(slots=True)
class Heater:
    """One heated element (nozzle, bed, chamber) with its ramp rates in °C per second."""

    rise: float
    fall: float
    current: float = AMBIENT_C
    target: float = 0.0  # 0 = off: drift back to ambient

    @property
    def settled(self) -> bool:
        """True when the heater is off and at ambient, so nothing will change by itself."""
        return self.target <= 0 and self.current == AMBIENT_C

    def step(self, dt: float, rng: random.Random, floor: float = AMBIENT_C) -> None:
        """Advance `dt` seconds; `floor` is the temperature the element cools toward."""
        goal = self.target if self.target > 0 else floor
        if self.current < goal:
            self.current = min(goal, self.current + self.rise * dt)
        elif self.current > goal:
            self.current = max(goal, self.current - self.fall * dt)
        elif self.target > 0:
            self.current = goal + rng.uniform(-JITTER_C, JITTER_C)
            return
        if self.target > 0 and abs(self.current - goal) < JITTER_C:
            self.current = goal + rng.uniform(-JITTER_C, JITTER_C)

    def reading(self) -> float:
        """The temperature as reported: one decimal."""
        return round(self.current, 1)


def nozzle() -> Heater:
    """A hotend: fast (about a minute from cold to 220 °C)."""
    return Heater(rise=4.0, fall=2.0)


def bed() -> Heater:
    """A heated bed: about a minute to 60 °C, slow to cool."""
    return Heater(rise=0.8, fall=0.3)


def chamber() -> Heater:
    """An enclosure: warms slowly from the bed, or from a chamber heater when it has one."""
    return Heater(rise=0.05, fall=0.03)


class Thermals:
    """All heaters of one printer, and the report fields that show them."""

    __slots__ = (
        "_bed",
        "_chamber",
        "_chamber_sensor",
        "_device",
        "_nozzles",
        "_report",
        "_rng",
        "_shown_tray",
    )

    def __init__(self, identity: PrinterIdentity, report: ReportState, rng: random.Random) -> None:
        self._nozzles = [nozzle() for _ in range(identity.model.nozzles)]
        self._bed = bed()
        self._chamber = chamber()
        self._report = report
        self._rng = rng
        self._device = is_new_protocol(identity)  # temperatures also packed in `device`
        # X1 and newer models have a real chamber sensor; P1/A1 report a fixed placeholder.
        self._chamber_sensor = is_full_mode(identity) or self._device
        self._shown_tray = -1  # tray_now last written into device.extruder.info[].snow

    @property
    def settled(self) -> bool:
        """True when every heater is off and at ambient: nothing changes by itself."""
        return (
            self._bed.settled
            and all(n.settled for n in self._nozzles)
            and (not self._chamber_sensor or self._chamber.settled)
        )

    def nozzle_hot(self, index: int = 0) -> bool:
        """Whether a nozzle is above 50 °C (its heatbreak fan runs)."""
        return self._nozzles[index].current > 50

    def set_nozzle_target(self, index: int, celsius: float) -> bool:
        """Set a nozzle's target (M104 T<index>); False if the printer has no such nozzle."""
        if not 0 <= index < len(self._nozzles):
            return False
        self._nozzles[index].target = celsius
        if index == 0:
            self._report.put("nozzle_target_temper", float(celsius))
        return True

    def set_bed_target(self, celsius: float) -> None:
        """Set the bed's target (M140)."""
        self._bed.target = celsius
        self._report.put("bed_target_temper", float(celsius))

    def set_chamber_target(self, celsius: float) -> None:
        """Set the chamber's target (M141); only models with a chamber sensor show it."""
        self._chamber.target = celsius

    def all_off(self) -> None:
        """Turn every heater off (end of a job)."""
        for index in range(len(self._nozzles)):
            self.set_nozzle_target(index, 0.0)
        self.set_bed_target(0.0)
        self._chamber.target = 0.0

    def step(self, dt: float, tray_now: int) -> None:
        """Advance every heater `dt` seconds and write the readings into the report."""
        if tray_now == self._shown_tray and self.settled:
            return  # cold and unchanged: the readings already in the report are current
        self._shown_tray = tray_now
        rng = self._rng
        for heater in self._nozzles:
            heater.step(dt, rng)
        self._bed.step(dt, rng)
        put = self._report.put
        put("nozzle_temper", self._nozzles[0].reading())
        put("bed_temper", self._bed.reading())
        put("heatbreak_fan_speed", "15" if self.nozzle_hot() else "0")
        if self._chamber_sensor:
            # An enclosure warms to about a third of the way from ambient to the bed.
            floor = AMBIENT_C + max(0.0, self._bed.current - AMBIENT_C) / 3
            self._chamber.step(dt, rng, floor=floor)
            put("chamber_temper", self._chamber.reading())
        if self._device:
            self._put_device(tray_now)

    def _put_device(self, tray_now: int) -> None:
        # `snow` = the tray feeding nozzle 0 as ams_id << 8 | slot; 0xFFFF when none.
        snow = 0xFFFF if tray_now == 255 else (tray_now // 4) << 8 | tray_now % 4
        temps = [(n.current, n.target) for n in self._nozzles]
        report = self._report
        report.set(("device", "extruder", "info"), extruder_info(temps, snow))
        report.set(
            ("device", "bed", "info", "temp"), pack_temp(self._bed.current, self._bed.target)
        )
        report.set(("device", "ctc", "info", "temp"), int(self._chamber.current))
