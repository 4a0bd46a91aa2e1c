"""protocol.md §12, rule by rule, against whole simulated printers over loopback TLS.

Each test is named after the rule it checks (`test_rule_NN_...`). The printers are real
`SimFleet` nodes (broker, FTPS, camera, state machine wired as `bambufarm sim` runs them); the
clients are our raw MQTT probe, ftplib, and a blocking TLS socket where record boundaries matter.
"""

import asyncio
import calendar
import ftplib
import io
import os
import re
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from bambufarm.protocol.mqtt_packets import ConnackCode, Pingreq, Pingresp, Publish
from bambufarm.simulator.fleet import Addressing, SimFleet
from bambufarm.simulator.manifest import ManifestPrinter
from bambufarm.simulator.scenario import fleet_secret, mixed_fleet
from bambufarm.simulator.tls import CA_COMMON_NAME
from tests.support.printer_clients import (
    TIMEOUT,
    ImplicitFtps,
    MqttProbe,
    Report,
    camera_auth_packet,
    client_context,
    is_push_status,
    open_ftps,
    print_body,
    quit_ftps,
    store_tolerant,
)
from tests.support.sim import running_fleet
from tests.support.threemf_factory import build_gcode_3mf


@pytest.fixture
async def probes() -> AsyncIterator[list[MqttProbe]]:
    """Probes opened by a test, closed after it."""
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        await probe.close()


@pytest.fixture
async def p1s(tmp_path: Path) -> AsyncIterator[tuple[SimFleet, ManifestPrinter]]:
    """One simulated P1S (delta reports, JPEG camera, FTPS session reuse required)."""
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        yield fleet, manifest.printers[0]


async def _probe(probes: list[MqttProbe], printer: ManifestPrinter, **kwargs: Any) -> MqttProbe:
    probe = await MqttProbe.connected(printer, **kwargs)
    probes.append(probe)
    return probe


def _top_level_values_are_objects(message: Report) -> bool:
    return bool(message) and all(isinstance(value, dict) for value in message.values())


# ----------------------------------------------------------------------------- rule 1


async def test_rule_01_empty_client_ids_are_separate_sessions(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    fleet, printer = p1s
    first = await _probe(probes, printer, client_id="")
    second = await _probe(probes, printer, client_id="")
    assert fleet.node(printer.serial).broker.client_count == 2

    await first.request({"pushing": {"command": "pushall", "sequence_id": "1"}})
    for probe in (first, second):
        full = await probe.report(lambda m: print_body(m).get("msg") == 0, "the pushall report")
        assert print_body(full)["gcode_state"] == "IDLE"


@pytest.mark.parametrize("keepalive", [5, 60])
async def test_rule_01_keepalives_from_5_to_60_seconds(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe], keepalive: int
) -> None:
    _, printer = p1s
    probe = await _probe(probes, printer, keepalive=keepalive)
    await probe.send(Pingreq())
    packets = await probe.gather(1.0)
    assert any(isinstance(p, Pingresp) for p in packets)


# ----------------------------------------------------------------------------- rules 2-6, 15: FTPS


def _data_tls_version(ftp: ImplicitFtps) -> str | None:
    conn = ftp.transfercmd("LIST")
    try:
        version = conn.version() if isinstance(conn, ssl.SSLSocket) else None
        while conn.recv(65536):
            continue
    finally:
        conn.close()
    ftp.voidresp()
    return version


async def test_rule_02_ftps_is_tls12_on_control_and_data(
    p1s: tuple[SimFleet, ManifestPrinter],
) -> None:
    _, printer = p1s

    def run() -> tuple[str | None, str | None]:
        ftp = open_ftps(printer)  # the client offers TLS 1.3; the printer must pick 1.2
        try:
            assert isinstance(ftp.sock, ssl.SSLSocket)
            return ftp.sock.version(), _data_tls_version(ftp)
        finally:
            quit_ftps(ftp)

    assert await asyncio.to_thread(run) == ("TLSv1.2", "TLSv1.2")

    tls13_only = client_context()
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(open_ftps, printer, tls13_only, login=False)


async def test_rule_03_data_eof_without_close_notify_is_end_of_file(
    p1s: tuple[SimFleet, ManifestPrinter],
) -> None:
    fleet, printer = p1s
    payload = os.urandom(300_000)

    def run() -> str:
        ftp = open_ftps(printer)
        try:
            conn = ftp.transfercmd("STOR eof.bin")
            conn.sendall(payload)
            # SSLSocket.close() closes the TCP socket without sending close_notify.
            conn.close()
            return ftp.voidresp()
        finally:
            quit_ftps(ftp)

    assert (await asyncio.to_thread(run)).startswith("226")
    assert (fleet.node(printer.serial).storage.root / "eof.bin").read_bytes() == payload


@pytest.mark.parametrize(
    ("model", "quirks", "required"),
    [
        ("P1S", {}, True),
        ("X1C", {}, True),
        ("A1", {}, False),
        ("P1S", {"ftps_require_session_reuse": False}, False),
        ("A1", {"ftps_require_session_reuse": True}, True),
    ],
)
async def test_rule_04_session_reuse_is_a_per_model_option(
    tmp_path: Path, model: str, quirks: dict[str, Any], required: bool
) -> None:
    async with running_fleet(tmp_path, models=(model,), quirks=quirks) as (fleet, manifest):
        printer = manifest.printers[0]

        def run() -> tuple[str, str]:
            ftp = open_ftps(printer, reuse_session=False)
            try:
                without = store_tolerant(ftp, "probe.bin", b"x" * 1000)
            finally:
                quit_ftps(ftp)
            ftp = open_ftps(printer, reuse_session=True)
            try:
                return without, ftp.storbinary("STOR reused.bin", io.BytesIO(b"y" * 1000))
            finally:
                quit_ftps(ftp)

        without, reused = await asyncio.to_thread(run)
        storage = fleet.node(printer.serial).storage
    assert reused.startswith("226")
    assert storage.exists("reused.bin")
    if required:
        assert without.startswith("522"), without
        assert not storage.exists("probe.bin")
    else:
        assert without.startswith("226"), without
        assert storage.exists("probe.bin")


async def test_rule_05_banner_reads_like_vsftpd(p1s: tuple[SimFleet, ManifestPrinter]) -> None:
    _, printer = p1s

    def run() -> str:
        ftp = open_ftps(printer, login=False)
        try:
            return ftp.welcome or ""
        finally:
            quit_ftps(ftp)

    assert re.fullmatch(r"220 \(vsFTPd 3\.0\.\d+\)", await asyncio.to_thread(run))


async def test_rule_06_passive_ports_listen_on_the_control_address(tmp_path: Path) -> None:
    # A printer on 127.0.0.7 (not the default 127.0.0.1): a passive port bound elsewhere, or
    # announced with an address clients cannot use, would show here.
    addressing = Addressing(first_address="127.0.0.7")
    spec = mixed_fleet(1, secret=fleet_secret(tmp_path), hosts=addressing.hosts(1), models=("P1S",))
    fleet = SimFleet(spec, data_dir=tmp_path, addressing=addressing)
    manifest = await fleet.start()
    try:
        printer = manifest.printers[0]
        assert printer.host == "127.0.0.7"

        def run() -> tuple[str, int, bool, list[str]]:
            ftp = open_ftps(printer)
            try:
                reply = ftp.sendcmd("PASV")
                host, port = ftplib.parse227(reply)  # noqa: S321 - implicit FTPS
                with socket.socket() as stranger:
                    stranger.settimeout(TIMEOUT)
                    refused = stranger.connect_ex(("127.0.0.1", port)) != 0
                # ftplib ignores the PASV address by default and reuses the control host.
                lines: list[str] = []
                ftp.retrlines("LIST", lines.append)
                return host, port, refused, lines
            finally:
                quit_ftps(ftp)

        host, port, refused_elsewhere, lines = await asyncio.to_thread(run)
    finally:
        await fleet.close()
    assert host == "127.0.0.7"
    assert port > 0
    assert refused_elsewhere
    assert any(line.endswith(" cache") for line in lines)


_LS_LINE = re.compile(
    r"^-rw-r--r-- +1 +\S+ +\S+ +(?P<size>\d+) "
    r"(?P<month>[A-Z][a-z]{2}) (?P<day>\d{2}) (?P<tail>\d{2}:\d{2}| \d{4}) (?P<name>\S.*)$"
)


def _recent_single_digit_day() -> float:
    """10:30 UTC on the 3rd of last month: within six months, day < 10."""
    now = time.gmtime()
    year, month = (now.tm_year, now.tm_mon - 1) if now.tm_mon > 1 else (now.tm_year - 1, 12)
    return float(calendar.timegm((year, month, 3, 10, 30, 0, 0, 0, 0)))


async def test_rule_15_list_is_ls_dash_l_with_a_two_digit_day(
    p1s: tuple[SimFleet, ManifestPrinter],
) -> None:
    fleet, printer = p1s
    storage = fleet.node(printer.serial).storage
    storage.write_file("recent.gcode.3mf", b"r" * 1234)
    storage.write_file("old.gcode.3mf", b"o" * 5)
    recent = _recent_single_digit_day()
    old = float(calendar.timegm((2023, 1, 5, 8, 0, 0, 0, 0, 0)))
    os.utime(storage.root / "recent.gcode.3mf", (recent, recent))
    os.utime(storage.root / "old.gcode.3mf", (old, old))

    def run() -> list[str]:
        ftp = open_ftps(printer)
        try:
            lines: list[str] = []
            ftp.retrlines("LIST", lines.append)
            return lines
        finally:
            quit_ftps(ftp)

    lines = await asyncio.to_thread(run)
    files = {m["name"]: m for line in lines if (m := _LS_LINE.match(line))}
    assert files["recent.gcode.3mf"]["size"] == "1234"
    assert files["recent.gcode.3mf"]["day"] == "03"
    assert files["recent.gcode.3mf"]["tail"] == "10:30"
    assert (files["old.gcode.3mf"]["month"], files["old.gcode.3mf"]["day"]) == ("Jan", "05")
    assert files["old.gcode.3mf"]["tail"] == " 2023"


# ----------------------------------------------------------------------------- rules 7-11: MQTT


async def test_rule_07_every_report_is_an_object_of_objects(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(
        tmp_path, models=("P1S", "X1C"), time_scale=200.0, tick_interval=0.05
    ) as (fleet, manifest):
        for printer in manifest.printers:
            fleet.node(printer.serial).storage.write_file("job.gcode.3mf", build_gcode_3mf())
            probe = await _probe(probes, printer)
            requests: list[Report] = [
                {"pushing": {"command": "pushall", "sequence_id": "1"}},
                {"info": {"command": "get_version", "sequence_id": "2"}},
                {"upgrade": {"command": "get_history", "sequence_id": "3"}},
                {"print": {"command": "no_such_command", "sequence_id": "4"}},
                {"nonsense": {"command": "x", "sequence_id": "5"}},
                {"system": {"command": "ledctrl", "led_node": "chamber_light",
                            "led_mode": "on", "sequence_id": "6"}},
                {"print": {"command": "project_file", "sequence_id": "7",
                           "param": "Metadata/plate_1.gcode", "url": "ftp:///job.gcode.3mf",
                           "ams_mapping": [0]}},
                {"print": {"command": "pause", "sequence_id": "8"}},
                {"print": {"command": "stop", "sequence_id": "9"}},
            ]  # fmt: skip
            for request in requests:
                await probe.request(request)
            await probe.reply("print", "stop", "9")
            await probe.gather(0.5)  # a few periodic reports too
        for probe in probes:
            assert len(probe.raw_payloads) >= 10
            assert len(probe.messages) == len(probe.raw_payloads), "a payload was not an object"
            bad = [m for m in probe.messages if not _top_level_values_are_objects(m)]
            assert bad == []


@pytest.mark.parametrize(
    ("request_", "result"),
    [
        (("info", "get_version", "20001"), "success"),
        (("info", "get_version", 20002), "success"),
        (("pushing", "pushall", "20003"), "success"),
        (("system", "ledctrl", 20004), "failed"),  # missing led_node: refused, still answered
        (("print", "no_such_command", "20005"), "failed"),
        (("print", "no_such_command", 20006), "failed"),
        (("frobnicate", "anything", "20007"), "failed"),
        (("upgrade", "get_history", "0"), "success"),
    ],
)
async def test_rule_08_every_request_with_a_sequence_id_is_answered(
    p1s: tuple[SimFleet, ManifestPrinter],
    probes: list[MqttProbe],
    request_: tuple[str, str, str | int],
    result: str,
) -> None:
    section, command, sequence_id = request_
    _, printer = p1s
    probe = await _probe(probes, printer)
    await probe.request({section: {"command": command, "sequence_id": sequence_id}})
    reply = await probe.reply(section, command, sequence_id)
    assert type(reply["sequence_id"]) is type(sequence_id)
    assert str(reply["result"]).lower() == result


async def test_rule_08_secured_printer_answers_unsigned_print_commands_with_the_signing_error(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), quirks={"secured": True}) as (_, m):
        probe = await _probe(probes, m.printers[0])
        await probe.request({"print": {"command": "pause", "sequence_id": "30001"}})
        reply = await probe.reply("print", "pause", "30001")
        await probe.request({"info": {"command": "get_version", "sequence_id": "30002"}})
        info = await probe.reply("info", "get_version", "30002")
    assert str(reply["result"]).lower() == "failed"
    assert reply["err_code"] == 84033543
    assert reply["reason"] == "mqtt message verify failed"
    assert str(info["result"]).lower() == "success"  # only print.* needs a signature


async def test_rule_09_pushall_is_full_with_msg_0_and_deltas_carry_msg_1(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    _, printer = p1s
    probe = await _probe(probes, printer)
    await probe.request({"pushing": {"command": "pushall", "sequence_id": "1"}})
    full = print_body(await probe.report(is_push_status, "the pushall report"))
    assert full["msg"] == 0
    assert {"gcode_state", "ams", "bed_temper", "nozzle_temper", "hms", "print_error"} <= set(full)

    # A change on a P1 (delta profile): the next report carries only what changed, msg 1.
    await probe.request(
        {"print": {"command": "gcode_line", "param": "M140 S60\n", "sequence_id": "2"}}
    )
    delta = print_body(
        await probe.report(
            lambda m: is_push_status(m) and print_body(m).get("bed_target_temper") == 60,
            "the report of the new bed target",
        )
    )
    assert delta["msg"] == 1
    assert delta["bed_target_temper"] == 60
    assert len(delta) < len(full) / 2
    assert set(delta) <= set(full)


async def test_rule_09_full_mode_models_report_msg_0_every_time(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("X1C",), time_scale=50.0, tick_interval=0.05) as (
        _,
        manifest,
    ):
        probe = await _probe(probes, manifest.printers[0])
        await probe.gather(0.5)
    reports = [print_body(m) for m in probe.messages if is_push_status(m)]
    assert len(reports) >= 3
    assert {r["msg"] for r in reports} == {0}


async def test_rule_10_get_version_then_pushall(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    _, printer = p1s
    probe = await _probe(probes, printer, subscribe=False)
    assert await probe.subscribe(probe.report_topic) == (0,)
    await probe.request({"info": {"command": "get_version", "sequence_id": "20000"}})
    await probe.request(
        {"pushing": {"command": "pushall", "sequence_id": "20001", "version": 1, "push_target": 1}}
    )
    assert (await probe.reply("info", "get_version", "20000"))["module"]
    await probe.report(lambda m: print_body(m).get("msg") == 0, "the full report")


async def test_rule_10_one_payload_with_several_sections_and_sequence_ids(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    _, printer = p1s
    probe = await _probe(probes, printer)
    await probe.request(
        {
            "pushing": {"command": "pushall", "sequence_id": "1"},
            "info": {"command": "get_version", "sequence_id": "2"},
            "upgrade": {"command": "get_history", "sequence_id": "3"},
        }
    )
    await probe.reply("info", "get_version", "2")
    await probe.reply("upgrade", "get_history", "3")
    answered = [m for m in probe.messages if "pushing" in m or print_body(m).get("msg") == 0]
    assert answered, "the pushall section was not handled"


async def test_rule_10_one_payload_with_several_sections_without_sequence_ids(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    # bambulabs-api's first message, verbatim (protocol.md §12.10): no sequence ids. The client
    # reads the firmware version from the get_version answer, so it must come.
    _, printer = p1s
    probe = await _probe(probes, printer)
    await probe.request(
        b'{"pushing": {"command": "pushall"}, "info": {"command": "get_version"},'
        b' "upgrade": {"command": "get_history"}}'
    )
    full = await probe.report(lambda m: print_body(m).get("msg") == 0, "the full report")
    assert print_body(full)["gcode_state"] == "IDLE"
    info = await probe.report(lambda m: "module" in m.get("info", {}), "the get_version answer")
    assert any(module["name"] == "ota" for module in info["info"]["module"])


async def test_rule_10_pushing_start_from_a_watchdog_resumes_reports(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("X1C",), time_scale=50.0, tick_interval=0.05) as (
        _,
        manifest,
    ):
        probe = await _probe(probes, manifest.printers[0])
        await probe.request({"pushing": {"command": "stop", "sequence_id": "1"}})
        await probe.reply("pushing", "stop", "1")
        await probe.gather(0.2)  # anything already on its way
        silent = [p for p in await probe.gather(0.5) if isinstance(p, Publish)]
        await probe.request({"pushing": {"command": "start"}})
        await probe.report(is_push_status, "a report after pushing.start", within=3.0)
    assert silent == []


@pytest.mark.parametrize("model", ["X1C", "P1S", "A1", "H2D"])
async def test_rule_11_get_version_lists_ota_and_the_ams_modules(
    tmp_path: Path, probes: list[MqttProbe], model: str
) -> None:
    async with running_fleet(tmp_path, models=(model,)) as (fleet, manifest):
        printer = manifest.printers[0]
        identity = fleet.node(printer.serial).spec.identity
        probe = await _probe(probes, printer)
        await probe.request({"pushing": {"command": "pushall", "sequence_id": "1"}})
        full = print_body(await probe.report(lambda m: print_body(m).get("msg") == 0, "full"))
        await probe.request({"info": {"command": "get_version", "sequence_id": "2"}})
        modules = (await probe.reply("info", "get_version", "2"))["module"]
    ota = [m for m in modules if m["name"] == "ota"]
    assert len(ota) == 1
    assert ota[0]["sw_ver"] == identity.firmware
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{2}\.\d{2}", ota[0]["sw_ver"])
    assert ota[0]["sn"] == printer.serial
    # Clients detect the model from "Bambu Lab <model>" product names (§1.6).
    assert ota[0]["product_name"] == identity.model.product_name
    assert ota[0]["product_name"].startswith("Bambu Lab ")
    # One module per AMS unit in the report, so clients recognise the AMS hardware (§1.6).
    ams_modules = [m for m in modules if "/" in m["name"]]
    assert len(ams_modules) == len(full["ams"]["ams"])


# ----------------------------------------------------------------------------- rule 12


RULE_12_PREFIXES = {
    "X1C": "00M",
    "X1": "00W",
    "X1E": "03W",
    "P1P": "01S",
    "P1S": "01P",
    "A1 mini": "030",
    "A1": "039",
    "P2S": "22E",
    "H2S": "093",
    "H2D": "094",
}


async def test_rule_12_serial_prefixes_match_the_model(tmp_path: Path) -> None:
    models = tuple(RULE_12_PREFIXES)
    async with running_fleet(tmp_path, models=models) as (_, manifest):
        serials = {p.model_name: p.serial for p in manifest.printers}
    assert set(serials) == set(models)
    for model, prefix in RULE_12_PREFIXES.items():
        assert serials[model].startswith(prefix), (model, serials[model])
        assert len(serials[model]) == 15
    assert len(set(serials.values())) == len(serials)


# ----------------------------------------------------------------------------- rule 13


_JOB = "rule13.gcode.3mf"


@pytest.mark.parametrize(
    ("fields", "levelling"),
    [
        ({"url": f"ftp:///{_JOB}"}, False),
        ({"url": f"ftp://{_JOB}"}, False),
        ({"url": f"file:///sdcard/{_JOB}"}, False),
        ({"url": f"file:///sdcard/cache/{_JOB}"}, False),
        ({"file": _JOB}, False),
        ({"file": f"/{_JOB}"}, False),
        ({"url": f"ftp:///{_JOB}", "ams_mapping": ""}, False),
        ({"url": f"ftp:///{_JOB}", "ams_mapping": [0]}, False),
        ({"url": f"ftp:///{_JOB}", "bed_leveling": True}, True),
        ({"url": f"ftp:///{_JOB}", "bed_levelling": True}, True),
        ({"url": f"ftp:///{_JOB}", "sequence_id": 20099}, False),
        ({"url": f"ftp:///{_JOB}", "sequence_id": "20099"}, False),
    ],
    ids=[
        "ftp-three-slashes", "ftp-two-slashes", "file-sdcard", "file-sdcard-cache",
        "file-bare", "file-leading-slash", "ams-mapping-empty-string", "ams-mapping-list",
        "bed_leveling", "bed_levelling", "int-sequence-id", "str-sequence-id",
    ],
)  # fmt: skip
async def test_rule_13_project_file_variants_start_the_job(
    p1s: tuple[SimFleet, ManifestPrinter],
    probes: list[MqttProbe],
    fields: dict[str, Any],
    levelling: bool,
) -> None:
    fleet, printer = p1s
    node = fleet.node(printer.serial)
    in_cache = fields.get("url", "").startswith("file:///sdcard/cache/")
    node.storage.write_file(f"cache/{_JOB}" if in_cache else _JOB, build_gcode_3mf())
    sequence_id = fields.get("sequence_id", "20098")
    request = {
        "command": "project_file",
        "param": "Metadata/plate_1.gcode",
        "subtask_name": "rule13",
        **fields,
        "sequence_id": sequence_id,
    }
    probe = await _probe(probes, printer)
    await probe.request({"print": request})
    ack = await probe.reply("print", "project_file", sequence_id)
    assert str(ack["result"]).lower() == "success"
    assert node.printer.gcode_state == "PREPARE"  # the file was found and read (else FAILED)
    assert node.printer.report.data["subtask_name"] == "rule13"
    assert (1 in node.printer.report.data["stg"]) is levelling


async def test_rule_13_extra_top_level_keys_beside_print(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    fleet, printer = p1s
    node = fleet.node(printer.serial)
    node.storage.write_file(_JOB, build_gcode_3mf())
    probe = await _probe(probes, printer)
    await probe.request(
        {
            "user_id": "1234567890",
            "print": {
                "command": "project_file",
                "sequence_id": 7,
                "param": "Metadata/plate_1.gcode",
                "url": f"ftp:///{_JOB}",
            },
        }
    )
    ack = await probe.reply("print", "project_file", 7)
    assert str(ack["result"]).lower() == "success"
    assert node.printer.gcode_state == "PREPARE"


# ----------------------------------------------------------------------------- rule 14


def _camera_records(printer: ManifestPrinter, ca_cert: str) -> list[bytes]:
    """The first reads after auth, each at most one TLS record (SSL_read never spans two)."""
    assert printer.ports.camera is not None
    context = client_context(ca_cert)
    with (
        socket.create_connection((printer.host, printer.ports.camera), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=printer.host) as tls,
    ):
        tls.sendall(camera_auth_packet(printer.access_code))
        header = tls.recv(65536)
        size = struct.unpack_from("<I", header)[0] if len(header) >= 4 else 0
        body = b""
        while len(body) < size:
            chunk = tls.recv(65536)
            if not chunk:
                break
            body += chunk
        return [header, body, tls.recv(65536)]


async def test_rule_14_camera_header_is_its_own_write_then_the_jpeg(
    tmp_path: Path,
) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        header, jpeg, next_header = await asyncio.to_thread(
            _camera_records, manifest.printers[0], manifest.ca_cert
        )
    assert len(header) == 16, "the header shared a TLS record with the JPEG"
    size, itrack, flags, reserved = struct.unpack("<IIII", header)
    assert (itrack, flags, reserved) == (0, 1, 0)
    assert size == len(jpeg)
    assert jpeg[:2] == b"\xff\xd8"
    assert jpeg[-2:] == b"\xff\xd9"
    assert len(next_header) == 16  # and so on for the next frame


# ----------------------------------------------------------------------------- rule 16


@pytest.mark.parametrize(("username", "code"), [("bblp", "00000000"), ("admin", None)])
async def test_rule_16_wrong_credentials_get_connack_5(
    p1s: tuple[SimFleet, ManifestPrinter],
    probes: list[MqttProbe],
    username: str,
    code: str | None,
) -> None:
    _, printer = p1s
    probe = await MqttProbe.open(printer)
    probes.append(probe)
    assert await probe.login(code, username=username) is ConnackCode.NOT_AUTHORIZED
    assert int(ConnackCode.NOT_AUTHORIZED) == 5
    assert await probe.closed_by_printer()


# ----------------------------------------------------------------------------- rule 17


def _peer_certificate(
    host: str, port: int, context: ssl.SSLContext
) -> tuple[x509.Certificate, str]:
    with (
        socket.create_connection((host, port), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), tls.version() or ""


def _common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_rule_17_leaf_is_cn_serial_under_the_manifest_ca_on_every_tls_port(
    tmp_path: Path,
) -> None:
    async with running_fleet(tmp_path, models=("P1S", "X1C")) as (_, manifest):
        # Like the Home Assistant client: trust the CA, skip hostname matching, check the CN.
        careful = client_context(manifest.ca_cert)
        # And a stricter client: the leaf also carries the printer's address as a SAN.
        strict = client_context(manifest.ca_cert, check_hostname=True)
        seen: list[tuple[str, str, str, str]] = []
        for printer in manifest.printers:
            ports = [printer.ports.mqtt, printer.ports.ftps, printer.ports.bind_tls]
            if printer.ports.camera is not None:
                ports.append(printer.ports.camera)
            for port in ports:
                for context in (careful, strict):
                    cert, version = await asyncio.to_thread(
                        _peer_certificate, printer.host, port, context
                    )
                    seen.append(
                        (printer.serial, _common_name(cert.subject), _common_name(cert.issuer),
                         version)
                    )  # fmt: skip
    assert len(seen) == 2 * 7
    for serial, subject, issuer, version in seen:
        assert subject == serial
        # Deliberately not "BBL CA": the simulator must never pose as Bambu's CA.
        assert issuer == CA_COMMON_NAME
        assert version == "TLSv1.2"


async def test_rule_17_unverified_clients_work_too(
    p1s: tuple[SimFleet, ManifestPrinter], probes: list[MqttProbe]
) -> None:
    _, printer = p1s
    probe = await MqttProbe.open(printer, client_context(None))
    probes.append(probe)
    assert await probe.login() is ConnackCode.ACCEPTED
