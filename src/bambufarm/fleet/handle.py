"""`PrinterHandle`: one printer of the fleet as callers use it — snapshot, commands, uploads.

A handle holds only the fleet and a serial and looks the printer up on every call, so it stays
valid when the printer is updated (new session) and fails with `UnknownPrinter` once removed.
Commands are built with `protocol.commands` (which raise `CommandError` for bad values) and sent
through the printer's session, which guards them (offline, read-only, busy) and waits for the
acknowledgement: every command returns a `CommandResult` (ok, rejected with a reason, timeout,
offline) rather than raising; `result.raise_for_status(serial)` turns it into a fleet error.
"""

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bambufarm.fleet.commands import CommandResult, CommandStatus
from bambufarm.fleet.connection import Connection
from bambufarm.fleet.errors import UploadFailed
from bambufarm.protocol import commands
from bambufarm.protocol.envelope import INT32_MAX, Command
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.ftps import UploadResult
from bambufarm.protocol.models import PrinterModel, model_by_code, model_by_name, model_for_serial
from bambufarm.protocol.state import PrinterState

if TYPE_CHECKING:
    from bambufarm.fleet.config import PrinterConfig, PrinterSnapshot
    from bambufarm.fleet.supervisor import Fleet

# Task ids must differ from the previous job's (P1S treats a repeat as a continuation and stays
# idle) and stay within int32 (protocol.md §1.8.2); ids below a million are left to slicers.
_TASK_ID_LOW = 1_000_000


class PrinterHandle:
    """Commands, uploads and the latest snapshot of one printer in a `Fleet`."""

    __slots__ = ("_fleet", "serial")

    def __init__(self, fleet: "Fleet", serial: str) -> None:
        self._fleet = fleet
        self.serial = serial

    def __repr__(self) -> str:
        return f"PrinterHandle({self.serial!r})"

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> "PrinterSnapshot":
        """Configuration, link and last known state, taken together."""
        return self._fleet.snapshot(self.serial)

    @property
    def config(self) -> "PrinterConfig":
        """The printer's configuration."""
        return self._fleet.snapshot(self.serial).config

    @property
    def connection(self) -> Connection:
        """The link's state and why."""
        return self._fleet.snapshot(self.serial).connection

    @property
    def state(self) -> PrinterState:
        """The last known printer state (kept while offline)."""
        return self._fleet.session(self.serial).state

    def model(self) -> PrinterModel:
        """The printer's model: from its configuration, else from its serial's prefix."""
        config = self.config
        if not config.model:
            return model_for_serial(config.serial)
        try:
            return model_by_code(config.model)
        except ModelError:
            return model_by_name(config.model)

    # ------------------------------------------------------------------ commands

    async def send(self, command: Command, *, timeout: float | None = None) -> CommandResult:  # noqa: ASYNC109 - an ack wait
        """Send a command built with `protocol.commands` (use `next_sequence_id()` for it)."""
        snapshot = self._fleet.snapshot(self.serial)
        if not snapshot.enabled:
            return CommandResult(
                CommandStatus.OFFLINE, f"the printer is {snapshot.connection.reason}"
            )
        return await self._fleet.session(self.serial).send(command, timeout=timeout)

    def next_sequence_id(self) -> str:
        """A fresh sequence_id for a command this printer will receive."""
        return self._fleet.session(self.serial).next_sequence_id()

    async def pause(self) -> CommandResult:
        """Pause the running print."""
        return await self.send(commands.pause(self.next_sequence_id()))

    async def resume(self) -> CommandResult:
        """Resume a paused print."""
        return await self.send(commands.resume(self.next_sequence_id()))

    async def stop(self) -> CommandResult:
        """Cancel the running print."""
        return await self.send(commands.stop(self.next_sequence_id()))

    async def set_light(
        self, on: bool, node: commands.LightNode = commands.LightNode.CHAMBER
    ) -> CommandResult:
        """Switch a light on or off (allowed even without Developer Mode)."""
        mode = commands.LightMode.ON if on else commands.LightMode.OFF
        return await self.send(commands.ledctrl(self.next_sequence_id(), node, mode))

    async def set_speed(self, level: commands.SpeedLevel | int) -> CommandResult:
        """Set the print speed level (1 silent … 4 ludicrous)."""
        return await self.send(commands.print_speed(self.next_sequence_id(), level))

    async def set_nozzle_temp(self, temp: int, extruder: int | None = None) -> CommandResult:
        """Set a nozzle's target temperature in °C."""
        return await self.send(commands.set_nozzle_temp(self.next_sequence_id(), temp, extruder))

    async def set_bed_temp(self, temp: int) -> CommandResult:
        """Set the bed's target temperature in °C."""
        return await self.send(commands.set_bed_temp(self.next_sequence_id(), temp))

    async def set_chamber_temp(self, temp: int) -> CommandResult:
        """Set the chamber's target temperature in °C (heated-chamber models)."""
        return await self.send(commands.set_chamber_temp(self.next_sequence_id(), temp))

    async def set_fan(self, fan: commands.Fan | int, percent: float) -> CommandResult:
        """Set a fan's speed in percent."""
        return await self.send(commands.set_fan(self.next_sequence_id(), fan, percent))

    async def gcode_line(self, gcode: str) -> CommandResult:
        """Run raw G-code (one or more lines)."""
        return await self.send(commands.gcode_line(self.next_sequence_id(), gcode))

    async def ams_load(
        self, ams_id: int, slot_id: int, *, nozzle_temp: int | None = None
    ) -> CommandResult:
        """Load filament from an AMS slot (or an external spool, ams_id 254/255)."""
        command = commands.ams_load(
            self.next_sequence_id(),
            ams_id=ams_id,
            slot_id=slot_id,
            nozzle_temp=nozzle_temp,
            dual_nozzle=self.model().dual_nozzle,
        )
        return await self.send(command)

    async def ams_unload(self, *, nozzle_temp: int | None = None) -> CommandResult:
        """Pull the loaded filament out of the nozzle."""
        command = commands.ams_unload(self.next_sequence_id(), nozzle_temp=nozzle_temp)
        return await self.send(command)

    async def pushall(self) -> CommandResult:
        """Ask for a full report (answered by a report, not an ack; mind the 5-minute rule)."""
        return await self.send(commands.pushall(self.next_sequence_id()))

    async def start_print(
        self,
        file_name: str,
        *,
        plate: int = 1,
        ams_mapping: Sequence[int] | None = None,
        use_ams: bool | None = None,
        task_id: int | None = None,
        subtask_name: str | None = None,
        bed_type: commands.BedType | str = commands.BedType.AUTO,
        timelapse: bool = False,
        bed_leveling: bool = True,
        flow_cali: bool = False,
        vibration_cali: bool = True,
        layer_inspect: bool = False,
        md5: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - an ack wait
    ) -> CommandResult:
        """Start plate `plate` of a 3MF already uploaded to the printer's storage root.

        Refused without sending while a job runs (the firmware may abandon it). `task_id`
        defaults to a fresh random id: a repeated one makes a P1S ignore the job.
        """
        command = commands.project_file(
            self.next_sequence_id(),
            model=self.model(),
            file_name=file_name,
            plate=plate,
            ams_mapping=ams_mapping,
            use_ams=use_ams,
            task_id=_fresh_task_id() if task_id is None else task_id,
            subtask_name=subtask_name,
            bed_type=bed_type,
            timelapse=timelapse,
            bed_leveling=bed_leveling,
            flow_cali=flow_cali,
            vibration_cali=vibration_cali,
            layer_inspect=layer_inspect,
            md5=md5,
        )
        return await self.send(command, timeout=timeout)

    # ------------------------------------------------------------------ files

    async def upload(
        self,
        local: Path | bytes,
        remote: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> UploadResult:
        """Upload a file to the printer over FTPS, one transfer per printer at a time.

        Raises UploadFailed (nothing is left under `remote`) or AuthFailed for a wrong code.
        """
        uploader = self._fleet.uploader
        if uploader is None:
            raise UploadFailed(
                f"printer {self.serial}: uploads are not set up in this fleet", serial=self.serial
            )
        target = self._fleet.upload_target(self.serial)
        return await uploader.upload(target, local, remote, progress)


def _fresh_task_id() -> int:
    # Unique per job, not secret: uniqueness matters (see _TASK_ID_LOW), unpredictability not.
    return random.SystemRandom().randint(_TASK_ID_LOW, INT32_MAX)
