"""Printer commands over real HTTP against the simulator, on SQLite and PostgreSQL.

Each outcome has its answer: acknowledged (200 with the printer's ack), refused by the printer
(409 command-refused with its reason), not sent because the printer is offline, busy or not in
Developer Mode (409), sent but unanswered (504). Every command is audited with its outcome,
bad values never reach the printer, raw G-code is for admins, and two operators acting on one
printer at once both get the truth.
"""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bambufarm.auth.roles import Role
from bambufarm.protocol.state import GcodeState
from bambufarm.simulator.demo import demo_job, start_job
from bambufarm.storage.audit import list_actions
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]

PROBLEM = "urn:bambufarm:problem:"


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> "FarmApi":
    """A P1S and an X1C, both added and online, on each database."""
    async with running_farm_api(database_url, tmp_path) as running:
        await running.add()
        await running.until_online()
        yield running


async def _printing(farm_api: FarmApi, index: int = 0) -> str:
    """Start a job on a simulated printer and wait until the server sees it busy."""
    printer = farm_api.printer(index)
    node = farm_api.sim.node(printer.serial)
    start_job(
        node,
        "cube.gcode.3mf",
        demo_job(node.spec.identity.model, 2.0),
        task_id=1_000_000 + index,
    )
    busy = {GcodeState.PREPARE, GcodeState.RUNNING}
    await farm_api.until(
        lambda: farm_api.farm.printer(printer.serial).snapshot.state.job.gcode_state in busy,
        "the job to start",
    )
    return printer.serial


async def _audit(farm_api: FarmApi, action: str) -> list[dict[str, Any]]:
    async with farm_api.services.database.session(readonly=True) as session:
        page = await list_actions(session, action=action)
    return [{"actor": e.actor, "serial": e.printer_serial, **dict(e.details)} for e in page.items]


async def test_pause_resume_stop_a_print_with_audit(farm_api: FarmApi) -> None:
    serial = await _printing(farm_api)
    client = farm_api.admin()
    paused = await client.post(f"/api/v1/printers/{serial}/pause")
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert (body["status"], body["sent"], body["command"]) == ("ok", True, "pause")
    assert body["ack"]["result"] == "ok"
    await farm_api.until(
        lambda: farm_api.farm.printer(serial).snapshot.state.job.gcode_state is GcodeState.PAUSE,
        "the pause to show in the status",
    )
    assert (await client.post(f"/api/v1/printers/{serial}/resume")).status_code == 200
    stopped = await client.post(f"/api/v1/printers/{serial}/stop")
    assert stopped.status_code == 200
    await farm_api.until(
        lambda: (
            farm_api.farm.printer(serial).snapshot.state.job.gcode_state
            in (GcodeState.FAILED, GcodeState.IDLE)
        ),
        "the stopped job",
    )
    for action in ("printer.pause", "printer.resume", "printer.stop"):
        (entry,) = await _audit(farm_api, action)
        assert entry["serial"] == serial
        assert entry["actor"].startswith("admin (key ")
        assert (entry["status"], entry["sent"]) == ("ok", True)


async def test_the_audit_log_is_read_through_the_api_by_admins_only(farm_api: FarmApi) -> None:
    serial = farm_api.printer(1).serial
    admin = farm_api.admin()
    for command in ("light", "light"):
        sent = await admin.post(f"/api/v1/printers/{serial}/{command}", json={"on": False})
        assert sent.status_code == 200, sent.text
    first = await admin.get("/api/v1/audit", params={"serial": serial, "limit": 1})
    assert first.status_code == 200, first.text
    (newest,) = first.json()["items"]
    assert (newest["action"], newest["printer_serial"]) == ("printer.light", serial)
    assert newest["actor"].startswith("admin (key ")
    older = await admin.get(
        "/api/v1/audit",
        params={"serial": serial, "limit": 1, "cursor": first.json()["next_cursor"]},
    )
    (second,) = older.json()["items"]
    assert second["id"] < newest["id"]
    other = await admin.get("/api/v1/audit", params={"serial": farm_api.printer(0).serial})
    assert [e["action"] for e in other.json()["items"]] == ["printer.add"]  # the fixture's
    bad = await admin.get("/api/v1/audit", params={"cursor": "nonsense"})
    assert bad.status_code == 422
    assert "not one this server issued" in bad.json()["detail"]
    # PostgreSQL refuses NUL in text: refused here as bad input, never a database failure.
    nul = await admin.get("/api/v1/audit", params={"actor": "admin\x00"})
    assert nul.status_code == 422
    await farm_api.api.add_user("olga", Role.OPERATOR)
    operator = await farm_api.api.sign_in("olga")
    refused = await operator.client.get("/api/v1/audit")
    assert refused.status_code == 403


async def test_the_printers_refusal_is_a_409_with_its_reason(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    response = await farm_api.admin().post(f"/api/v1/printers/{serial}/pause")
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == PROBLEM + "command-refused"
    assert "nothing to pause" in problem["detail"]
    (entry,) = await _audit(farm_api, "printer.pause")
    assert (entry["status"], entry["sent"]) == ("rejected", True)


async def test_a_printer_that_does_not_answer_is_a_504(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    farm_api.sim.node(serial).printer.set_stale(True)
    response = await farm_api.admin().post(f"/api/v1/printers/{serial}/light", json={"on": True})
    assert response.status_code == 504, response.text
    assert response.json()["type"] == PROBLEM + "command-timeout"
    (entry,) = await _audit(farm_api, "printer.light")
    assert (entry["status"], entry["sent"]) == ("timeout", True)


async def test_a_disabled_printer_gets_nothing(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    client = farm_api.admin()
    await client.post(f"/api/v1/printers/{serial}/disable")
    response = await client.post(f"/api/v1/printers/{serial}/pushall")
    assert response.status_code == 409
    assert response.json()["type"] == PROBLEM + "printer-offline"
    (entry,) = await _audit(farm_api, "printer.pushall")
    assert (entry["status"], entry["sent"]) == ("offline", False)
    unknown = await client.post("/api/v1/printers/01P00A999999999/pause")
    assert unknown.status_code == 404


async def test_a_second_job_is_refused_before_it_is_sent(farm_api: FarmApi) -> None:
    serial = await _printing(farm_api)
    result = await farm_api.farm.command(
        serial,
        "start_print",
        lambda handle: handle.start_print("other.gcode.3mf"),
        actor="tests",
    )
    assert (result.status.value, result.sent) == ("rejected", False)
    assert "busy" in result.reason


async def test_light_speed_temperature_fan_ams_and_values_out_of_range(
    farm_api: FarmApi,
) -> None:
    x1c = farm_api.printer(1).serial
    client = farm_api.admin()
    url = f"/api/v1/printers/{x1c}"
    for path, body in (
        ("light", {"on": False}),
        ("light", {"on": True, "node": "chamber_light"}),
        ("temperature", {"heater": "bed", "target": 55}),
        ("temperature", {"heater": "nozzle", "target": 200}),
        ("fan", {"fan": 1, "percent": 50}),
    ):
        response = await client.post(f"{url}/{path}", json=body)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["status"] == "ok"
    await farm_api.until(
        lambda: farm_api.farm.printer(x1c).snapshot.state.temperatures.bed_target == 55,
        "the new bed target in the status",
    )
    # Speed changes apply to a running print only; idle, the printer answers as it will.
    speed = await client.post(f"{url}/speed", json={"level": 3})
    assert speed.status_code in (200, 409), speed.text
    for path, body in (
        ("temperature", {"heater": "bed", "target": 200}),
        ("temperature", {"heater": "oven", "target": 20}),
        ("temperature", {"heater": "nozzle", "target": -5}),
        ("speed", {"level": 7}),
        ("fan", {"fan": 1, "percent": 150}),
        ("ams/load", {"ams_id": 0, "slot_id": 9}),
        ("light", {"on": "maybe"}),
        ("gcode", {"gcode": ""}),
    ):
        response = await client.post(f"{url}/{path}", json=body)
        assert response.status_code == 422, (path, body, response.text)
    assert await _audit(farm_api, "printer.speed") != []
    temps = await _audit(farm_api, "printer.temperature")
    assert {(t["heater"], t["target"]) for t in temps} == {("bed", 55), ("nozzle", 200)}


async def test_pushall_asks_for_a_full_report(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    before = farm_api.farm.printer(serial).snapshot.state.report_count
    response = await farm_api.admin().post(f"/api/v1/printers/{serial}/pushall")
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == "sent (no acknowledgement expected)"
    await farm_api.until(
        lambda: farm_api.farm.printer(serial).snapshot.state.report_count > before,
        "the full report",
    )


async def test_ams_load_and_unload(farm_api: FarmApi) -> None:
    x1c = farm_api.printer(1).serial
    client = farm_api.admin()
    loaded = await client.post(f"/api/v1/printers/{x1c}/ams/load", json={"ams_id": 0, "slot_id": 1})
    assert loaded.status_code in (200, 409), loaded.text
    unloaded = await client.post(f"/api/v1/printers/{x1c}/ams/unload", json={})
    assert unloaded.status_code in (200, 409), unloaded.text
    # Either way the printer answered and the audit says what it said.
    (entry,) = await _audit(farm_api, "printer.ams_load")
    assert entry["sent"] is True
    assert (entry["ams_id"], entry["slot_id"]) == (0, 1)


async def test_gcode_is_for_admins_only(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    api = farm_api.api
    await api.add_user("otto", Role.OPERATOR)
    operator = api.key_client(await api.add_key("otto", ["control"]))
    viewer_session = await api.user_session("vera", Role.VIEWER)
    url = f"/api/v1/printers/{serial}"
    assert (await operator.post(f"{url}/gcode", json={"gcode": "M104 S0"})).status_code == 403
    assert (await operator.post(f"{url}/light", json={"on": True})).status_code == 200
    denied = await viewer_session.client.post(
        f"{url}/light", json={"on": True}, headers=viewer_session.csrf_header
    )
    assert denied.status_code == 403
    ran = await farm_api.admin().post(f"{url}/gcode", json={"gcode": "M104 S0\nM140 S0"})
    assert ran.status_code == 200, ran.text
    (entry,) = await _audit(farm_api, "printer.gcode")
    assert entry["gcode"] == "M104 S0\nM140 S0"


async def test_read_only_printers_take_the_light_but_not_print_commands(
    database_url: str, tmp_path: Path
) -> None:
    async with running_farm_api(
        database_url, tmp_path, models=("P1S",), overrides={0: {"quirks": {"secured": True}}}
    ) as farm_api:
        await farm_api.add()
        serial = farm_api.printer(0).serial
        await farm_api.until(
            lambda: farm_api.farm.printer(serial).snapshot.state.developer_mode is False,
            "the printer to say Developer Mode is off",
        )
        client = farm_api.admin()
        refused = await client.post(f"/api/v1/printers/{serial}/pause")
        assert refused.status_code == 409
        assert refused.json()["type"] == PROBLEM + "printer-read-only"
        assert "Developer Mode" in refused.json()["detail"]
        light = await client.post(f"/api/v1/printers/{serial}/light", json={"on": True})
        assert light.status_code == 200, light.text


async def test_two_operators_pausing_at_once_both_get_the_truth(farm_api: FarmApi) -> None:
    serial = await _printing(farm_api)
    api = farm_api.api
    await api.add_user("otto", Role.OPERATOR)
    await api.add_user("olga", Role.OPERATOR)
    clients = [
        api.key_client(await api.add_key("otto", ["control"])),
        api.key_client(await api.add_key("olga", ["control"])),
    ]
    first, second = await asyncio.gather(
        *(client.post(f"/api/v1/printers/{serial}/pause") for client in clients)
    )
    codes = sorted([first.status_code, second.status_code])
    # The printer pauses once; the other request is acknowledged too (already paused is not
    # an error for some firmware) or refused with the printer's reason — never lost.
    assert codes in ([200, 200], [200, 409]), (first.text, second.text)
    for response in (first, second):
        if response.status_code == 409:
            assert "nothing to pause" in response.json()["detail"]
    entries = await _audit(farm_api, "printer.pause")
    assert sorted(e["actor"].split(" ")[0] for e in entries) == ["olga", "otto"]
    assert sorted(e["status"] for e in entries) == sorted(
        "ok" if r.status_code == 200 else "rejected" for r in (first, second)
    )
