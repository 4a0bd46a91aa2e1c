"""The manager's view of one printer: `PrinterState`, built by merging reports (protocol.md §1.4).

`merge(state, report)` is pure. A full report (`print.msg == 0`) replaces the printer's wire
object; a delta (`msg == 1`) is deep-merged into it (`rawmerge`). The merged wire object (`raw`)
is the source of truth and is shared copy-on-write with the next state.

The typed parts (`job`, `temperatures`, `ams`, ...) are built from `raw` on first read and kept
by the state. A merge only notes which parts its report touched (`changed`); the others are
carried over as the very same objects. So merging a 1 KB delta costs the raw merge and this
bookkeeping, and a part nobody reads before the next report is built then (`_flush`).

Typed values are converted tolerantly (`coerce`): a field whose wire value cannot be read keeps
the value it had after the report before, so a report is never lost to one odd field. That is
why an unread part is built one report later rather than never: its previous value is an input.
What a part holds never depends on when, or whether, anyone read it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from bambufarm.protocol.ams import Ams, AmsTray, AmsUnit, build_ams
from bambufarm.protocol.coerce import to_hex, to_int
from bambufarm.protocol.firmware import Firmware, FirmwareModule, firmware_from_version
from bambufarm.protocol.job import BUSY_STATES, GcodeState, Job, build_job
from bambufarm.protocol.rawmerge import merge_print
from bambufarm.protocol.report import Report
from bambufarm.protocol.telemetry import (
    NO_LIGHTS,
    Camera,
    Extruder,
    Fans,
    Network,
    Nozzle,
    SdState,
    Speed,
    Storage,
    Temperatures,
    build_camera,
    build_fans,
    build_hms,
    build_lights,
    build_network,
    build_nozzle,
    build_speed,
    build_storage,
    build_temperatures,
)

# The typed parts live in their own modules; this one is where other packages import them from.
__all__ = [
    "BUSY_STATES",
    "FUN_SIGNING_REQUIRED",
    "Ams",
    "AmsTray",
    "AmsUnit",
    "Camera",
    "Extruder",
    "Fans",
    "Firmware",
    "FirmwareModule",
    "GcodeState",
    "Job",
    "Network",
    "Nozzle",
    "PrinterState",
    "SdState",
    "Speed",
    "Storage",
    "Temperatures",
    "empty_state",
    "merge",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Frozen values, so one shared default instance per part is safe.
_JOB0, _TEMPS0, _FANS0, _SPEED0 = Job(), Temperatures(), Fans(), Speed()
_AMS0, _STORAGE0, _NETWORK0 = Ams(), Storage(), Network()
_NOZZLE0, _CAMERA0, _FIRMWARE0 = Nozzle(), Camera(), Firmware()

# `fun` bit 29 set = the printer requires signed MQTT commands, i.e. Developer Mode is off
# (protocol.md §9.3: "3EC1AFFF9CFF" off vs "3EC18FFF9CFF" on).
FUN_SIGNING_REQUIRED = 1 << 29

# (raw, body, previous value, previous raw) -> value; `body` is this report's `print` object.
_Builder = Callable[[Mapping[str, Any], Mapping[str, Any], Any, Mapping[str, Any]], Any]


class _Step:
    """What one merge needs to build the parts its report touched, when they are first read.

    One per merge rather than one per part: a 1 KB delta touches ~7 parts, and each object
    created here is ~0.25 µs on the hot path.
    """

    __slots__ = ("_before", "_body", "_left", "_raw", "built", "names")

    def __init__(
        self,
        raw: Mapping[str, Any],
        body: Mapping[str, Any],
        before: Mapping[str, Any],
        names: frozenset[str],
    ) -> None:
        self._raw = raw
        self._body = body
        self._before = before  # the attributes of the state merged into, every part built
        self._left = len(names)
        self.names = names  # the parts to build
        self.built: dict[str, Any] = {}

    def part(self, name: str) -> Any:
        """The part `name`, built on the first call; later calls return the same object."""
        value = self.built.get(name)  # no part is ever None
        if value is None:
            before = self._before
            value = _BUILDERS[name](self._raw, self._body, before[name], before["raw"])
            self.built[name] = value
            self._left -= 1
            if not self._left:
                # All built: let the previous state's values and wire object go.
                self._before = self._body = _EMPTY
        return value


@dataclass(frozen=True)
class PrinterState:
    """Everything the manager knows about one printer, typed and immutable.

    `raw` is the merged `print` object as sent on the wire, for fields not typed here. It is
    shared with earlier and later states: never mutate it. It does not take part in equality,
    which compares the typed view only. `changed` names the attributes the report merged into
    this state touched (see `merge`). The typed parts are built on first read (`_LazyPart`):
    not slotted, because each state needs an instance dict to keep them in.
    """

    serial: str
    job: Job = _JOB0
    temperatures: Temperatures = _TEMPS0
    fans: Fans = _FANS0
    speed: Speed = _SPEED0
    # node -> mode ("on", "off", "flashing"); read-only mapping
    lights: Mapping[str, str] = field(default_factory=lambda: NO_LIGHTS)
    ams: Ams = _AMS0
    hms: tuple[tuple[int, int], ...] = ()  # active (attr, code) pairs, decoded by protocol.hms
    storage: Storage = _STORAGE0
    network: Network = _NETWORK0
    nozzle: Nozzle = _NOZZLE0
    camera: Camera = _CAMERA0
    firmware: Firmware = _FIRMWARE0
    fun: str | None = None  # capability bits as sent (hex)
    developer_mode: bool | None = None  # None when the printer does not send `fun`
    sequence: int | None = None  # sequence_id of the last push merged
    report_count: int = 0  # pushes merged since empty_state
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    changed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    # How to build the parts touched by the last merge; each built part sits in the
    # instance's own __dict__ under its field name, where attribute lookup finds it first.
    _step: ClassVar[_Step | None] = None

    @property
    def print_error(self) -> int:
        """The current print error (0 = none)."""
        return self.job.print_error


class _LazyPart:
    """Class attribute behind one typed part: builds it on the first read of a state.

    A non-data descriptor, so once the part is in the instance's __dict__ it is found there
    without calling this. Measured here (3.11) for a 20-field state: frozen with slots costs
    2.1 µs to construct (one object.__setattr__ per field) and 82 ns per read of a part memoised
    in a private slot behind a property; without slots, a merge hands the new state a ready
    dict (0.36 µs) and a built part reads in 36 ns. functools.cached_property reads as fast but
    cannot share its name with a dataclass field, and takes a lock on each first read.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, state: PrinterState | None, owner: type | None = None) -> Any:
        if state is None:
            return self
        step = state._step
        if step is None:  # only when a caller emptied the instance dict by hand
            raise AttributeError(self._name)
        value = step.part(self._name)
        state.__dict__[self._name] = value
        return value


def empty_state(serial: str) -> PrinterState:
    """The state of a printer nothing has been heard from yet."""
    return PrinterState(serial)


def merge(state: PrinterState, report: Report) -> PrinterState:
    """The state after `report`; pure: neither `state` nor `report` is modified.

    A report that changes nothing (a command ack, an unknown section) returns `state` itself,
    whose `changed` still describes the report merged before: test `new is state` first.
    Otherwise `new.changed` names the attributes the report touched: for a delta, the parts
    whose wire keys it carries (their values may well be equal to before); for a full report,
    the parts whose wire keys differ; "firmware" for a get_version reply. `sequence` and
    `report_count` change with every push and are not listed.
    """
    new = state
    for name, body in report.sections.items():
        if name == "print":
            new = _merge_print(new, body)
        elif name == "info":
            firmware = firmware_from_version(body, new.firmware)
            if firmware is not None:
                changed = _FIRMWARE_CHANGED | (new.changed if new is not state else frozenset())
                new = _with_firmware(new, firmware, changed)
    return new


# Which typed part each top-level `print` key feeds; a delta rebuilds only the parts it touches.
_PART_OF_KEY: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "gcode_state", "gcode_file", "file", "subtask_name", "mc_percent", "percent",
                "mc_remaining_time", "remain_time", "layer_num", "total_layer_num",
                "mc_print_stage", "stg_cur", "stg", "print_type", "task_id", "subtask_id",
                "project_id", "profile_id", "gcode_start_time", "gcode_file_prepare_percent",
                "print_error", "s_obj", "ams_mapping",
            ),
            "job",
        ),
        **dict.fromkeys(
            (
                "nozzle_temper", "nozzle_target_temper", "bed_temper", "bed_target_temper",
                "chamber_temper", "device",
            ),
            "temperatures",
        ),
        **dict.fromkeys(
            ("cooling_fan_speed", "big_fan1_speed", "big_fan2_speed", "heatbreak_fan_speed"),
            "fans",
        ),
        **dict.fromkeys(("spd_lvl", "spd_mag"), "speed"),
        "lights_report": "lights",
        **dict.fromkeys(("ams", "vt_tray", "vir_slot", "ams_status"), "ams"),
        "hms": "hms",
        **dict.fromkeys(("sdcard", "home_flag", "storage"), "storage"),
        **dict.fromkeys(("wifi_signal", "net"), "network"),
        **dict.fromkeys(("nozzle_diameter", "nozzle_type"), "nozzle"),
        "ipcam": "camera",
        "fun": "fun",
    }
)  # fmt: skip
_KEYS_OF_PART: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        part: tuple(key for key, owner in _PART_OF_KEY.items() if owner == part)
        for part in dict.fromkeys(_PART_OF_KEY.values())
    }
)
# How each lazy part is built from the merged object and its value after the report before.
_BUILDERS: Mapping[str, _Builder] = MappingProxyType(
    {
        "job": lambda raw, body, previous, _: build_job(raw, body, previous),
        "temperatures": lambda raw, _, previous, __: build_temperatures(raw, previous),
        "fans": lambda raw, _, previous, __: build_fans(raw, previous),
        "speed": lambda raw, _, previous, __: build_speed(raw, previous),
        "lights": lambda raw, _, previous, __: build_lights(raw.get("lights_report"), previous),
        "ams": lambda raw, _, previous, previous_raw: build_ams(raw, previous, previous_raw),
        "hms": lambda raw, _, previous, __: build_hms(raw.get("hms"), previous),
        "storage": lambda raw, _, previous, __: build_storage(raw, previous),
        "network": lambda raw, _, previous, __: build_network(raw, previous),
        "nozzle": lambda raw, _, previous, __: build_nozzle(raw, previous),
        "camera": lambda raw, _, previous, __: build_camera(raw.get("ipcam"), previous),
    }
)
# `fun` is the one part built at merge time: it feeds two attributes and is rarely sent.
_FUN_CHANGED = frozenset({"fun", "developer_mode"})
_FIRMWARE_CHANGED = frozenset({"firmware"})

for _name in _BUILDERS:
    setattr(PrinterState, _name, _LazyPart(_name))
del _name


def _changed_parts(new: Mapping[str, Any], old: Mapping[str, Any]) -> set[str]:
    """The parts whose wire keys differ between two full objects (X1 repeats most of them)."""
    changed: set[str] = set()
    for part, keys in _KEYS_OF_PART.items():
        for key in keys:
            if new.get(key) != old.get(key):
                changed.add(part)
                break
    return changed


def _flush(state: PrinterState) -> dict[str, Any]:
    """`state`'s own attribute dict, after building every part still unbuilt into it.

    Merge calls this on the state it merges into: a part still unbuilt then is built from the
    report that touched it and the part before, so that a state keeps no older wire object
    alive and a chain of unread states never forms. The cost is the same build, one report
    later, unless a reader built the part first.
    """
    own = state.__dict__
    step = own.get("_step")
    if step is not None:
        for name in step.names:
            if name not in own:
                own[name] = step.part(name)
        del own["_step"]
    return own


def _new_state(values: dict[str, Any]) -> PrinterState:
    """A PrinterState from a complete attribute dict, without running the field-by-field init."""
    state = object.__new__(PrinterState)
    object.__setattr__(state, "__dict__", values)
    return state


def _merge_print(state: PrinterState, body: Mapping[str, Any]) -> PrinterState:
    """Merge one `print` section; command acks other than push_status change nothing."""
    command = body.get("command")
    if command is not None and command != "push_status":
        return state
    old_raw = state.raw
    msg = body.get("msg")
    if msg in (0, "0") and not isinstance(msg, bool):
        raw: Mapping[str, Any] = body
        touched = _changed_parts(raw, old_raw)
    else:
        # Printers send only changed keys in a delta, so every key present counts as touched.
        raw = merge_print(old_raw, body)
        touched = {_PART_OF_KEY[key] for key in body.keys() & _PART_OF_KEY.keys()}
    before = _flush(state)  # referenced by the _Step below until its parts are built
    values = before.copy()
    changed = frozenset(touched)
    if "fun" in touched:
        touched.discard("fun")
        changed |= _FUN_CHANGED
        values["fun"], values["developer_mode"] = _build_fun(
            raw.get("fun"), before["fun"], before["developer_mode"]
        )
    if touched:
        for name in touched:
            del values[name]  # found by its _LazyPart until built
        values["_step"] = _Step(raw, body, before, frozenset(touched))
    values["sequence"] = _sequence(body.get("sequence_id"), values["sequence"])
    values["report_count"] += 1
    values["raw"] = raw
    values["changed"] = changed
    return _new_state(values)


def _sequence(value: object, previous: int | None) -> int | None:
    """The push's sequence number; a push without one keeps the previous."""
    return previous if value is None else to_int(value, previous)


def _build_fun(
    value: object, previous: str | None, previous_mode: bool | None
) -> tuple[str | None, bool | None]:
    """`fun` as sent and the Developer-Mode flag it implies (bit 29 clear = Developer Mode)."""
    if value is None:
        return None, None
    bits = to_hex(value, None)
    if bits is None:
        return previous, previous_mode
    text = value if isinstance(value, str) else format(bits, "X")
    return text, not bits & FUN_SIGNING_REQUIRED


def _with_firmware(
    state: PrinterState, firmware: Firmware, changed: frozenset[str]
) -> PrinterState:
    """`state` with new firmware details; its unbuilt parts stay unbuilt (and shared)."""
    values = state.__dict__.copy()
    values["firmware"] = firmware
    values["changed"] = changed
    return _new_state(values)
