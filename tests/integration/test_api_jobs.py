"""The jobs API over real HTTP on SQLite and PostgreSQL: queue copies, list and filter, see
why a job waits per printer, reorder, cancel, retry, duplicate, clear plates, with audit and
permissions; and against simulated printers, "3 copies on any P1S with white PLA" queued
through the API prints on the right printers.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bambufarm.auth.roles import Role
from bambufarm.storage.audit import list_actions
from tests.support.api import RunningApi
from tests.support.farm import FarmApi
from tests.support.queue_api import P1S, queue_farm_api, sliced, uploaded
from tests.support.queue_harness import set_tray

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

PROBLEM = "urn:bambufarm:problem:"
WAIT = 60.0  # prints take ~2 s at the simulator's time scale; a loaded machine is slower


@pytest.fixture
async def operator(api: RunningApi) -> httpx.AsyncClient:
    """A client with an operator's queue-scoped API key."""
    await api.add_user("olga", Role.OPERATOR)
    return api.key_client(await api.add_key("olga", ["queue"]))


async def _file(client: httpx.AsyncClient, name: str = "part.gcode.3mf", **kwargs: Any) -> Any:
    return await uploaded(client, sliced(**kwargs), name)


async def _queue(client: httpx.AsyncClient, **body: Any) -> Any:
    response = await client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _audit(api: RunningApi, action: str) -> list[Any]:
    async with api.services.database.session(readonly=True) as session:
        return list((await list_actions(session, action=action)).items)


async def test_one_job_per_copy_with_the_file_and_target(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    file = await _file(operator, "bracket.gcode.3mf", plates=2)
    batch = await _queue(
        operator, file_id=file["id"], plate=2, copies=3, priority=5,
        due="2030-01-01T08:00:00+01:00", target={"models": ["P1S"]},
    )  # fmt: skip
    jobs = batch["jobs"]
    assert [j["copy_index"] for j in jobs] == [1, 2, 3]
    assert {j["batch"] for j in jobs} == {batch["batch"]}
    for job in jobs:
        assert job["name"] == "bracket.gcode.3mf"
        assert job["file_sha256"] == file["sha256"]
        assert (job["plate"], job["copies"], job["priority"]) == (2, 3, 5)
        assert job["due"].startswith("2030-01-01T07:00:00")
        assert job["target"] == {
            "any": False, "printer": None, "models": [P1S], "model_names": ["P1S"],
        }  # fmt: skip
        assert job["state"] in ("queued", "waiting")
        assert job["created_by"].startswith("olga")
        assert job["attempt"] == 0
    (entry,) = await _audit(api, "job.create")
    assert entry.details["job_ids"] == [j["id"] for j in jobs]
    assert entry.details["target"] == {"printer": None, "models": [P1S]}
    # By content, with a name, on any printer.
    by_sha = await _queue(operator, sha256=file["sha256"].upper(), name="by hash")
    (job,) = by_sha["jobs"]
    assert (job["name"], job["plate"], job["target"]["any"]) == ("by hash", 1, True)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 400, "file_id or by sha256"),
        ({"sha256": "ab" * 32}, 404, "no file with sha256"),
        ({"file_id": 999_999}, 404, "no library file"),
        ({"plate": 3}, 422, "plates are: 1"),
        ({"copies": 0}, 422, "copies"),
        ({"copies": 1001}, 422, "copies"),
        ({"target": {"models": ["X1C"]}}, 422, "sliced for P1S"),
        ({"target": {"models": ["Z9000"]}}, 422, "Z9000"),
        ({"target": {"printer": "01P00A000000001", "models": ["P1S"]}}, 400, "not both"),
        ({"target": {"printer": "NOSUCHSERIAL1"}}, 404, "NOSUCHSERIAL1"),
        ({"due": "2030-01-01T08:00:00"}, 422, "timezone"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
async def test_refused_jobs_say_why(
    operator: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    says: str,
) -> None:
    file = await _file(operator)
    full = body if not body or "sha256" in body else {"file_id": file["id"], **body}
    response = await operator.post("/api/v1/jobs", json=full)
    assert response.status_code == status, response.text
    assert says.lower() in response.text.lower()
    assert (await operator.get("/api/v1/jobs")).json()["total"] == 0


async def test_list_filters_orders_and_pages(operator: httpx.AsyncClient) -> None:
    file = await _file(operator)
    low = (await _queue(operator, file_id=file["id"], copies=2, name="low"))["jobs"]
    high = (await _queue(operator, file_id=file["id"], priority=9, name="high"))["jobs"]
    late = (await _queue(operator, file_id=file["id"], name="late"))["jobs"]
    await operator.post(f"/api/v1/jobs/{late[0]['id']}/cancel")

    async def names(**params: Any) -> list[str]:
        response = await operator.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [f"{j['name']}{j['copy_index']}" for j in response.json()["items"]]

    assert await names() == ["high1", "low1", "low2", "late1"]
    assert await names(order="newest") == ["late1", "high1", "low2", "low1"]
    assert await names(state="cancelled") == ["late1"]
    unfinished = await names(state=["queued", "waiting"])
    assert unfinished == ["high1", "low1", "low2"]
    assert await names(batch=low[0]["batch"]) == ["low1", "low2"]
    assert await names(file=file["sha256"], limit=1, offset=1) == ["low1"]
    page = (await operator.get("/api/v1/jobs", params={"limit": 2})).json()
    assert (page["total"], page["limit"], len(page["items"])) == (4, 2, 2)
    bad_state = await operator.get("/api/v1/jobs", params={"state": "sleeping"})
    assert bad_state.status_code == 422
    assert high[0]["id"] > low[1]["id"]


async def test_waiting_jobs_say_why_per_printer(operator: httpx.AsyncClient) -> None:
    file = await _file(operator)
    (job,) = (await _queue(operator, file_id=file["id"]))["jobs"]

    async def waiting() -> dict[str, Any]:
        detail = await operator.get(f"/api/v1/jobs/{job['id']}")
        assert detail.status_code == 200, detail.text
        body: dict[str, Any] = detail.json()
        return body

    body = await _until(waiting, lambda b: b["state"] == "waiting", "the job waiting")
    # No printer in this farm: the dispatcher says so in the job's summary.
    assert "no printers" in body["reason"]
    assert body["waiting_reasons"] == []
    assert body["live"] is None
    assert body["prints"] == []
    missing = await operator.get("/api/v1/jobs/999999")
    assert missing.status_code == 404


async def test_reorder_moves_jobs_and_changes_priority(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    file = await _file(operator)
    a, b, c = (await _queue(operator, file_id=file["id"], copies=3))["jobs"]

    async def order() -> list[int]:
        page = (await operator.get("/api/v1/jobs")).json()
        return [j["id"] for j in page["items"]]

    moved = await operator.post(f"/api/v1/jobs/{c['id']}/reorder", json={"before": a["id"]})
    assert moved.status_code == 200, moved.text
    assert await order() == [c["id"], a["id"], b["id"]]
    to_end = await operator.post(f"/api/v1/jobs/{c['id']}/reorder", json={"before": None})
    assert to_end.status_code == 200
    assert await order() == [a["id"], b["id"], c["id"]]
    urgent = await operator.post(f"/api/v1/jobs/{b['id']}/reorder", json={"priority": 50})
    assert urgent.json()["priority"] == 50
    assert await order() == [b["id"], a["id"], c["id"]]
    nothing = await operator.post(f"/api/v1/jobs/{a['id']}/reorder", json={})
    assert nothing.status_code == 400
    itself = await operator.post(f"/api/v1/jobs/{a['id']}/reorder", json={"before": a["id"]})
    assert itself.status_code == 422
    assert len(await _audit(api, "job.reorder")) == 3


async def test_cancel_retry_and_duplicate(api: RunningApi, operator: httpx.AsyncClient) -> None:
    file = await _file(operator)
    (job,) = (await _queue(operator, file_id=file["id"], priority=3, target={"models": ["P1S"]}))[
        "jobs"
    ]
    url = f"/api/v1/jobs/{job['id']}"
    not_yet = await operator.post(f"{url}/retry")
    assert not_yet.status_code == 409
    assert not_yet.json()["type"] == PROBLEM + "job-state-conflict"
    cancelled = await operator.post(f"{url}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert "olga" in cancelled.json()["reason"]
    again = await operator.post(f"{url}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    retried = await operator.post(f"{url}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "queued"

    copies = await operator.post(f"{url}/duplicate", json={"copies": 2})
    assert copies.status_code == 201, copies.text
    new = copies.json()
    assert new["batch"] != job["batch"]
    assert [j["copy_index"] for j in new["jobs"]] == [1, 2]
    for copy in new["jobs"]:
        assert (copy["priority"], copy["target"]["models"]) == (3, [P1S])
        assert copy["file_sha256"] == file["sha256"]
    single = await operator.post(f"{url}/duplicate")
    assert single.status_code == 201
    assert len(single.json()["jobs"]) == 1
    for action, count in (("job.cancel", 1), ("job.retry", 1), ("job.duplicate", 2)):
        entries = await _audit(api, action)
        assert [e.details["job_id"] for e in entries] == [job["id"]] * count, action
    duplicated = await _audit(api, "job.duplicate")
    assert duplicated[-1].details["new_job_ids"] == [j["id"] for j in new["jobs"]]
    assert (await operator.post("/api/v1/jobs/999999/cancel")).status_code == 404


async def test_plate_routes_refuse_unknown_printers(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    unknown = await operator.post("/api/v1/printers/NOSUCHPRINTER1/plate/clear")
    assert unknown.status_code == 404
    assert (await operator.get("/api/v1/printers/NOSUCHPRINTER1/plate")).status_code == 404
    bad = await operator.post("/api/v1/printers/not-a-serial!/plate/clear")
    assert bad.status_code == 422


async def test_who_may_queue_and_change_jobs(api: RunningApi, operator: httpx.AsyncClient) -> None:
    file = await _file(operator)
    (job,) = (await _queue(operator, file_id=file["id"]))["jobs"]
    await api.add_user("vic", Role.VIEWER)
    viewer = await api.sign_in("vic")
    read_key = api.key_client(await api.add_key("olga", ["read"]))
    control_key = api.key_client(await api.add_key("olga", ["control"]))
    for client, headers in ((viewer.client, viewer.csrf_header), (read_key, {}), (control_key, {})):
        assert (await client.get("/api/v1/jobs")).status_code == 200
        assert (await client.get(f"/api/v1/jobs/{job['id']}")).status_code == 200
        for path, body in (
            ("/api/v1/jobs", {"file_id": file["id"]}),
            (f"/api/v1/jobs/{job['id']}/cancel", None),
            (f"/api/v1/jobs/{job['id']}/reorder", {"priority": 1}),
            (f"/api/v1/jobs/{job['id']}/duplicate", None),
        ):
            refused = await client.post(path, json=body, headers=headers)
            assert refused.status_code == 403, (path, refused.text)
    assert (await operator.get("/api/v1/jobs")).json()["total"] == 1


async def _until(
    fetch: Callable[[], Any], check: Callable[[Any], bool], what: str, within: float = WAIT
) -> Any:
    value: Any = None
    try:
        async with asyncio.timeout(within):
            while True:
                value = await fetch()
                if check(value):
                    return value
                # The API has no change notification for these tests: ask every 100 ms.
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {value}") from None


# ---------------------------------------------------------------- against simulated printers


@pytest.fixture
async def farm(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """P1S, P1S, X1C, P1S: the last one loaded with red PLA where the others have white."""
    async with queue_farm_api(
        database_url, tmp_path, models=("P1S", "P1S", "X1C", "P1S")
    ) as farm_api:
        red = farm_api.printer(3).serial
        set_tray(farm_api.sim, red, tray_color="FF0000FF")

        def seen() -> bool:
            trays = farm_api.farm.printer(red).snapshot.state.ams.units[0].trays
            return trays[0].color == "FF0000FF"

        await farm_api.until(seen, "the server seeing the red spool")
        yield farm_api


async def test_three_copies_on_any_p1s_with_white_pla(farm: FarmApi) -> None:
    farm_api = farm
    await farm_api.api.add_user("olga", Role.OPERATOR)
    client = farm_api.api.key_client(await farm_api.api.add_key("olga", ["queue"]))
    p1s_a, p1s_b, x1c, red = (farm_api.printer(i).serial for i in range(4))
    file = await uploaded(client, sliced(color="#FFFFFF"), "bracket.gcode.3mf")
    batch = await _queue(client, file_id=file["id"], copies=3, target={"models": ["P1S"]})
    ids = [j["id"] for j in batch["jobs"]]

    async def jobs() -> list[dict[str, Any]]:
        return [(await client.get(f"/api/v1/jobs/{i}")).json() for i in ids]

    # Two P1S carry white PLA: two copies print and wait for their plates to be cleared.
    done = await _until(
        jobs, lambda js: sum(j["state"] == "awaiting_clear" for j in js) == 2, "two prints"
    )
    assert {j["printer"] for j in done if j["state"] == "awaiting_clear"} == {p1s_a, p1s_b}
    third = next(j for j in done if j["state"] != "awaiting_clear")

    def why(job: dict[str, Any]) -> dict[str, str]:
        return {r["printer"]: r["reason"] for r in job["waiting_reasons"]}

    third = await _until(
        lambda: _detail(client, third["id"]),
        lambda j: why(j).get(p1s_a) == why(j).get(p1s_b) == "plate_not_cleared",
        "the third copy waiting for a plate",
    )
    assert third["state"] == "waiting"
    reasons = {r["printer"]: r for r in third["waiting_reasons"]}
    assert reasons[x1c]["reason"] == "not_targeted"
    assert reasons[red]["reason"] == "missing_filament"
    assert "#FFFFFF" in reasons[red]["detail"]
    assert "plate not cleared" in third["reason"]
    plate = (await client.get(f"/api/v1/printers/{p1s_b}/plate")).json()
    assert plate["cleared"] is False
    assert plate["last_outcome"] == "finished"

    # Clearing one plate completes its job; the third copy then prints on that printer.
    cleared = await client.post(f"/api/v1/printers/{p1s_b}/plate/clear")
    assert cleared.status_code == 200, cleared.text
    assert [j["state"] for j in cleared.json()["completed_jobs"]] == ["done"]
    assert cleared.json()["plate"]["cleared"] is True
    final = await _until(
        lambda: _detail(client, third["id"]),
        lambda j: j["state"] == "awaiting_clear",
        "the third copy printed",
    )
    assert final["printer"] == p1s_b
    (print_,) = final["prints"]
    assert (print_["printer"], print_["outcome"]) == (p1s_b, "done")
    assert print_["filament"][0]["used_g"] == pytest.approx(12.0)

    history = (await client.get("/api/v1/history/prints", params={"printer": p1s_b})).json()
    assert len(history["items"]) == 2
    stats = (await client.get(f"/api/v1/statistics/printers/{p1s_b}")).json()
    assert (stats["done"], stats["success_rate"]) == (2, 1.0)
    assert stats["filament_g"] == {"PLA": pytest.approx(24.0)}
    (clear_entry,) = await _audit(farm_api.api, "plate.clear")
    assert clear_entry.printer_serial == p1s_b


async def _detail(client: httpx.AsyncClient, job_id: int) -> Any:
    response = await client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_cancel_through_the_api_stops_the_printer(database_url: str, tmp_path: Path) -> None:
    async with queue_farm_api(database_url, tmp_path, models=("P1S",), time_scale=60.0) as farm_api:
        client = farm_api.admin()
        serial = farm_api.printer(0).serial
        file = await uploaded(client, sliced(prediction_s=3600), "long.gcode.3mf")
        (job,) = (await _queue(client, file_id=file["id"], target={"printer": serial}))["jobs"]
        printing = await _until(
            lambda: _detail(client, job["id"]), lambda j: j["state"] == "printing", "printing"
        )
        assert printing["printer"] == serial
        live = printing["live"]
        assert (live["printer"], live["attempt"], live["phase"]) == (serial, 1, "printing")
        assert live["uploaded_bytes"] == live["size_bytes"] == file["size"]
        cancelled = await client.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        await farm_api.until(
            lambda: farm_api.farm.printer(serial).snapshot.state.job.gcode_state.value == "FAILED",
            "the printer stopped",
        )
        stopped = await _until(
            lambda: _detail(client, job["id"]),
            lambda j: j["prints"] and j["prints"][0]["outcome"] == "cancelled",
            "the print recorded as cancelled",
        )
        assert stopped["state"] == "cancelled"


async def test_auto_clear_is_printer_configuration_for_admins(
    database_url: str, tmp_path: Path
) -> None:
    async with queue_farm_api(database_url, tmp_path, models=("P1S",)) as farm_api:
        serial = farm_api.printer(0).serial
        url = f"/api/v1/printers/{serial}/plate"
        await farm_api.api.add_user("olga", Role.OPERATOR)
        operator = farm_api.api.key_client(await farm_api.api.add_key("olga", ["queue"]))
        plate = await operator.get(url)
        assert plate.status_code == 200, plate.text
        assert plate.json() == {
            "printer": serial, "cleared": True, "auto_clear": False, "last_job_id": None,
            "last_outcome": None, "changed_by": None, "updated_at": None,
        }  # fmt: skip
        refused = await operator.put(f"{url}/auto-clear", json={"enabled": True})
        assert refused.status_code == 403
        admin = farm_api.admin()
        turned_on = await admin.put(f"{url}/auto-clear", json={"enabled": True})
        assert turned_on.status_code == 200, turned_on.text
        assert turned_on.json()["auto_clear"] is True
        assert (await operator.get(url)).json()["auto_clear"] is True
        # Clearing a clear plate is harmless and says who did it.
        cleared = await operator.post(f"{url}/clear")
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["completed_jobs"] == []
        assert cleared.json()["plate"]["changed_by"].startswith("olga")
        (entry,) = await _audit(farm_api.api, "plate.auto_clear")
        assert (entry.printer_serial, entry.details["enabled"]) == (serial, True)
