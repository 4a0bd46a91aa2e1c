"""Quirks and injected faults of simulated printers, end to end over loopback TLS.

Each fault is checked from the outside, the way a farm manager would meet it on a real
printer: the bytes a client receives (or stops receiving), and that the rest of the fleet
carries on.
"""

import asyncio
import ftplib
import io
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bambufarm.protocol.mqtt_packets import (
    SUBACK_FAILURE,
    ConnackCode,
    Connect,
    Pingreq,
    Pingresp,
    Publish,
    Subscribe,
    encode,
)
from bambufarm.simulator.ftps_commands import FtpsFaults
from bambufarm.simulator.manifest import ManifestPrinter
from tests.support.printer_clients import (
    TIMEOUT,
    MqttProbe,
    Report,
    camera_auth_packet,
    client_context,
    eventually,
    is_push_status,
    open_ftps,
    print_body,
    quit_ftps,
    store_tolerant,
)
from tests.support.sim import running_fleet
from tests.support.threemf_factory import PlateSpec, build_gcode_3mf

VERIFY_FAILED = 84_033_543  # 0x05024007, protocol.md §9.2
FUN_SIGNED_BIT = 1 << 29
RUNOUT_HMS = {"attr": 0x0700_2000, "code": 0x0002_0001}  # AMS A slot 1 filament ran out
# 10 simulated seconds per real second with a 50 ms tick: a P1 report every ~0.1 s.
FAST = {"time_scale": 10.0, "tick_interval": 0.05}


@pytest.fixture
async def probes() -> AsyncIterator[list[MqttProbe]]:
    """Probes opened by a test, closed after it."""
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        await probe.close()


async def _probe(probes: list[MqttProbe], printer: ManifestPrinter, **kwargs: Any) -> MqttProbe:
    probe = await MqttProbe.connected(printer, **kwargs)
    probes.append(probe)
    return probe


async def _raw(probes: list[MqttProbe], printer: ManifestPrinter, **kwargs: Any) -> MqttProbe:
    probe = await MqttProbe.open(printer, **kwargs)
    probes.append(probe)
    return probe


async def _full_report(probe: MqttProbe) -> Report:
    await probe.request({"pushing": {"command": "pushall", "sequence_id": "1"}})
    return print_body(await probe.report(lambda m: print_body(m).get("msg") == 0, "pushall"))


async def _still_answers(probe: MqttProbe, sequence_id: str) -> None:
    """The printer behind `probe` still answers a request on this connection."""
    await probe.request({"info": {"command": "get_version", "sequence_id": sequence_id}})
    reply = await probe.reply("info", "get_version", sequence_id)
    assert reply["result"] == "success"


def _project_file(sequence_id: str, name: str, mapping: list[int]) -> Report:
    return {
        "print": {
            "command": "project_file",
            "sequence_id": sequence_id,
            "param": "Metadata/plate_1.gcode",
            "url": f"ftp:///{name}",
            "ams_mapping": mapping,
            "use_ams": True,
        }
    }


# ----------------------------------------------------------------------------- secured firmware


async def test_secured_printer_refuses_unsigned_print_commands_with_the_signing_error(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), quirks={"secured": True}) as (fleet, m):
        printer = m.printers[0]
        node = fleet.node(printer.serial)
        node.storage.write_file("job.gcode.3mf", build_gcode_3mf())
        probe = await _probe(probes, printer)
        full = await _full_report(probe)

        await probe.request(_project_file("40001", "job.gcode.3mf", [0]))
        refused = await probe.reply("print", "project_file", "40001")
        state_after_refusal = node.printer.gcode_state

        # A payload carrying a signature envelope takes the signed path (the simulator cannot
        # check Bambu's signatures, protocol.md §9.2).
        signed = _project_file("40002", "job.gcode.3mf", [0])
        signed["header"] = {"sign_ver": "v1.0", "sign_alg": "RSA_SHA256", "sign_string": "AA=="}
        await probe.request(signed)
        accepted = await probe.reply("print", "project_file", "40002")
        state_after_signed = node.printer.gcode_state

    assert int(full["fun"], 16) & FUN_SIGNED_BIT
    assert refused["result"] == "failed"
    assert refused["reason"] == "mqtt message verify failed"
    assert refused["err_code"] == VERIFY_FAILED
    assert state_after_refusal == "IDLE"
    assert accepted["result"] == "success"
    assert state_after_signed == "PREPARE"


async def test_unsecured_printer_advertises_no_signing_bit(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        full = await _full_report(await _probe(probes, manifest.printers[0]))
    assert not int(full["fun"], 16) & FUN_SIGNED_BIT
    assert not int(full["fun"], 16) & (1 << 31)  # no port-6000 file tunnel: slicers use FTPS


# ----------------------------------------------------------------------------- broker quirks


async def test_max_clients_refuses_the_extra_session_until_one_leaves(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), quirks={"max_mqtt_clients": 2}) as (
        fleet,
        manifest,
    ):
        printer = manifest.printers[0]
        first = await _probe(probes, printer)
        await _probe(probes, printer)
        extra = await _raw(probes, printer)
        refused = await extra.login()
        extra_closed = await extra.closed_by_printer()

        broker = fleet.node(printer.serial).broker
        await first.close()
        await eventually(lambda: broker.client_count == 1, "the broker noticing the hang-up")
        again = await _raw(probes, printer)
        accepted = await again.login()
        count = broker.client_count
    assert refused is ConnackCode.SERVER_UNAVAILABLE
    assert extra_closed
    assert accepted is ConnackCode.ACCEPTED
    assert count == 2


async def test_refused_request_subscription_gets_0x80_and_commands_still_work(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(
        tmp_path, models=("P1S",), quirks={"refuse_request_subscription": True}
    ) as (_, manifest):
        printer = manifest.printers[0]
        probe = await _probe(probes, printer, subscribe=False)
        codes = await probe.subscribe(probe.request_topic, probe.report_topic)
        await _still_answers(probe, "50001")
    assert codes == (SUBACK_FAILURE, 0)


async def test_request_subscription_is_granted_without_the_quirk(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        probe = await _probe(probes, manifest.printers[0], subscribe=False)
        codes = await probe.subscribe(probe.request_topic, probe.report_topic, "#")
    assert codes == (0, 0, 0)


# ----------------------------------------------------------------------------- stale session


async def test_stale_printer_keeps_the_connection_but_publishes_nothing(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), **FAST) as (fleet, manifest):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)
        probe = await _probe(probes, printer)
        await probe.report(is_push_status, "a report before the fault")

        node.printer.set_stale(True)
        await probe.gather(0.2)  # whatever was already on its way
        await probe.request({"pushing": {"command": "pushall", "sequence_id": "60001"}})
        await probe.request({"info": {"command": "get_version", "sequence_id": "60002"}})
        node.printer.inject_hms(0x0300_0100, 0x0001_0001)  # a change that would be reported
        await probe.send(Pingreq())
        during = await probe.gather(1.0)

        node.printer.set_stale(False)
        await _still_answers(probe, "60003")
    assert [p for p in during if isinstance(p, Publish)] == []
    # The TCP/MQTT session itself is alive: that is what makes this fault hard to notice.
    assert any(isinstance(p, Pingresp) for p in during)


async def test_stale_from_power_on_sends_not_even_the_subscribe_report(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(
        tmp_path, models=("P1S",), overrides={0: {"quirks": {"stale": True}}}, **FAST
    ) as (_, manifest):
        probe = await _probe(probes, manifest.printers[0])
        await probe.request({"pushing": {"command": "pushall", "sequence_id": "1"}})
        packets = await probe.gather(0.8)
    assert [p for p in packets if isinstance(p, Publish)] == []


# ----------------------------------------------------------------------------- dropped connections


async def test_drop_connections_cuts_every_client_of_that_printer_only(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S", "A1")) as (fleet, manifest):
        dropped_printer, other_printer = manifest.printers
        victims = [await _probe(probes, dropped_printer) for _ in range(2)]
        bystander = await _probe(probes, other_printer)

        fleet.node(dropped_printer.serial).drop_connections()
        closed = [await victim.closed_by_printer() for victim in victims]
        await _still_answers(bystander, "70001")
        # The printer is back at once, as after a Wi-Fi blip.
        back = await _probe(probes, dropped_printer)
        await _still_answers(back, "70002")
        count = fleet.node(dropped_printer.serial).broker.client_count
    assert closed == [True, True]
    assert count == 1


# ----------------------------------------------------------------------------- HMS, print_error


async def test_hms_and_print_error_from_power_on_are_in_the_full_report(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    quirks = {"hms": ["0700_2000_0002_0001"], "print_error": "0300400C"}
    async with running_fleet(
        tmp_path, models=("P1S", "P1S"), overrides={0: {"quirks": quirks}}
    ) as (_, manifest):
        faulty = await _full_report(await _probe(probes, manifest.printers[0]))
        healthy = await _full_report(await _probe(probes, manifest.printers[1]))
    assert faulty["hms"] == [RUNOUT_HMS]
    assert faulty["print_error"] == 0x0300_400C
    assert healthy["hms"] == []
    assert healthy["print_error"] == 0


async def test_injected_hms_and_print_error_show_in_the_next_report(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), **FAST) as (fleet, manifest):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)
        probe = await _probe(probes, printer)
        await probe.report(is_push_status, "the first report")

        node.printer.inject_hms(0x0300_0100, 0x0001_0001)
        with_hms = print_body(
            await probe.report(lambda m: bool(print_body(m).get("hms")), "a report with HMS")
        )
        node.printer.set_print_error(0x0500_C010)
        with_error = print_body(
            await probe.report(
                lambda m: print_body(m).get("print_error", 0) != 0, "a report with print_error"
            )
        )
        node.printer.clear_hms()
        cleared = print_body(
            await probe.report(lambda m: print_body(m).get("hms") == [], "HMS cleared")
        )
        full = await _full_report(probe)
    assert with_hms["msg"] == 1  # P1: a delta
    assert with_hms["hms"] == [{"attr": 0x0300_0100, "code": 0x0001_0001}]
    assert with_error["print_error"] == 0x0500_C010
    assert cleared["hms"] == []
    assert full["print_error"] == 0x0500_C010
    assert full["hms"] == []


async def test_filament_runout_pauses_with_stage_6_and_the_ams_hms(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",), time_scale=300.0, tick_interval=0.05) as (
        fleet,
        manifest,
    ):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)
        node.storage.write_file(
            "long.gcode.3mf", build_gcode_3mf(plates=(PlateSpec(prediction_s=36_000),))
        )
        probe = await _probe(probes, printer)
        await probe.request(_project_file("80001", "long.gcode.3mf", [0]))
        await probe.report(lambda m: print_body(m).get("gcode_state") == "RUNNING", "RUNNING")

        node.printer.filament_runout(0)
        paused = print_body(
            await probe.report(lambda m: print_body(m).get("gcode_state") == "PAUSE", "PAUSE")
        )
        full = await _full_report(probe)

        await probe.request({"print": {"command": "resume", "sequence_id": "80002"}})
        resumed = print_body(
            await probe.report(
                lambda m: print_body(m).get("gcode_state") == "RUNNING", "RUNNING again"
            )
        )
    assert paused["stg_cur"] == 6
    assert RUNOUT_HMS in full["hms"]
    assert full["ams"]["ams"][0]["tray"][0]["remain"] == 0
    assert resumed.get("hms", []) == []
    assert node.printer.report.data["hms"] == []


# ----------------------------------------------------------------------------- empty-tray hang


async def test_ams_mapping_to_an_empty_tray_hangs_in_prepare_without_an_error(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    # 300x: preparation takes ~120 simulated s = 0.4 real s; we watch for 1.5 s (450 s).
    async with running_fleet(
        tmp_path, models=("P1S", "P1S"), time_scale=300.0, tick_interval=0.05
    ) as (fleet, manifest):
        hanging, control = manifest.printers
        for printer in manifest.printers:
            fleet.node(printer.serial).storage.write_file(
                "job.gcode.3mf", build_gcode_3mf(plates=(PlateSpec(prediction_s=36_000),))
            )
        empty_tray = 3  # the default AMS has nothing loaded in slot 4
        hang_probe = await _probe(probes, hanging)
        control_probe = await _probe(probes, control)
        first_full = await _full_report(hang_probe)
        assert first_full["ams"]["ams"][0]["tray"][empty_tray].get("tray_type", "") == ""

        await hang_probe.request(_project_file("90001", "job.gcode.3mf", [empty_tray]))
        await control_probe.request(_project_file("90002", "job.gcode.3mf", [0]))
        ack = await hang_probe.reply("print", "project_file", "90001")
        await control_probe.report(
            lambda m: print_body(m).get("gcode_state") == "RUNNING", "the control printing"
        )
        await hang_probe.gather(1.5)
        full = await _full_report(hang_probe)
    assert ack["result"] == "success"  # accepted: firmware gives no hint of the problem
    assert full["gcode_state"] == "PREPARE"
    assert full["print_error"] == 0
    assert full["hms"] == []
    seen_states = {print_body(m).get("gcode_state") for m in hang_probe.messages} - {None}
    assert seen_states <= {"IDLE", "PREPARE"}


# ----------------------------------------------------------------------------- FTPS faults


async def test_slow_ftps_paces_uploads_to_the_configured_rate(tmp_path: Path) -> None:
    rate = 150_000
    payload = os.urandom(rate)  # one second's worth at the configured rate
    async with running_fleet(
        tmp_path, models=("P1S", "P1S"), overrides={0: {"quirks": {"ftps_write_rate": rate}}}
    ) as (fleet, manifest):
        slow, fast = manifest.printers

        def upload(printer: ManifestPrinter) -> tuple[str, float]:
            ftp = open_ftps(printer)
            try:
                started = time.monotonic()
                reply = ftp.storbinary("STOR paced.bin", io.BytesIO(payload))
                return reply, time.monotonic() - started
            finally:
                quit_ftps(ftp)

        slow_reply, slow_seconds = await asyncio.to_thread(upload, slow)
        fast_reply, _ = await asyncio.to_thread(upload, fast)
        stored = (fleet.node(slow.serial).storage.root / "paced.bin").read_bytes()
    assert slow_reply.startswith("226")
    assert fast_reply.startswith("226")
    assert stored == payload
    # The throttle never lets bytes in ahead of the rate: a lower bound, not a benchmark.
    assert slow_seconds >= 0.9


async def test_failing_ftps_aborts_uploads_with_426_and_keeps_nothing(tmp_path: Path) -> None:
    async with running_fleet(
        tmp_path, models=("P1S",), quirks={"ftps_fail_after_bytes": 50_000}
    ) as (fleet, manifest):
        printer = manifest.printers[0]
        storage = fleet.node(printer.serial).storage

        def upload(size: int) -> str:
            ftp = open_ftps(printer)
            try:
                return store_tolerant(ftp, f"part{size}.bin", os.urandom(size))
            finally:
                quit_ftps(ftp)

        failed = await asyncio.to_thread(upload, 200_000)
        small = await asyncio.to_thread(upload, 10_000)
        leftovers = sorted(p.name for p in storage.root.rglob("*") if p.is_file())
    assert failed.startswith("426"), failed
    assert small.startswith("226"), small
    assert leftovers == ["part10000.bin"]


async def test_ftps_faults_switched_at_run_time_refuse_logins(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)

        def login() -> str:
            ftp = open_ftps(printer, login=False)
            try:
                return ftp.login("bblp", printer.access_code)
            except ftplib.Error as err:  # error_perm carries the reply text
                return str(err)
            finally:
                quit_ftps(ftp)

        before = await asyncio.to_thread(login)
        node.set_ftps_faults(FtpsFaults(refuse_logins=True))
        during = await asyncio.to_thread(login)
        node.set_ftps_faults(FtpsFaults())
        after = await asyncio.to_thread(login)
    assert before.startswith("230")
    assert during.startswith("530")
    assert after.startswith("230")


# ----------------------------------------------------------------------------- wrong access code


def _camera_read_after_auth(printer: ManifestPrinter, code: str) -> bytes:
    assert printer.ports.camera is not None
    with (
        socket.create_connection((printer.host, printer.ports.camera), TIMEOUT) as raw,
        client_context().wrap_socket(raw) as tls,
    ):
        tls.sendall(camera_auth_packet(code))
        try:
            return tls.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return b""


async def test_wrong_access_code_on_every_surface(tmp_path: Path, probes: list[MqttProbe]) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        printer = manifest.printers[0]
        probe = await _raw(probes, printer)
        connack = await probe.login("12345678")
        mqtt_closed = await probe.closed_by_printer()

        def ftps() -> str:
            ftp = open_ftps(printer, login=False)
            try:
                return ftp.login("bblp", "12345678")
            except ftplib.Error as err:  # error_perm carries the reply text
                return str(err)
            finally:
                quit_ftps(ftp)

        ftps_reply = await asyncio.to_thread(ftps)
        camera_wrong = await asyncio.to_thread(_camera_read_after_auth, printer, "12345678")
        camera_right = await asyncio.to_thread(
            _camera_read_after_auth, printer, printer.access_code
        )
    assert connack is ConnackCode.NOT_AUTHORIZED
    assert mqtt_closed
    assert ftps_reply.startswith("530")
    assert camera_wrong == b""
    assert len(camera_right) == 16  # the frame header: the right code streams


async def test_brute_forced_access_codes_lock_out_only_that_address_on_that_printer(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S", "P1S")) as (_, manifest):
        target, other = manifest.printers
        wrong = []
        for guess in range(5):
            attempt = await _raw(probes, target)
            wrong.append(await attempt.login(f"{guess:08d}"))
        locked = await (await _raw(probes, target)).login()  # the right code, too late
        elsewhere = await (await _raw(probes, target, source="127.0.0.2")).login()
        other_printer = await (await _raw(probes, other)).login()
    assert wrong == [ConnackCode.NOT_AUTHORIZED] * 5
    assert locked is ConnackCode.NOT_AUTHORIZED
    assert elsewhere is ConnackCode.ACCEPTED
    assert other_printer is ConnackCode.ACCEPTED


async def test_brute_forced_ftps_logins_are_locked_out(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_, manifest):
        printer = manifest.printers[0]

        def attempts() -> list[str]:
            replies: list[str] = []
            # 3 failures per connection (vsFTPd closes then), 4 connections = 12 failures.
            for _ in range(4):
                ftp = open_ftps(printer, login=False)
                try:
                    for _ in range(3):
                        try:
                            replies.append(ftp.login("bblp", "99999999"))
                        except ftplib.Error as err:  # keep the reply text
                            replies.append(str(err))
                            if not str(err).startswith("530"):
                                break
                except (OSError, EOFError) as err:
                    replies.append(f"closed: {err!r}")
                finally:
                    quit_ftps(ftp)
            ftp = open_ftps(printer, login=False)
            try:
                replies.append(ftp.login("bblp", printer.access_code))
            except ftplib.Error as err:  # the lock-out answer
                replies.append(str(err))
            finally:
                quit_ftps(ftp)
            return replies

        replies = await asyncio.to_thread(attempts)
    assert replies[0].startswith("530")
    assert replies[-1].startswith("421"), replies  # even the right code, while locked out


# ----------------------------------------------------------------------------- bad input


async def test_malformed_mqtt_input_disturbs_no_other_client_or_printer(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S", "A1"), **FAST) as (fleet, manifest):
        printer, neighbour = manifest.printers
        victim = await _probe(probes, printer)
        next_door = await _probe(probes, neighbour)

        hostile_streams = [
            b"GET / HTTP/1.1\r\nHost: printer\r\n\r\n",  # not MQTT at all
            b"\x10\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
            b"\x10\xff\xff\xff\x7f",  # CONNECT declaring 256 MiB
        ]
        closed = []
        for data in hostile_streams:
            attacker = await _raw(probes, printer)
            await attacker.send(data)
            closed.append(await attacker.closed_by_printer())

        # After a valid login: a reserved packet type, then a SUBSCRIBE with bad flags.
        for data in (b"\xf0\x00", b"\x80\x05\x00\x01\x00\x00\x00"):
            attacker = await _raw(probes, printer)
            assert await attacker.login() is ConnackCode.ACCEPTED
            await attacker.send(data)
            closed.append(await attacker.closed_by_printer())

        # Half a CONNECT, then silence and a hang-up mid-packet.
        attacker = await _raw(probes, printer)
        await attacker.send(encode(Connect("half", username="bblp", password=b"x"))[:7])
        await attacker.close()

        # Well-formed MQTT with payloads no printer expects: the session survives them.
        noisy = await _probe(probes, printer)
        for payload in (
            b"\xff\xfe not json",
            b"[1, 2, 3]",
            b'"just a string"',
            b'{"print": "not an object"}',
            b'{"print": {"command": 42, "sequence_id": "1"}}',
            b'{"print": {"command": "project_file", "sequence_id": "2", "url": ["x"]}}',
            b'{"print": {"command": "gcode_line", "sequence_id": "3", "param": {"a": 1}}}',
            b"{" * 5000 + b"}" * 5000,
            b"",
        ):
            await noisy.request(payload)
        await noisy.send(Subscribe(77, (("device/+/report/#/x", 0),)))
        await noisy.send(Publish("device/other/request", b"{}", qos=1, packet_id=9))
        await _still_answers(noisy, "99001")

        await _still_answers(victim, "99002")
        await _still_answers(next_door, "99003")
        published_before = fleet.reports_published
        await victim.report(is_push_status, "a periodic report after the attacks")
        ticking = fleet.reports_published > published_before
    assert closed == [True] * 5
    assert ticking


def _files_outside(top: Path, storage_root: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if not p.is_relative_to(storage_root))


async def test_path_traversal_is_confined_on_ftps_and_in_project_file(
    tmp_path: Path, probes: list[MqttProbe]
) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        printer = manifest.printers[0]
        node = fleet.node(printer.serial)
        (tmp_path / "secret.gcode.3mf").write_bytes(build_gcode_3mf())
        before = _files_outside(tmp_path, node.storage.root)

        def ftps() -> list[str]:
            ftp = open_ftps(printer)
            try:
                replies = [
                    store_tolerant(ftp, name, b"escape")
                    for name in ("../../../escape.bin", "/../escape.bin", "cache/../../x.bin")
                ]
                try:
                    ftp.cwd("../..")
                    replies.append(ftp.pwd())
                except ftplib.Error as err:
                    replies.append(str(err))
                return replies
            finally:
                quit_ftps(ftp)

        replies = await asyncio.to_thread(ftps)
        probe = await _probe(probes, printer)
        depth = "../" * len(node.storage.root.relative_to(tmp_path).parts)
        await probe.request(_project_file("95001", f"{depth}secret.gcode.3mf", [0]))
        ack = await probe.reply("print", "project_file", "95001")
        after = _files_outside(tmp_path, node.storage.root)
        state = node.printer.gcode_state
    assert [r[:4] for r in replies] == ["550 "] * 4, replies
    assert all("leaves the storage root" in r for r in replies), replies
    assert after == before  # nothing written outside the printer's storage
    assert ack["result"] == "failed"
    assert state == "IDLE"
