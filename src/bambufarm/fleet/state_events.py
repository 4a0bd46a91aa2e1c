"""The events one merged report causes: changed fields, HMS raised/cleared, print transitions.

Pure and cheap, because it runs for every report of every printer: `merge` keeps every typed
part a report did not touch as the same object, so "changed" is an identity check per field
(~1 µs for all of them). A part a delta rebuilt counts as changed even when its values came out
equal (a heartbeat repeating a temperature): comparing values would cost more than the
consumers of StateChanged, who read the state anyway, lose by an occasional no-op.
"""

from bambufarm.fleet.events import (
    Event,
    HmsCleared,
    HmsRaised,
    LayerChanged,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)
from bambufarm.protocol.errors import HmsError
from bambufarm.protocol.hms import HmsCode
from bambufarm.protocol.state import GcodeState, Job, PrinterState

# Top-level PrinterState fields a StateChanged event can name. `sequence`, `report_count` and
# `raw` change with every push and say nothing on their own.
TRACKED_FIELDS = (
    "job", "temperatures", "fans", "speed", "lights", "ams", "hms", "storage", "network",
    "nozzle", "camera", "firmware", "fun", "developer_mode",
)  # fmt: skip

_ACTIVE = frozenset({GcodeState.PREPARE, GcodeState.RUNNING})
_IN_JOB = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})


def changed_fields(old: PrinterState, new: PrinterState) -> frozenset[str]:
    """The tracked fields that `new` does not share with `old` (rebuilt by the merge)."""
    if old is new:
        return frozenset()
    changed = []
    for name in TRACKED_FIELDS:
        before = getattr(old, name)
        after = getattr(new, name)
        if before is not after:
            changed.append(name)
    return frozenset(changed)


def state_events(
    old: PrinterState, new: PrinterState, changed: frozenset[str], at: float
) -> list[Event]:
    """Every event the step from `old` to `new` causes (StateChanged first), or none."""
    if not changed:
        return []
    serial = new.serial
    events: list[Event] = [StateChanged(serial, at, changed)]
    if "hms" in changed:
        events.extend(_hms_events(old.hms, new.hms, serial, at))
    if "job" in changed:
        events.extend(_job_events(old.job, new.job, serial, at))
    return events


def _hms_events(
    before: tuple[tuple[int, int], ...], after: tuple[tuple[int, int], ...], serial: str, at: float
) -> list[Event]:
    events: list[Event] = []
    old, new = set(before), set(after)
    for attr, code in after:
        if (attr, code) not in old:
            hms = _code(attr, code)
            if hms is not None:
                events.append(HmsRaised(serial, at, hms.display, hms.severity.value))
    for attr, code in before:
        if (attr, code) not in new:
            hms = _code(attr, code)
            if hms is not None:
                events.append(HmsCleared(serial, at, hms.display, hms.severity.value))
    return events


def _code(attr: int, code: int) -> HmsCode | None:
    """The decoded HMS pair; None for values outside uint32 (the state keeps them as sent)."""
    try:
        return HmsCode.from_wire(attr, code)
    except HmsError:
        return None


def _job_events(old: Job, new: Job, serial: str, at: float) -> list[Event]:
    events: list[Event] = []
    was, now = old.gcode_state, new.gcode_state
    name = new.subtask_name or new.file or old.subtask_name or old.file
    error = new.print_error
    # Nothing is known before the first report (UNKNOWN): a printer found mid-print did not
    # just start, it is just being seen.
    if was != now and was is not GcodeState.UNKNOWN:
        if now in _ACTIVE and was not in _IN_JOB:
            events.append(PrintStarted(serial, at, name, error))
        elif now is GcodeState.PAUSE and was in _ACTIVE:
            events.append(PrintPaused(serial, at, name, error))
        elif now in _ACTIVE and was is GcodeState.PAUSE:
            events.append(PrintResumed(serial, at, name, error))
        elif was in _IN_JOB and now is GcodeState.FINISH:
            events.append(PrintFinished(serial, at, name, error))
        elif was in _IN_JOB and now in (GcodeState.FAILED, GcodeState.IDLE):
            events.append(PrintFailed(serial, at, name, error))
    # Layer 0 is the warm-up of a new job (PREPARE), not a layer reached.
    if new.layer and new.layer != old.layer and now in _IN_JOB:
        events.append(LayerChanged(serial, at, new.layer, new.total_layers or 0))
    return events
