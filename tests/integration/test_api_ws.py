"""The WebSocket over real connections (the `websockets` client) against the simulator.

Sign-in four ways (header, query — never logged —, same-origin cookie, first message) and the
refusals (bad key, foreign origin); subscriptions to all printers or one; snapshots that are
valid `PrinterStatus` objects; updates carrying only changed parts; events; printers added
and removed while connected; and a client that stops reading costs the others nothing: its
statuses coalesce per printer and its event queue is bounded.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bambufarm.api.printer_schemas import EventOut
from bambufarm.api.printer_status import PrinterStatus
from bambufarm.api.ws_hub import EVENT_QUEUE, Watcher, WsHub
from bambufarm.auth.roles import Role
from bambufarm.fleet.events import HmsRaised, StateChanged
from bambufarm.simulator.demo import demo_job, start_job
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]

WAIT = 15.0


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """A P1S and an X1C, added and online, on each database."""
    async with running_farm_api(database_url, tmp_path) as running:
        await running.add()
        await running.until_online()
        yield running


def _ws_url(farm_api: FarmApi, query: str = "") -> str:
    return farm_api.api.url.replace("http://", "ws://") + "/api/v1/ws" + query


async def _open(farm_api: FarmApi, query: str = "", **kwargs: Any) -> ClientConnection:
    return await connect(_ws_url(farm_api, query), proxy=None, compression=None, **kwargs)


async def _next(socket: ClientConnection, kind: str, within: float = WAIT) -> dict[str, Any]:
    """The next frame of type `kind` (others are skipped)."""
    async with asyncio.timeout(within):
        while True:
            frame = orjson.loads(await socket.recv())
            if frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


async def _until(
    socket: ClientConnection, test: Callable[[dict[str, Any]], bool], within: float = WAIT
) -> dict[str, Any]:
    """The first frame for which `test` holds."""
    async with asyncio.timeout(within):
        while True:
            frame = orjson.loads(await socket.recv())
            if test(frame):
                return frame  # type: ignore[no-any-return]


async def _collect(socket: ClientConnection, *, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives within `seconds`."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                frames.append(orjson.loads(await socket.recv()))
    return frames


async def _signed_in(farm_api: FarmApi, topics: list[str]) -> ClientConnection:
    """A socket signed in by first message and subscribed to `topics` (hello, subscribed read)."""
    socket = await _open(farm_api)
    await socket.send(orjson.dumps({"type": "auth", "api_key": farm_api.admin_key}).decode())
    hello = await _next(socket, "hello")
    assert hello["username"] == "admin"
    await socket.send(orjson.dumps({"type": "subscribe", "topics": topics}).decode())
    await _next(socket, "subscribed")
    return socket


async def test_first_message_sign_in_snapshot_and_updates(farm_api: FarmApi) -> None:
    socket = await _signed_in(farm_api, ["printers"])
    try:
        snapshot = await _next(socket, "snapshot")
        statuses = [PrinterStatus.model_validate(item) for item in snapshot["printers"]]
        assert sorted(s.serial for s in statuses) == sorted(
            p.serial for p in farm_api.manifest.printers
        )
        assert all(s.connection.state == "online" for s in statuses)
        x1c = farm_api.printer(1).serial
        response = await farm_api.admin().post(
            f"/api/v1/printers/{x1c}/temperature", json={"heater": "bed", "target": 61}
        )
        assert response.status_code == 200
        update = await _until(
            socket,
            lambda f: (
                f["type"] == "updates"
                and any(
                    p["serial"] == x1c
                    and p["parts"].get("temperatures", {}).get("bed_target") == 61
                    for p in f["printers"]
                )
            ),
        )
        item = next(p for p in update["printers"] if p["serial"] == x1c)
        # Only changed parts travel; each is valid as the same field of PrinterStatus.
        assert set(item["parts"]) < set(PrinterStatus.model_fields)
        whole = PrinterStatus.model_validate(
            {**statuses[[s.serial for s in statuses].index(x1c)].model_dump(), **item["parts"]}
        )
        assert whole.temperatures.bed_target == 61
        assert isinstance(item["sequence"], int)
    finally:
        await socket.close()


async def test_header_query_and_same_origin_cookie_sign_in(
    farm_api: FarmApi, caplog: pytest.LogCaptureFixture
) -> None:
    # INFO, as a server runs: uvicorn logs every WebSocket's URL there. (At DEBUG the
    # websockets library also logs the handshake's headers, Authorization included.)
    caplog.set_level(logging.INFO)
    key = farm_api.admin_key
    by_header = await _open(farm_api, additional_headers={"Authorization": f"Bearer {key}"})
    by_query = await _open(farm_api, f"?api_key={key}&x=1")
    viewer = await farm_api.api.user_session("vera", Role.VIEWER)
    cookie = "; ".join(f"{name}={value}" for name, value in viewer.client.cookies.items())
    host = farm_api.api.url.removeprefix("http://")
    by_cookie = await _open(
        farm_api, additional_headers={"Cookie": cookie}, origin=f"http://{host}"
    )
    try:
        for socket, user, auth in (
            (by_header, "admin", "api_key"),
            (by_query, "admin", "api_key"),
            (by_cookie, "vera", "session"),
        ):
            hello = await _next(socket, "hello")
            assert (hello["username"], hello["auth"]) == (user, auth)
    finally:
        for socket in (by_header, by_query, by_cookie):
            await socket.close()
    # uvicorn logs each WebSocket's URL: the key was taken out of it first.
    assert key not in caplog.text
    assert "x=1" in caplog.text


async def test_refusals_close_with_an_auth_code(farm_api: FarmApi) -> None:
    viewer = await farm_api.api.user_session("vera", Role.VIEWER)
    cookie = "; ".join(f"{name}={value}" for name, value in viewer.client.cookies.items())
    cases = {
        "wrong key": {"query": "?api_key=bf_0123456789abcdef_nope"},
        "foreign origin": {
            "additional_headers": {"Cookie": cookie},
            "origin": "https://evil.example",
        },
    }
    for name, options in cases.items():
        socket = await _open(farm_api, str(options.pop("query", "")), **options)
        error = await _next(socket, "error")
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code in (4401, 4403), name
        assert error["problem"]["status"] == closed.value.rcvd.code - 4000
    # A first message that is not an auth message.
    socket = await _open(farm_api)
    await socket.send('{"type": "subscribe", "topics": ["printers"]}')
    await _next(socket, "error")
    with pytest.raises(ConnectionClosed) as closed:
        await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_one_printer_topic_and_bad_messages(farm_api: FarmApi) -> None:
    p1s, x1c = farm_api.printer(0).serial, farm_api.printer(1).serial
    socket = await _signed_in(farm_api, [f"printer:{p1s}"])
    try:
        snapshot = await _next(socket, "snapshot")
        assert [s["serial"] for s in snapshot["printers"]] == [p1s]
        for message, expected in (
            ('{"type": "subscribe", "topics": ["kittens"]}', "unknown topic"),
            ('{"type": "subscribe", "topics": ["printer:01P00A999999999"]}', "no printer"),
            ('{"type": "dance"}', "unknown message type"),
            ("not json", "JSON object"),
            ('{"type": "subscribe", "topics": "printers"}', "topics must be a list"),
        ):
            await socket.send(message)
            error = await _next(socket, "error")
            assert expected in error["detail"], message
        await socket.send('{"action": "ping"}')
        await _next(socket, "pong")
        # Changes on the other printer do not reach this socket.
        await farm_api.admin().post(f"/api/v1/printers/{x1c}/light", json={"on": False})
        await farm_api.admin().post(f"/api/v1/printers/{p1s}/light", json={"on": False})
        frames = await _collect(socket, seconds=2.0)
        seen = {p["serial"] for f in frames if f["type"] == "updates" for p in f["printers"]}
        assert seen == {p1s}
        await socket.send(
            orjson.dumps({"type": "unsubscribe", "topics": [f"printer:{p1s}"]}).decode()
        )
        done = await _next(socket, "unsubscribed")
        assert done["topics"] == []
    finally:
        await socket.close()


async def test_events_and_printers_added_and_removed(database_url: str, tmp_path: Path) -> None:
    async with running_farm_api(database_url, tmp_path, models=("P1S", "A1")) as farm_api:
        first, second = farm_api.printer(0), farm_api.printer(1)
        await farm_api.add(first)
        socket = await _signed_in(farm_api, ["printers", "jobs"])
        try:
            await _next(socket, "snapshot")
            await farm_api.add(second)
            added = await _next(socket, "snapshot")
            assert [s["serial"] for s in added["printers"]] == [second.serial]
            node = farm_api.sim.node(first.serial)
            start_job(node, "cube.gcode.3mf", demo_job(node.spec.identity.model, 1.0), task_id=7)
            started = await _until(
                socket,
                lambda f: (
                    f["type"] == "updates"
                    and any(e["kind"] == "print_started" for e in f["events"])
                ),
            )
            event = EventOut.model_validate(
                next(e for e in started["events"] if e["kind"] == "print_started")
            )
            assert (event.serial, event.id) == (first.serial, None)
            assert event.data["job"]
            removed = await farm_api.admin().delete(f"/api/v1/printers/{second.serial}")
            assert removed.status_code == 204
            gone = await _until(
                socket,
                lambda f: (
                    f["type"] == "updates"
                    and any(e["kind"] == "printer_removed" for e in f["events"])
                ),
            )
            assert any(e["serial"] == second.serial for e in gone["events"])
        finally:
            await socket.close()
        # The same events are in the stored history, with ids.
        await farm_api.farm.flush_history()
        history = (await farm_api.admin().get("/api/v1/events?kind=print_started")).json()
        assert [(e["serial"], e["kind"]) for e in history["items"]] == [
            (first.serial, "print_started")
        ]
        assert isinstance(history["items"][0]["id"], int)


async def test_a_client_that_stops_reading_coalesces_and_delays_nobody(farm_api: FarmApi) -> None:
    hub: WsHub = farm_api.api.app.state.ws_hub
    serial = farm_api.printer(0).serial
    fast = await _signed_in(farm_api, ["printers"])
    # A client that follows every printer and never reads: its watcher only accumulates.
    stuck = Watcher()
    stuck.all_printers = True
    hub.attach(stuck)
    try:
        await _next(fast, "snapshot")
        bus = farm_api.farm.bus
        at = time.monotonic()
        for i in range(5000):
            changed = frozenset({"temperatures"} if i % 2 else {"job", "fans"})
            bus.publish(StateChanged(serial, at, changed))
        for i in range(EVENT_QUEUE + 250):
            bus.publish(HmsRaised(serial, at, f"0300_0100_0001_{i:04X}", "common"))
        # The fast client still gets its frame within a few ticks.
        frame = await _until(fast, lambda f: f["type"] == "updates" and len(f["events"]) > 0)
        # The fast client's own queue is bounded too: it was handed all of them in one tick.
        assert len(frame["events"]) == EVENT_QUEUE
        assert frame["dropped_events"] == 250
        # The stuck one holds one entry per printer (the union of parts), never a backlog.
        assert stuck.pending() == {serial: frozenset({"temperatures", "job", "fans"})}
        assert len(stuck.events) == EVENT_QUEUE
        assert stuck.dropped == 250
        # A fresh ping on the fast socket is answered at once: nothing waits for `stuck`.
        started = time.monotonic()
        await fast.send('{"type": "ping"}')
        await _next(fast, "pong", within=2.0)
        assert time.monotonic() - started < 2.0
    finally:
        hub.detach(stuck)
        await fast.close()
    metrics = (await farm_api.admin().get("/metrics")).text
    assert "bambufarm_websocket_events_dropped_total 500.0" in metrics
