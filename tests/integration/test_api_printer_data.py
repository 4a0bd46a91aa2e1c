"""A printer's files (FTPS to the simulator's SD card), its HMS conditions and the event
history, over real HTTP on SQLite and PostgreSQL."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bambufarm.auth.roles import Role
from bambufarm.storage.audit import list_actions
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]

PROBLEM = "urn:bambufarm:problem:"
AMS_HUMIDITY = "0700_2000_0002_0001"


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """A P1S with an AMS HMS condition and an X1C, added and online, on each database."""
    async with running_farm_api(
        database_url, tmp_path, overrides={0: {"quirks": {"hms": [AMS_HUMIDITY]}}}
    ) as running:
        await running.add()
        await running.until_online()
        yield running


async def test_list_download_and_delete_files(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    payload = b"G28\n" * 5000
    await farm_api.farm.upload(serial, payload, "cache/part one.gcode")
    client = farm_api.admin()
    url = f"/api/v1/printers/{serial}/files"
    root = (await client.get(url)).json()
    assert root["path"] == "/"
    cache = next(item for item in root["items"] if item["name"] == "cache")
    assert cache["is_dir"] is True
    listing = (await client.get(url, params={"path": "/cache"})).json()
    entry = next(item for item in listing["items"] if item["name"] == "part one.gcode")
    assert (entry["path"], entry["size"], entry["is_dir"]) == (
        "/cache/part one.gcode",
        len(payload),
        False,
    )
    download = await client.get(f"{url}/download", params={"path": entry["path"]})
    assert download.status_code == 200
    assert download.content == payload
    assert "filename*=utf-8''part%20one.gcode" in download.headers["content-disposition"]
    # The scratch copy is gone once the response is sent.
    scratch = farm_api.services.settings.data_dir / "tmp"
    await farm_api.until(lambda: not any(scratch.glob("download-*")), "the scratch copy to go")

    viewer = await farm_api.api.user_session("vera", Role.VIEWER)
    assert (await viewer.client.get(url)).status_code == 200
    refused = await viewer.client.delete(
        url, params={"path": entry["path"]}, headers=viewer.csrf_header
    )
    assert refused.status_code == 403
    deleted = await client.delete(url, params={"path": entry["path"]})
    assert deleted.status_code == 204
    missing = await client.get(f"{url}/download", params={"path": entry["path"]})
    assert missing.status_code == 404
    assert missing.json()["type"] == PROBLEM + "printer-file-not-found"
    async with farm_api.services.database.session(readonly=True) as session:
        (audit,) = (await list_actions(session, action="printer.file_delete")).items
    assert (audit.printer_serial, audit.details["path"]) == (serial, "/cache/part one.gcode")


async def test_paths_are_confined_to_the_printers_storage(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    client = farm_api.admin()
    url = f"/api/v1/printers/{serial}/files"
    for path in ("../../etc/passwd", "/cache/../../x", "/a\r\nDELE x", "/a\x00b"):
        for response in (
            await client.get(url, params={"path": path}),
            await client.get(f"{url}/download", params={"path": path}),
            await client.delete(url, params={"path": path}),
        ):
            assert response.status_code == 422, (path, response.text)
    root_download = await client.get(f"{url}/download", params={"path": "/"})
    assert root_download.status_code == 422
    unknown = await client.get("/api/v1/printers/01P00A999999999/files")
    assert unknown.status_code == 404


async def test_hms_is_decoded(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    await farm_api.until(
        lambda: bool(farm_api.farm.printer(serial).snapshot.state.hms), "the HMS condition"
    )
    client = farm_api.admin()
    everything = (await client.get("/api/v1/hms")).json()
    assert [item["serial"] for item in everything["items"]] == [serial]
    one = (await client.get(f"/api/v1/printers/{serial}/hms")).json()
    (condition,) = one["items"]
    assert condition["code"] == AMS_HUMIDITY
    assert condition["module"] == "AMS"
    assert condition["ams_unit"] == 0
    assert condition["severity"] == "serious"
    assert condition["wiki_url"].endswith(f"/p1/troubleshooting/hmscode/{AMS_HUMIDITY}")
    other = (await client.get(f"/api/v1/printers/{farm_api.printer(1).serial}/hms")).json()
    assert other["items"] == []


async def test_event_history_pages_by_cursor_and_filters(farm_api: FarmApi) -> None:
    client = farm_api.admin()
    p1s, x1c = farm_api.printer(0).serial, farm_api.printer(1).serial
    await client.post(f"/api/v1/printers/{x1c}/disable")
    await client.post(f"/api/v1/printers/{x1c}/enable")
    await farm_api.until_online([x1c])
    await farm_api.farm.flush_history()
    everything = (await client.get("/api/v1/events?limit=1000")).json()
    assert everything["next_cursor"] is None
    kinds = {(e["serial"], e["kind"]) for e in everything["items"]}
    assert {(p1s, "printer_added"), (x1c, "printer_added"), (p1s, "hms_raised")} <= kinds
    times = [e["at"] for e in everything["items"]]
    assert times == sorted(times, reverse=True)

    pages: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/events", params=params)).json()
        pages.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in pages] == [e["id"] for e in everything["items"]]

    states = (
        await client.get(f"/api/v1/printers/{x1c}/events", params={"kind": "connection_changed"})
    ).json()
    assert {e["serial"] for e in states["items"]} == {x1c}
    assert "disabled" in [e["data"]["state"] for e in states["items"]]
    two_kinds = (
        await client.get(
            "/api/v1/events", params=[("kind", "printer_added"), ("kind", "hms_raised")]
        )
    ).json()
    assert {e["kind"] for e in two_kinds["items"]} == {"printer_added", "hms_raised"}
    bad = await client.get("/api/v1/events", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    naive = await client.get("/api/v1/events", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
