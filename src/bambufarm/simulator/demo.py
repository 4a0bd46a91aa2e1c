"""The demo's activity: a few simulated printers start printing a sample job at once.

Jobs go the way a real client's would: the file lands on the printer's SD card and a
`project_file` request goes through the printer's request topic, so acks and reports reach
every connected client exactly as they would from hardware.
"""

import logging

from bambufarm.protocol import commands
from bambufarm.protocol.models import PrinterModel

from .fleet import SimFleet
from .node import PrinterNode
from .sample_files import FilamentSpec, PlateSpec, build_gcode_3mf

logger = logging.getLogger(__name__)

# Which printers of the demo mix print at start (by position) and which raise an HMS warning.
PRINTING = (0, 1, 3)
HMS_WARNING = 4
# AMS 1 "humidity high" style warning: module AMS (0x07), severity common (3).
_HMS_ATTR, _HMS_CODE = 0x0700_0100, 0x0003_0001
_TASK_BASE = 1_000_000


def demo_job(model: PrinterModel, hours: float) -> bytes:
    """A one-plate sliced file for `model` that takes `hours` of simulated time."""
    plate = PlateSpec(
        prediction_s=int(hours * 3600),
        weight_g=42.5,
        layers=240,
        filaments=(FilamentSpec(slot=1, type="PLA", color="#FFFFFF", used_g=42.5, used_m=14.2),),
        objects=((101, "Calibration cube.stl"),),
    )
    return build_gcode_3mf(plates=(plate,), printer_model_id=model.code)


def start_job(node: PrinterNode, file_name: str, data: bytes, *, task_id: int) -> None:
    """Put `data` on the printer's card and ask it to print plate 1 from AMS tray 0."""
    node.storage.write_file(file_name, data)
    model = node.spec.identity.model
    mapping = [0] if node.spec.identity.ams else [commands.EXTERNAL_SPOOL]
    request = commands.project_file(
        str(20_000 + task_id % 10_000),
        model=model,
        file_name=file_name,
        ams_mapping=mapping,
        task_id=task_id,
    )
    node.on_publish(node.request_topic, request.payload)


def start_demo_jobs(fleet: SimFleet) -> list[str]:
    """Start the demo prints and warnings; returns the names of the printers printing."""
    started = []
    for position in PRINTING:
        if position >= len(fleet.nodes):
            continue
        node = fleet.nodes[position]
        hours = 1.0 + position * 0.75
        data = demo_job(node.spec.identity.model, hours)
        start_job(node, "demo_cube.gcode.3mf", data, task_id=_TASK_BASE + position)
        started.append(node.spec.identity.name)
    if len(fleet.nodes) > HMS_WARNING:
        fleet.nodes[HMS_WARNING].printer.inject_hms(_HMS_ATTR, _HMS_CODE)
    return started
