"""Debian's command-line clients against the simulator: curl (implicit FTPS) and
mosquitto_sub / mosquitto_pub (MQTT over TLS), all verifying the printer's certificate against
the simulator CA from the manifest (the leaf carries an IP SAN for 127.0.0.1 and CN=serial).

Under CI=true a missing tool fails the test (make test installs it); elsewhere it is skipped
with the command that installs it.
"""

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from tests.support.printer_clients import TIMEOUT, Report
from tests.support.sim import running_fleet
from tests.support.threemf_factory import PlateSpec, build_gcode_3mf

pytestmark = [pytest.mark.interop, pytest.mark.system]

TIME_SCALE = 500.0  # ~120 simulated seconds of preparation pass in a quarter of a second
TICK_INTERVAL = 0.05
# `ls -l` as printers send it (protocol.md §12.15): mode, links, owner, group, size, date, name.
LIST_LINE = re.compile(
    r"^[-d][-rwx]{9}\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+"
    r"[A-Z][a-z]{2} \d{2} (?:\d{2}:\d{2}| \d{4}) (?P<name>.+)$"
)


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: apt-get install -y {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


async def _run(*argv: str) -> tuple[int, bytes, bytes]:
    """Run a tool to completion (bounded) and return its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 3)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out, err


Env = tuple[SimFleet, Manifest, ManifestPrinter]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Env]:
    """One simulated P1S (FTPS with TLS session reuse required, as on real P1 firmware)."""
    async with running_fleet(
        tmp_path / "sim", models=("P1S",), time_scale=TIME_SCALE, tick_interval=TICK_INTERVAL
    ) as (fleet, manifest):
        yield fleet, manifest, manifest.printers[0]


# ----------------------------------------------------------------------------- curl


def _curl_args(manifest: Manifest, printer: ManifestPrinter, code: str | None = None) -> list[str]:
    return [
        _require("curl", "curl"),
        "--silent",
        "--show-error",
        "--max-time",
        str(int(TIMEOUT * 2)),
        "--ssl-reqd",
        "--cacert",
        manifest.ca_cert,  # verified, hostname included: the leaf has an IP SAN
        "--user",
        f"bblp:{printer.access_code if code is None else code}",
    ]


def _base_url(printer: ManifestPrinter) -> str:
    return f"ftps://{printer.host}:{printer.ports.ftps}/"


async def test_curl_uploads_and_lists_over_implicit_ftps(sim: Env, tmp_path: Path) -> None:
    fleet, manifest, printer = sim
    node = fleet.node(printer.serial)
    source = tmp_path / "curl_part.gcode.3mf"
    source.write_bytes(build_gcode_3mf(gcode_padding_bytes=300_000))
    curl = _curl_args(manifest, printer)

    code, _, err = await _run(*curl, "-T", str(source), _base_url(printer))
    assert code == 0, err.decode()
    assert (node.storage.root / source.name).read_bytes() == source.read_bytes()

    code, out, err = await _run(*curl, _base_url(printer))
    assert code == 0, err.decode()
    lines = out.decode().splitlines()
    matches = [LIST_LINE.match(line) for line in lines]
    assert all(matches), lines
    sizes = {m["name"]: int(m["size"]) for m in matches if m}
    assert sizes[source.name] == source.stat().st_size

    code, out, err = await _run(*curl, "--list-only", _base_url(printer))
    assert code == 0, err.decode()
    assert source.name in out.decode().splitlines()

    back = tmp_path / "back.3mf"
    code, _, err = await _run(*curl, "-o", str(back), _base_url(printer) + source.name)
    assert code == 0, err.decode()
    assert back.read_bytes() == source.read_bytes()


async def test_curl_into_a_subdirectory_and_delete(sim: Env, tmp_path: Path) -> None:
    fleet, manifest, printer = sim
    node = fleet.node(printer.serial)
    source = tmp_path / "note.txt"
    source.write_bytes(b"hello printer\n")
    curl = _curl_args(manifest, printer)

    url = _base_url(printer) + "model/"
    code, _, err = await _run(*curl, "--ftp-create-dirs", "-T", str(source), url)
    assert code == 0, err.decode()
    assert (node.storage.root / "model" / "note.txt").read_bytes() == b"hello printer\n"

    code, _, err = await _run(*curl, "-Q", "-DELE model/note.txt", _base_url(printer))
    assert code == 0, err.decode()
    assert not node.storage.exists("model/note.txt")


async def test_curl_with_a_wrong_access_code_is_denied(sim: Env) -> None:
    _, manifest, printer = sim
    code, _, err = await _run(*_curl_args(manifest, printer, "00000000"), _base_url(printer))
    assert code == 67, err.decode()  # CURLE_LOGIN_DENIED: the server answered 530


# ----------------------------------------------------------------------------- mosquitto


def _mqtt_args(
    tool: str, manifest: Manifest, printer: ManifestPrinter, code: str | None = None
) -> list[str]:
    return [
        _require(tool, "mosquitto-clients"),
        "-h",
        printer.host,
        "-p",
        str(printer.ports.mqtt),
        "-V",
        "mqttv311",
        "--cafile",
        manifest.ca_cert,  # no --insecure: the hostname is checked against the IP SAN
        "-u",
        "bblp",
        "-P",
        printer.access_code if code is None else code,
    ]


class Subscriber:
    """A running mosquitto_sub printing one JSON payload per line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[Report] = []

    async def next_message(self) -> Report:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        if not line:
            assert self.process.stderr is not None
            err = await self.process.stderr.read()
            raise AssertionError(f"mosquitto_sub ended: {err.decode()}")
        message: Report = orjson.loads(line)
        self.seen.append(message)
        return message

    async def until(self, section: str, key: str, value: object) -> Report:
        """Read messages until one whose `section` object has `key` == `value`."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.next_message()
                body = message.get(section)
                if isinstance(body, dict) and body.get(key) == value:
                    return body


@contextlib.asynccontextmanager
async def subscriber(
    manifest: Manifest, printer: ManifestPrinter, topic: str
) -> AsyncIterator[Subscriber]:
    """mosquitto_sub on `topic`, stopped on exit."""
    process = await asyncio.create_subprocess_exec(
        *_mqtt_args("mosquitto_sub", manifest, printer),
        "-t",
        topic,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Subscriber(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.communicate(), TIMEOUT)


async def _publish(manifest: Manifest, printer: ManifestPrinter, message: Report) -> None:
    code, _, err = await _run(
        *_mqtt_args("mosquitto_pub", manifest, printer),
        "-t",
        f"device/{printer.serial}/request",
        "-q",
        "1",
        "-m",
        orjson.dumps(message).decode(),
    )
    assert code == 0, err.decode()


async def test_mosquitto_sub_gets_a_full_report_on_subscribe(sim: Env) -> None:
    _, manifest, printer = sim
    async with subscriber(manifest, printer, f"device/{printer.serial}/report") as sub:
        first = await sub.next_message()
    body = first["print"]
    assert body["command"] == "push_status"
    assert body["msg"] == 0
    assert body["gcode_state"] == "IDLE"


async def test_mosquitto_wildcard_subscription_and_a_command_round_trip(sim: Env) -> None:
    fleet, manifest, printer = sim
    async with subscriber(manifest, printer, "device/+/report") as sub:
        await sub.next_message()  # the full report that follows SUBSCRIBE: we are subscribed
        await _publish(
            manifest,
            printer,
            {"info": {"command": "get_version", "sequence_id": "20001"}},
        )
        reply = await sub.until("info", "sequence_id", "20001")
    assert reply["command"] == "get_version"
    ota = [m for m in reply["module"] if m["name"] == "ota"]
    assert ota[0]["sw_ver"] == fleet.node(printer.serial).spec.identity.firmware


async def test_curl_upload_then_mosquitto_pub_starts_the_print(sim: Env, tmp_path: Path) -> None:
    fleet, manifest, printer = sim
    source = tmp_path / "cli_job.gcode.3mf"
    source.write_bytes(build_gcode_3mf(plates=(PlateSpec(prediction_s=36_000),)))
    code, _, err = await _run(*_curl_args(manifest, printer), "-T", str(source), _base_url(printer))
    assert code == 0, err.decode()

    async with subscriber(manifest, printer, f"device/{printer.serial}/report") as sub:
        await sub.next_message()
        await _publish(
            manifest,
            printer,
            {
                "print": {
                    "command": "project_file",
                    "sequence_id": "20002",
                    "param": "Metadata/plate_1.gcode",
                    "url": f"ftp:///{source.name}",
                    "subtask_name": "cli_job",
                    "use_ams": True,
                    "ams_mapping": [0],
                }
            },
        )
        ack = await sub.until("print", "sequence_id", "20002")
        assert ack["result"] == "success"
        running = await sub.until("print", "gcode_state", "RUNNING")
    assert fleet.node(printer.serial).printer.status().subtask_name == "cli_job"
    assert running["command"] == "push_status"


async def test_mosquitto_pub_with_a_wrong_access_code_is_not_authorised(sim: Env) -> None:
    _, manifest, printer = sim
    code, _, err = await _run(
        *_mqtt_args("mosquitto_pub", manifest, printer, "00000000"),
        "-t",
        f"device/{printer.serial}/request",
        "-m",
        "{}",
    )
    assert code != 0
    assert b"not authori" in err.lower(), err.decode()
