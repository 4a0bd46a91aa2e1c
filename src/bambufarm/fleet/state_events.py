"""The events one merged report causes: changed fields, HMS raised/cleared, print transitions.

Pure and cheap, because it runs for every report of every printer: `merge` already names the
parts a report touched (`PrinterState.changed`), so nothing is diffed here. A part a delta
touched counts as changed even when its values came out equal (a heartbeat repeating a
temperature): comparing values would cost more than the consumers of StateChanged, who read
the state anyway, lose by an occasional no-op. Only the HMS list and the job's state and
layer are compared, and only when the report touched them.
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

_ACTIVE = frozenset({GcodeState.PREPARE, GcodeState.RUNNING})
_IN_JOB = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})


def changed_fields(old: PrinterState, new: PrinterState) -> frozenset[str]:
    """The state attributes the merge from `old` to `new` touched (none if `new is old`)."""
    # merge() returns the very same state for a report that changes nothing, whose `changed`
    # still describes the report before.
    return frozenset() if new is old else new.changed


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
