"""The print job as the printer reports it (protocol.md §1.5.1), and how `ams_mapping` survives.

`ams_mapping` is sent once, in the delta that starts a job, and never in full reports
(protocol.md §1.4), so it is carried from state to state until the printer starts another job.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bambufarm.protocol.coerce import to_int, to_int_tuple, to_str


class GcodeState(StrEnum):
    """The printer's job state (`gcode_state`); UNKNOWN for anything not in the protocol."""

    IDLE = "IDLE"
    PREPARE = "PREPARE"
    RUNNING = "RUNNING"
    PAUSE = "PAUSE"
    FINISH = "FINISH"
    FAILED = "FAILED"
    SLICING = "SLICING"
    INIT = "INIT"
    UNKNOWN = "UNKNOWN"


_GCODE_STATES = MappingProxyType({s.value: s for s in GcodeState})
# Studio's "busy" test (protocol.md §1.10).
BUSY_STATES = frozenset(
    {GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING}
)
_ENDED_STATES = frozenset({GcodeState.IDLE, GcodeState.FINISH, GcodeState.FAILED})


@dataclass(frozen=True, slots=True)
class Job:
    """The current or last print job (protocol.md §1.5.1)."""

    gcode_state: GcodeState = GcodeState.UNKNOWN
    file: str = ""  # the job's 3MF: `file` on newer models, else `gcode_file`
    gcode_file: str = ""  # as sent; on X1 the extracted plate G-code path
    subtask_name: str = ""
    progress: int | None = None  # percent
    remaining_minutes: int | None = None  # mc_remaining_time is minutes, not seconds (§0.3)
    layer: int | None = None
    total_layers: int | None = None
    print_stage: int | None = None  # mc_print_stage: 1 idle, 2 printing
    stage: int | None = None  # stg_cur (§1.5.8); -1 or 255 idle
    stages: tuple[int, ...] = ()  # stg
    print_type: str = ""
    task_id: str = ""
    subtask_id: str = ""
    project_id: str = ""
    profile_id: str = ""
    gcode_start_time: int | None = None  # unix seconds
    prepare_percent: int | None = None
    print_error: int = 0
    skipped_objects: tuple[int, ...] = ()  # s_obj
    # Sent once in the job-start delta and never in full reports (§1.4): kept until the
    # printer starts another job. Index = 3MF filament slot, value = global tray id.
    ams_mapping: tuple[int, ...] | None = None

    @property
    def busy(self) -> bool:
        """True while a job occupies the printer (PREPARE, RUNNING, PAUSE, SLICING)."""
        return self.gcode_state in BUSY_STATES


def build_job(raw: Mapping[str, Any], body: Mapping[str, Any], previous: Job) -> Job:
    """The typed job from the merged object; `ams_mapping` comes from this report only."""
    state_value = raw.get("gcode_state")
    if state_value is None:
        gcode_state = GcodeState.UNKNOWN
    elif type(state_value) is str:
        gcode_state = _GCODE_STATES.get(state_value.strip().upper(), GcodeState.UNKNOWN)
    else:
        gcode_state = previous.gcode_state
    gcode_file = to_str(raw.get("gcode_file"), previous.gcode_file)
    file_value = raw.get("file")
    file = (
        gcode_file if file_value is None or file_value == "" else to_str(file_value, previous.file)
    )
    subtask_name = to_str(raw.get("subtask_name"), previous.subtask_name)
    task_id = to_str(raw.get("task_id"), previous.task_id)
    subtask_id = to_str(raw.get("subtask_id"), previous.subtask_id)
    progress = raw.get("mc_percent")
    if progress is None:
        progress = raw.get("percent")  # newer models' alias
    remaining = raw.get("mc_remaining_time")
    if remaining is None:
        remaining = raw.get("remain_time")
    mapping = previous.ams_mapping
    sent = body.get("ams_mapping")
    if sent is not None:
        # project_file allows "" for "no mapping" (§12 rule 13); printers may echo it.
        mapping = () if sent == "" else to_int_tuple(sent, mapping or ())
    elif mapping is not None and (
        (previous.gcode_state in _ENDED_STATES and gcode_state in BUSY_STATES)
        or (previous.subtask_name, previous.file, previous.task_id, previous.subtask_id)
        != (subtask_name, file, task_id, subtask_id)
    ):
        # (inferred) Another job started: the state left IDLE/FINISH/FAILED for a busy one,
        # or the job's names or ids changed. Its mapping, if any, arrives in this job's delta.
        mapping = None
    return Job(
        gcode_state,
        file,
        gcode_file,
        subtask_name,
        to_int(progress, previous.progress),
        to_int(remaining, previous.remaining_minutes),
        to_int(raw.get("layer_num"), previous.layer),
        to_int(raw.get("total_layer_num"), previous.total_layers),
        to_int(raw.get("mc_print_stage"), previous.print_stage),
        to_int(raw.get("stg_cur"), previous.stage),
        to_int_tuple(raw.get("stg"), previous.stages),
        to_str(raw.get("print_type"), previous.print_type),
        task_id,
        subtask_id,
        to_str(raw.get("project_id"), previous.project_id),
        to_str(raw.get("profile_id"), previous.profile_id),
        to_int(raw.get("gcode_start_time"), previous.gcode_start_time),
        to_int(raw.get("gcode_file_prepare_percent"), previous.prepare_percent),
        to_int(raw.get("print_error"), previous.print_error) or 0,
        to_int_tuple(raw.get("s_obj"), previous.skipped_objects),
        mapping,
    )
