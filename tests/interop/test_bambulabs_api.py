"""`bambulabs-api` 2.6.6, a public client written for real printers, against the simulator.

The library is thread based (paho's network thread, blocking ftplib, a camera thread), so every
call into it runs through `asyncio.to_thread` and state it updates on its own thread is polled.
Nothing here changes the library: it is used as its README shows, with the custom ports its
sub-clients accept.
"""

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bambulabs_api.camera_client import PrinterCamera
from bambulabs_api.ftp_client import PrinterFTPClient
from bambulabs_api.mqtt_client import PrinterMQTTClient
from bambulabs_api.states_info import GcodeState, PrintStatus
from PIL import Image

from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import ManifestPrinter
from tests.support.printer_clients import TIMEOUT, eventually
from tests.support.sim import running_fleet
from tests.support.threemf_factory import PlateSpec, build_gcode_3mf

pytestmark = [
    pytest.mark.interop,
    # PrinterMQTTClient.__init__ calls paho's tls_set(tls_version=ssl.PROTOCOL_TLS), and
    # Python 3.10+ deprecates that constant; the library gives no way to pass a context.
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]

# 500 simulated seconds per real second: preparation (~120 s) takes a quarter of a second,
# while a 10-hour plate keeps printing for over a minute, long enough to pause and resume.
TIME_SCALE = 500.0
TICK_INTERVAL = 0.05
PLATE_SECONDS = 36_000
# The padding G-code deflates about 3:1; this gives an archive just over 1 MiB.
PADDING_BYTES = 3_500_000


Env = tuple[SimFleet, ManifestPrinter]


@pytest.fixture
async def p1s(tmp_path: Path) -> AsyncIterator[Env]:
    """One simulated P1S with a fast clock."""
    async with running_fleet(
        tmp_path, models=("P1S",), time_scale=TIME_SCALE, tick_interval=TICK_INTERVAL
    ) as (fleet, manifest):
        yield fleet, manifest.printers[0]


@pytest.fixture
async def mqtt(p1s: Env) -> AsyncIterator[PrinterMQTTClient]:
    """The library's MQTT client, connected and holding a first full report."""
    _, printer = p1s
    client = PrinterMQTTClient(
        printer.host, printer.access_code, printer.serial, port=printer.ports.mqtt
    )
    client.connect()
    client.start()
    try:
        await eventually(client.ready, "the first report through bambulabs-api")
        yield client
    finally:
        # The library has no disconnect(): its stop() only ends paho's thread and would leave
        # the TLS socket open, so the paho client it wraps is disconnected directly.
        client._client.disconnect()
        await asyncio.to_thread(client.stop)


def _state(client: PrinterMQTTClient) -> GcodeState:
    return client.get_printer_state()


async def _wait_state(client: PrinterMQTTClient, state: GcodeState) -> None:
    """Wait until the library's merged reports show `state`, then ask it the public way."""

    def merged() -> object:
        return client.dump().get("print", {}).get("gcode_state")

    await eventually(lambda: merged() == state.value, f"gcode_state {state.value}")
    assert await asyncio.to_thread(_state, client) is state


async def test_connect_reads_state_temperatures_and_firmware(
    p1s: Env, mqtt: PrinterMQTTClient
) -> None:
    fleet, printer = p1s
    identity = fleet.node(printer.serial).spec.identity

    assert await asyncio.to_thread(_state, mqtt) is GcodeState.IDLE
    assert await asyncio.to_thread(mqtt.get_current_state) is PrintStatus.IDLE
    bed = await asyncio.to_thread(mqtt.get_bed_temperature)
    nozzle = await asyncio.to_thread(mqtt.get_nozzle_temperature)
    assert 15.0 <= bed <= 35.0, bed  # an idle printer sits near room temperature
    assert 15.0 <= nozzle <= 35.0, nozzle
    assert await asyncio.to_thread(mqtt.get_print_speed) == 100
    assert await asyncio.to_thread(mqtt.get_light_state) in ("on", "off")
    assert mqtt.subtask_name() == ""
    assert identity.serial == printer.serial


async def test_firmware_version_from_the_connect_handshake(
    p1s: Env, mqtt: PrinterMQTTClient
) -> None:
    # On connect the library sends {"pushing":{"command":"pushall"},"info":{"command":
    # "get_version"},"upgrade":{"command":"get_history"}} without sequence ids (§12.10) and
    # reads the firmware from the "ota" module of the get_version answer (§12.11).
    fleet, printer = p1s
    await eventually(lambda: mqtt.firmware_version() is not None, "get_version's reply")
    assert mqtt.firmware_version() == fleet.node(printer.serial).spec.identity.firmware


async def test_a_gcode_temperature_command_reaches_the_printer(
    p1s: Env, mqtt: PrinterMQTTClient
) -> None:
    fleet, printer = p1s
    assert await asyncio.to_thread(mqtt.set_bed_temperature, 60)
    await eventually(
        lambda: mqtt.get_bed_temperature_target() == 60.0, "the bed target in a report"
    )
    assert fleet.node(printer.serial).printer.report.data["bed_target_temper"] == 60


async def test_upload_a_megabyte_start_pause_resume_stop_and_list(
    p1s: Env, mqtt: PrinterMQTTClient
) -> None:
    fleet, printer = p1s
    node = fleet.node(printer.serial)
    archive = await asyncio.to_thread(
        build_gcode_3mf,
        plates=(PlateSpec(prediction_s=PLATE_SECONDS),),
        gcode_padding_bytes=PADDING_BYTES,
    )
    assert len(archive) >= 1024 * 1024
    name = "interop_cube.gcode.3mf"

    ftp = PrinterFTPClient(printer.host, printer.access_code, port=printer.ports.ftps)
    # ftplib's own timeout attribute: a hung server fails the test instead of blocking it.
    ftp.ftps.timeout = TIMEOUT
    # connect_and_run swallows errors and returns None, so the reply text is what proves it.
    result = await asyncio.to_thread(ftp.upload_file, io.BytesIO(archive), name)
    assert isinstance(result, str), "upload failed (the library logged why)"
    assert result.startswith("226"), result
    assert (node.storage.root / name).read_bytes() == archive

    listed = await asyncio.to_thread(ftp.list_directory)
    assert listed is not None
    reply, lines = listed
    assert reply.startswith("226"), reply
    sizes = {line.split()[-1]: int(line.split()[4]) for line in lines}
    assert sizes[name] == len(archive)
    back = await asyncio.to_thread(ftp.download_file, name)
    assert back is not None
    assert back.getvalue() == archive

    assert await asyncio.to_thread(mqtt.start_print_3mf, name, 1)
    await _wait_state(mqtt, GcodeState.RUNNING)
    assert mqtt.subtask_name() == "interop_cube"

    assert await asyncio.to_thread(mqtt.pause_print)
    await _wait_state(mqtt, GcodeState.PAUSE)
    assert await asyncio.to_thread(mqtt.get_current_state) is PrintStatus.PAUSED_USER

    assert await asyncio.to_thread(mqtt.resume_print)
    await _wait_state(mqtt, GcodeState.RUNNING)

    assert await asyncio.to_thread(mqtt.stop_print)
    await _wait_state(mqtt, GcodeState.FAILED)
    assert node.printer.gcode_state == "FAILED"


async def test_delete_removes_the_file(p1s: Env) -> None:
    fleet, printer = p1s
    node = fleet.node(printer.serial)
    node.storage.write_file("old.gcode.3mf", build_gcode_3mf())
    ftp = PrinterFTPClient(printer.host, printer.access_code, port=printer.ports.ftps)
    ftp.ftps.timeout = TIMEOUT
    result = await asyncio.to_thread(ftp.delete_file, "old.gcode.3mf")
    assert isinstance(result, str), "delete failed (the library logged why)"
    assert result.startswith("250"), result
    assert not node.storage.exists("old.gcode.3mf")


# The library's camera thread wraps its socket in TLS and never closes the wrapped socket (it
# closes only the detached plain one), so each connection ends in this ResourceWarning when the
# thread exits inside stop().
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
async def test_camera_frame_is_a_jpeg(p1s: Env) -> None:
    _, printer = p1s
    assert printer.ports.camera is not None
    camera = PrinterCamera(printer.host, printer.access_code, port=printer.ports.camera)
    assert camera.start()
    try:
        await eventually(lambda: camera.last_frame is not None, "a camera frame")
        frame = base64.b64decode(camera.get_frame())
    finally:
        # stop() joins the library's thread, which sleeps 5 s before noticing: ~6 s here.
        await asyncio.to_thread(camera.stop)
    assert frame[:2] == b"\xff\xd8"
    assert frame[-2:] == b"\xff\xd9"
    with Image.open(io.BytesIO(frame)) as image:
        assert image.format == "JPEG"
        assert image.width > 0
        assert image.height > 0


async def test_wrong_access_code_is_refused_as_not_authorised(p1s: Env) -> None:
    _, printer = p1s
    client = PrinterMQTTClient(printer.host, "00000000", printer.serial, port=printer.ports.mqtt)
    codes: list[Any] = []
    client.on_connect_handler = lambda _c, _m, _u, _f, rc, _p: codes.append(rc)
    client.connect()
    client.start()
    try:
        await eventually(lambda: bool(codes), "the CONNACK")
    finally:
        client._client.disconnect()
        await asyncio.to_thread(client.stop)
    assert codes[0].is_failure
    assert str(codes[0]) == "Not authorized"
    assert not client.ready()
