"""The printers API over real HTTP against the simulator, on SQLite and PostgreSQL.

Adding tests the connection first (and says why it failed: access code, certificate,
address, serial), the access code goes in and never comes out (responses, logs, audit), the
farm follows edits and removals, a manifest imports, discovery lists what is not added yet,
and the list filters and pages from the live fleet.
"""

import logging
from pathlib import Path

import pytest

from bambufarm.auth.roles import Role
from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.tls import TlsMode
from bambufarm.storage.audit import list_actions
from bambufarm.storage.printers import get_printer
from tests.support.farm import FarmApi, running_farm_api, running_sim, serving

pytest_plugins = ["tests.support.postgres"]

PROBLEM = "urn:bambufarm:problem:"


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> "FarmApi":
    """The server and a simulated P1S and X1C, on each database."""
    async with running_farm_api(database_url, tmp_path) as running:
        yield running


async def test_add_tests_the_connection_and_never_returns_the_access_code(
    farm_api: FarmApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    printer = farm_api.printer(0)
    client = farm_api.admin()
    response = await client.post(
        "/api/v1/printers", json=farm_api.body(printer, name=None, model=None)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["serial"] == printer.serial
    # The model came from the printer's own get_version, the name from the serial.
    assert body["model"] == printer.model
    assert body["model_name"] == printer.model_name
    assert body["mqtt_port"] == printer.ports.mqtt
    assert body["enabled"] is True
    assert "access_code" not in body
    await farm_api.until_online([printer.serial])

    listed = await client.get("/api/v1/printers")
    detail = await client.get(f"/api/v1/printers/{printer.serial}")
    status = await client.get(f"/api/v1/printers/{printer.serial}/status")
    for reply in (response, listed, detail, status):
        assert printer.access_code not in reply.text
    assert detail.json()["connection"]["state"] == "online"
    assert status.json()["serial"] == printer.serial
    assert status.json()["report_count"] >= 1
    # Stored encrypted, logged nowhere, audited without it.
    async with farm_api.services.database.session(readonly=True) as session:
        record = await get_printer(session, printer.serial)
        audit = await list_actions(session, action="printer.add")
    assert printer.access_code not in record.access_code_encrypted
    assert [(e.actor.split(" ")[0], e.printer_serial) for e in audit.items] == [
        ("admin", printer.serial)
    ]
    assert printer.access_code not in str(dict(audit.items[0].details))
    assert audit.items[0].details["tested"] is True
    assert printer.access_code not in caplog.text


async def test_a_wrong_access_code_is_refused_before_saving(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    client = farm_api.admin()
    response = await client.post(
        "/api/v1/printers", json=farm_api.body(printer, access_code="87654321")
    )
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == PROBLEM + "printer-auth-failed"
    assert "access code" in problem["detail"]
    assert "87654321" not in response.text
    assert (await client.get("/api/v1/printers")).json()["total"] == 0
    assert printer.serial not in farm_api.farm


async def test_an_unreachable_address_is_refused_with_the_reason(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    client = farm_api.admin()
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    response = await client.post("/api/v1/printers", json=farm_api.body(printer, mqtt_port=1))
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == PROBLEM + "printer-offline"
    assert "refused" in problem["detail"] or "connect" in problem["detail"]
    assert (await client.get("/api/v1/printers")).json()["total"] == 0


async def test_a_wrong_serial_is_caught_by_the_certificate(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    other = farm_api.printer(1)
    # The first printer's address with the second one's serial: its certificate names the
    # first, so the connection must not be trusted (CN != serial).
    response = await farm_api.admin().post(
        "/api/v1/printers", json=farm_api.body(printer, serial=other.serial)
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"] == PROBLEM + "printer-tls-failed"


async def test_test_false_saves_without_connecting(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    client = farm_api.admin()
    response = await client.post(
        "/api/v1/printers?test=false",
        json=farm_api.body(printer, access_code="87654321", model="P1S"),
    )
    assert response.status_code == 201, response.text
    await farm_api.until(
        lambda: (
            farm_api.farm.printer(printer.serial).snapshot.connection.state
            is ConnectionState.AUTH_FAILED
        ),
        "the saved printer to fail its login",
    )
    detail = (await client.get(f"/api/v1/printers/{printer.serial}")).json()
    assert detail["connection"]["state"] == "auth_failed"
    assert "access code" in detail["connection"]["reason"]


async def test_bad_values_are_422_and_duplicates_409(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    client = farm_api.admin()
    for bad in (
        {"serial": "../etc", "access_code": "12345678", "host": "127.0.0.1"},
        {"serial": printer.serial, "access_code": "has space", "host": "127.0.0.1"},
        {"serial": printer.serial, "access_code": "12345678", "host": "127.0.0.1", "mqtt_port": 0},
        {"serial": printer.serial, "access_code": "12345678", "host": "x", "model": "Z9000"},
        # Only addresses and host names are ever connected to.
        {"serial": printer.serial, "access_code": "12345678", "host": "' OR 1=1 --"},
        {"serial": printer.serial, "access_code": "12345678", "host": "printer.lan; rm -rf"},
        {"serial": printer.serial, "access_code": "12345678", "host": "-x"},
    ):
        response = await client.post("/api/v1/printers", json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert "has space" not in response.text
    # Not in the discovery list and no host: say what to give.
    unknown = await client.post(
        "/api/v1/printers", json={"serial": "01P00A999999999", "access_code": "12345678"}
    )
    assert unknown.status_code == 422
    assert "host" in unknown.json()["detail"]
    await farm_api.add(printer)
    again = await client.post("/api/v1/printers", json=farm_api.body(printer))
    assert again.status_code == 409
    assert again.json()["type"] == PROBLEM + "already-exists"


async def test_edit_disable_enable_and_remove(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    await farm_api.add(printer)
    await farm_api.until_online([printer.serial])
    client = farm_api.admin()
    url = f"/api/v1/printers/{printer.serial}"

    renamed = await client.patch(url, json={"name": "Shop floor 1"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Shop floor 1"

    # A new access code is tested before it is saved; the old one keeps working.
    wrong = await client.patch(url, json={"access_code": "00000000"})
    assert wrong.status_code == 409
    assert wrong.json()["type"] == PROBLEM + "printer-auth-failed"
    assert farm_api.farm.printer(printer.serial).snapshot.connection.connected

    disabled = await client.post(f"{url}/disable")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert disabled.json()["connection"]["state"] == "disabled"
    node = farm_api.sim.node(printer.serial)
    await farm_api.until(lambda: node.broker.client_count == 0, "the printer's link to close")
    pause = await client.post(f"{url}/pause")
    assert pause.status_code == 409
    assert pause.json()["type"] == PROBLEM + "printer-offline"

    enabled = await client.patch(url, json={"enabled": True})
    assert enabled.json()["enabled"] is True
    await farm_api.until_online([printer.serial])

    null_name = await client.patch(url, json={"name": None})
    assert null_name.status_code == 400

    removed = await client.delete(url)
    assert removed.status_code == 204
    assert (await client.get(url)).status_code == 404
    await farm_api.until(
        lambda: node.broker.client_count == 0, "the removed printer's link to close"
    )
    async with farm_api.services.database.session(readonly=True) as session:
        actions = [e.action for e in (await list_actions(session)).items]
    for action in ("printer.add", "printer.update", "printer.disable", "printer.enable"):
        assert action in actions
    assert actions[0] == "printer.remove"


async def test_only_admins_manage_printers_and_viewers_see_them(farm_api: FarmApi) -> None:
    await farm_api.add(farm_api.printer(0))
    api = farm_api.api
    viewer = await api.user_session("vera", Role.VIEWER)
    await api.add_user("otto", Role.OPERATOR)
    operator_key = await api.add_key("otto", ["read", "control"])
    listed = await viewer.client.get("/api/v1/printers")
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    for client in (viewer.client, api.key_client(operator_key)):
        response = await client.post(
            "/api/v1/printers", json=farm_api.body(farm_api.printer(1)), headers=viewer.csrf_header
        )
        assert response.status_code == 403, response.text
    read_only_admin = await api.add_key("admin", ["read"], name="read-only")
    denied = await api.key_client(read_only_admin).delete(
        f"/api/v1/printers/{farm_api.printer(0).serial}"
    )
    assert denied.status_code == 403


async def test_list_filters_and_pages(tmp_path: Path, database_url: str) -> None:
    async with running_farm_api(
        database_url, tmp_path, models=("P1S", "X1C", "A1"), count=5
    ) as farm_api:
        await farm_api.add()
        await farm_api.until_online()
        client = farm_api.admin()
        everything = (await client.get("/api/v1/printers")).json()
        assert everything["total"] == 5
        names = [item["name"] for item in everything["items"]]
        assert names == sorted(names, key=str.lower)
        page = (await client.get("/api/v1/printers?offset=1&limit=2")).json()
        assert [i["serial"] for i in page["items"]] == [
            i["serial"] for i in everything["items"][1:3]
        ]
        assert page["total"] == 5
        p1s = (await client.get("/api/v1/printers?model=P1S")).json()
        assert {i["model_name"] for i in p1s["items"]} == {"P1S"}
        assert p1s["total"] == 2
        by_code = (await client.get("/api/v1/printers?model=C12")).json()
        assert by_code["total"] == 2
        first = everything["items"][0]
        searched = (await client.get(f"/api/v1/printers?search={first['serial'][-6:]}")).json()
        assert [i["serial"] for i in searched["items"]] == [first["serial"]]
        online = (await client.get("/api/v1/printers?state=online")).json()
        assert online["total"] == 5
        idle = (await client.get("/api/v1/printers?job_state=IDLE")).json()
        assert idle["total"] == 5
        await client.post(f"/api/v1/printers/{first['serial']}/disable")
        disabled = (await client.get("/api/v1/printers?state=disabled")).json()
        assert [i["serial"] for i in disabled["items"]] == [first["serial"]]
        assert (await client.get("/api/v1/printers?enabled=true")).json()["total"] == 4
        bad = await client.get("/api/v1/printers?state=sleepy")
        assert bad.status_code == 422
        assert (await client.get("/api/v1/printers?model=Z9")).status_code == 422


async def test_import_a_manifest_tests_each_printer(farm_api: FarmApi) -> None:
    manifest = farm_api.manifest
    body = {
        "version": 1,
        "ca_cert": manifest.ca_cert,
        "printers": [
            {
                "serial": p.serial,
                "model": p.model,
                "model_name": p.model_name,
                "name": p.name,
                "host": p.host,
                "access_code": p.access_code if i == 0 else "99999999",
                "ports": {"mqtt": p.ports.mqtt, "ftps": p.ports.ftps, "camera": p.ports.camera},
            }
            for i, p in enumerate(manifest.printers)
        ],
    }
    client = farm_api.admin()
    # Unknown manifest fields (model_name, bind ports...) are fine: only what is used counts.
    first = await client.post("/api/v1/printers/import", json=body)
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["added"], report["existing"], report["failed"]) == (1, 0, 1)
    outcomes = [(i["serial"], i["outcome"]) for i in report["items"]]
    assert outcomes == [
        (manifest.printers[0].serial, "added"),
        (manifest.printers[1].serial, "failed"),
    ]
    assert "access code" in report["items"][1]["detail"]
    assert "99999999" not in first.text
    again = (await client.post("/api/v1/printers/import", json=body)).json()
    assert again["existing"] == 1
    assert again["items"][0]["outcome"] == "exists"


async def test_add_from_the_discovery_list(farm_api: FarmApi) -> None:
    client = farm_api.admin()
    printer = farm_api.printer(1)
    await farm_api.until(
        lambda: any(p.serial == printer.serial for p in farm_api.farm.discovered()),
        "the simulator's SSDP announcement",
    )
    found = (await client.get("/api/v1/discovery")).json()
    assert found["listening"] is True
    entry = next(i for i in found["items"] if i["serial"] == printer.serial)
    assert entry["model"] == printer.model
    assert entry["host"] == "127.0.0.1"
    # The simulator announces the standard port; an auto-port fleet listens elsewhere, so the
    # port override is still given — address and model come from the announcement.
    response = await client.post(
        "/api/v1/printers",
        json={
            "serial": printer.serial,
            "access_code": printer.access_code,
            "mqtt_port": printer.ports.mqtt,
            "ftps_port": printer.ports.ftps,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["host"] == "127.0.0.1"
    assert response.json()["name"] == printer.name
    after = (await client.get("/api/v1/discovery")).json()
    assert printer.serial not in [i["serial"] for i in after["items"]]


async def test_printers_come_back_from_the_database_after_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "server"
    async with running_sim(tmp_path) as simulated:
        async with serving(database_url, data_dir, simulated, tls=TlsMode.TOFU) as farm_api:
            await farm_api.add()
            await farm_api.admin().post(f"/api/v1/printers/{farm_api.printer(1).serial}/disable")
            serials = [p.serial for p in farm_api.manifest.printers]
        # A new server on the same database and data directory (same key, same pins).
        async with serving(database_url, data_dir, simulated, tls=TlsMode.TOFU) as again:
            assert sorted(p.serial for p in again.farm.printers()) == sorted(serials)
            await again.until_online([serials[0]])
            second = again.farm.printer(serials[1])
            assert second.record.enabled is False
            assert second.snapshot.connection.state is ConnectionState.DISABLED
