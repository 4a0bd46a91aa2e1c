"""`/metrics` with a farm behind it: printers by connection state, reports, command round
trips, uploads and throughput, WebSocket clients, the event history writer.

Parsed with prometheus_client's own text parser, so the exposition is valid as a scraper
reads it, not only as a substring.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from bambufarm.jobs.model import JobSpec
from tests.support.farm import FarmApi, running_farm_api
from tests.support.queue_harness import add_file, sliced_file

pytest_plugins = ["tests.support.postgres"]


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """A P1S and an X1C, added and online, on each database."""
    async with running_farm_api(database_url, tmp_path) as running:
        await running.add()
        await running.until_online()
        yield running


async def _scrape(farm_api: FarmApi) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await farm_api.admin().get("/metrics")
    assert response.status_code == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_printers_by_state_reports_commands_and_history(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    client = farm_api.admin()
    assert (await client.post(f"/api/v1/printers/{serial}/light", json={"on": True})).is_success
    await client.post(f"/api/v1/printers/{farm_api.printer(1).serial}/disable")
    await farm_api.farm.flush_history()
    samples = await _scrape(farm_api)
    assert samples[("bambufarm_printers", (("state", "online"),))] == 1
    assert samples[("bambufarm_printers", (("state", "disabled"),))] == 1
    assert samples[("bambufarm_printers", (("state", "auth_failed"),))] == 0
    assert samples[("bambufarm_printer_reports_total", ())] >= 2
    assert samples[("bambufarm_printer_malformed_reports_total", ())] == 0
    ok = (("command", "light"), ("status", "ok"))
    assert samples[("bambufarm_command_duration_seconds_count", ok)] == 1
    assert 0 < samples[("bambufarm_command_duration_seconds_sum", ok)] < 10
    # connecting + online for two printers, two printer_added, one disabled, one ack...
    assert samples[("bambufarm_events_stored_total", ())] >= 6
    assert samples[("bambufarm_events_lost_total", ())] == 0


async def test_uploads_and_throughput(farm_api: FarmApi) -> None:
    serial = farm_api.printer(0).serial
    payload = bytes(range(256)) * 400  # 100 KiB
    result = await farm_api.farm.upload(serial, payload, "metrics.bin")
    assert result.bytes == len(payload)
    samples = await _scrape(farm_api)
    assert samples[("bambufarm_uploads_total", (("result", "ok"),))] == 1
    assert samples[("bambufarm_upload_bytes_total", ())] == len(payload)
    assert samples[("bambufarm_upload_seconds_total", ())] > 0
    files = (await farm_api.admin().get(f"/api/v1/printers/{serial}/files")).json()
    assert "metrics.bin" in [item["name"] for item in files["items"]]


async def test_websocket_clients_are_counted(farm_api: FarmApi) -> None:
    url = farm_api.api.url.replace("http://", "ws://") + "/api/v1/ws"
    headers = {"Authorization": f"Bearer {farm_api.admin_key}"}
    async with connect(url, additional_headers=headers, proxy=None) as socket:
        await socket.recv()  # hello
        await socket.send('{"type": "subscribe", "topics": ["printers"]}')
        await socket.recv()  # subscribed
        await socket.recv()  # snapshot
        samples = await _scrape(farm_api)
        assert samples[("bambufarm_websocket_clients", ())] == 1
        assert samples[("bambufarm_websocket_frames_total", ())] >= 2
    await farm_api.until(
        lambda: farm_api.api.app.state.ws_hub.watchers == 0, "the socket to be forgotten"
    )
    samples = await _scrape(farm_api)
    assert samples[("bambufarm_websocket_clients", ())] == 0


async def test_metrics_need_credentials(farm_api: FarmApi) -> None:
    response = await farm_api.api.client().get("/metrics")
    assert response.status_code == 401


async def test_the_queue_depth_and_the_dispatchers_work(farm_api: FarmApi) -> None:
    # A file for the A1, which this farm lacks: both copies stay in the queue.
    sha = await add_file(farm_api.services.library, sliced_file(model="N2S"), "a1.gcode.3mf")
    await farm_api.services.queue.add(JobSpec(sha, "a1 part", copies=2, created_by="ann"))
    async with asyncio.timeout(30):
        while True:
            samples = await _scrape(farm_api)
            if samples[("bambufarm_queue_rounds_total", ())] >= 1:
                break
            await asyncio.sleep(0.05)  # rounds run when the dispatcher is poked; poll for one
    waiting = sum(samples[("bambufarm_queue_jobs", (("state", s),))] for s in ("queued", "waiting"))
    assert waiting == 2
    assert samples[("bambufarm_queue_jobs", (("state", "printing"),))] == 0
    assert samples[("bambufarm_queue_starts_total", ())] == 0
