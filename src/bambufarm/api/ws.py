"""`/api/v1/ws`: live printer status and events over a WebSocket.

**Signing in.** Any one of, tried in this order:

1. `Authorization: Bearer bf_...` on the upgrade request (programs);
2. `?api_key=bf_...` in the URL — removed from the request before anything can log it;
3. the browser's session cookie, from a page of this same server (the `Origin` must match, so
   another site cannot open a socket with a visitor's cookie);
4. none of those: the first message must be `{"type": "auth", "api_key": "bf_..."}` within
   10 s (browsers cannot set headers on a WebSocket).

A failure closes the socket with 4000 + the HTTP status (4401, 4403) after an `error` frame
with the same problem body as the REST API. The credentials are checked again every minute:
a revoked key or an expired session ends the socket.

**Messages from the client** (JSON text; `action` may stand for `type`):
`{"type": "subscribe", "topics": [...]}`,
`{"type": "unsubscribe", "topics": [...]}`, `{"type": "ping"}`. Topics: `printers` (all),
`printer:<serial>`, `jobs` (jobs and plate states that changed).

**Messages from the server** (JSON text, one object each, `type` first):

* `hello` — who you are; `subscribed` / `unsubscribed` — the topics now followed; `pong`;
  `error` — a problem with your message (the socket stays open);
* `snapshot` — `printers`: full `PrinterStatus` objects (as `GET .../status`), for printers
  you just subscribed to or that were just added; at most 50 per frame;
* `updates` — `printers`: `{serial, sequence, report_count, parts}`, where `parts` holds only
  the `PrinterStatus` fields that changed since your last frame (replace them); `events`: event
  objects as in `GET /api/v1/events` (`id` null); `dropped_events`: how many events you lost
  for being slow. Statuses are coalesced per printer: a slow client gets the latest status,
  never a backlog.
* `jobs` (topic `jobs`) — `jobs`: `JobOut` objects (as `GET /api/v1/jobs`) that changed,
  finished ones included; `plates`: `PlateOutState` objects (as `GET /api/v1/plates`) that
  changed. Coalesced per job and per printer, about once a second (see `api.job_feed`).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from bambufarm.api.deps import SESSION_COOKIE
from bambufarm.api.errors import TYPE_PREFIX, PasswordChangeRequired, mapping_for
from bambufarm.api.job_feed import JobFeed
from bambufarm.api.ws_hub import Watcher, WsHub
from bambufarm.app import Services
from bambufarm.auth.api_keys import authenticate_api_key, looks_like_api_key
from bambufarm.auth.errors import AuthError, Forbidden, InvalidCredentials
from bambufarm.auth.roles import Action, Principal
from bambufarm.auth.sessions import authenticate_session
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

router = APIRouter()

WS_PATH: Final = "/api/v1/ws"
AUTH_TIMEOUT_S: Final = 10.0
REAUTH_S: Final = 60.0
# A client that cannot take a frame for this long is gone or hopeless: close it so it stops
# holding the printers' statuses in memory.
SEND_TIMEOUT_S: Final = 30.0
MAX_CLIENT_MESSAGE: Final = 8192
MAX_TOPICS: Final = 1000
PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class _Credentials:
    api_key: str | None = field(default=None, repr=False)
    cookie: str | None = field(default=None, repr=False)


def _frame(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})


def _problem(exc: Exception) -> tuple[int, bytes]:
    """The close code (4000 + HTTP status) and the error frame for an exception."""
    row = mapping_for(exc)
    detail = row.public_detail or str(exc) or row.title
    problem = {"type": TYPE_PREFIX + row.slug, "title": row.title, "status": row.status}
    problem["detail"] = detail
    return 4000 + row.status, _frame("error", status=row.status, problem=problem)


@router.websocket(WS_PATH)
async def ws_route(websocket: WebSocket) -> None:
    """Live status and events; see the module documentation for the protocol."""
    services: Services = websocket.app.state.services
    hub: WsHub = websocket.app.state.ws_hub
    query_key = _take_query_key(websocket)
    await websocket.accept()
    try:
        credentials = await _credentials(websocket, query_key)
        principal = await _principal(services, credentials)
    except (AuthError, StorageError, PasswordChangeRequired) as err:
        await _close_with(websocket, err)
        return
    except WebSocketDisconnect:
        return
    if hub.job_feed is None:
        hub.job_feed = JobFeed(services.queue, services.plates)
    watcher = Watcher()
    hub.attach(watcher)
    try:
        await websocket.send_text(
            _frame(
                "hello",
                username=principal.username,
                role=principal.role.value,
                auth="api_key" if credentials.api_key else "session",
                protocol=PROTOCOL_VERSION,
                topics=["printers", "printer:<serial>", "jobs"],
            ).decode()
        )

        async def reauthenticate() -> None:
            await _principal(services, credentials)

        await _serve(websocket, hub, watcher, reauthenticate)
    except (AuthError, StorageError, PasswordChangeRequired) as err:
        await _close_with(websocket, err)
    except WebSocketDisconnect:
        logger.debug("WebSocket client %s left", principal.username)
    finally:
        hub.detach(watcher)


def _take_query_key(websocket: WebSocket) -> str | None:
    """The `api_key` query parameter, removed from the request before uvicorn logs its URL."""
    raw = websocket.scope.get("query_string", b"")
    if b"api_key" not in raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    key = next((value for name, value in pairs if name == "api_key"), None)
    # uvicorn logs "WebSocket <path>?<query> [accepted]" from this very scope dict.
    websocket.scope["query_string"] = urlencode(
        [(name, value) for name, value in pairs if name != "api_key"]
    ).encode("latin-1")
    return key


async def _credentials(websocket: WebSocket, query_key: str | None) -> _Credentials:
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not looks_like_api_key(token.strip()):
            raise InvalidCredentials("the Authorization header must be 'Bearer bf_...'")
        return _Credentials(api_key=token.strip())
    if query_key is not None:
        return _Credentials(api_key=query_key)
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if cookie:
        _check_origin(websocket)
        return _Credentials(cookie=cookie)
    return await _first_message_key(websocket)


def _check_origin(websocket: WebSocket) -> None:
    origin = websocket.headers.get("origin")
    if origin is None:
        return  # not a browser: nothing attaches cookies on a program's behalf
    if urlsplit(origin).netloc.lower() != websocket.headers.get("host", "").lower():
        raise Forbidden(
            f"a WebSocket from {origin[:100]} may not use this server's session cookie; "
            "send an API key in the first message instead"
        )


async def _first_message_key(websocket: WebSocket) -> _Credentials:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            text = await websocket.receive_text()
    except TimeoutError:
        raise InvalidCredentials(
            f'send {{"type": "auth", "api_key": "bf_..."}} within {AUTH_TIMEOUT_S:g} s'
        ) from None
    except KeyError:
        # Starlette's receive_text() on a binary frame.
        raise InvalidCredentials('the first message must be JSON text: {"type": "auth"}') from None
    body = _json_object(text)
    key = body.get("api_key") if body is not None and body.get("type") == "auth" else None
    if not isinstance(key, str):
        raise InvalidCredentials(
            'sign in first: {"type": "auth", "api_key": "bf_..."} (or use the session cookie)'
        )
    return _Credentials(api_key=key)


async def _principal(services: Services, credentials: _Credentials) -> Principal:
    now = services.clock()
    if credentials.api_key is not None:
        if not looks_like_api_key(credentials.api_key):
            raise InvalidCredentials("that is not an API key of this server (bf_<id>_<secret>)")
        async with services.database.session() as session:
            principal = await authenticate_api_key(session, credentials.api_key, now=now)
    elif credentials.cookie is not None:
        async with services.database.session(readonly=True) as session:
            principal = (await authenticate_session(session, credentials.cookie, now=now)).principal
    else:
        raise InvalidCredentials("sign in with an API key or a session")
    if principal.must_change_password:
        raise PasswordChangeRequired(
            f"{principal.username} must change their password first: POST /api/v1/auth/password"
        )
    principal.require(Action.VIEW)
    return principal


async def _close_with(websocket: WebSocket, err: Exception) -> None:
    code, frame = _problem(err)
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            # The client may be gone already; then there is nobody to tell.
            await websocket.send_text(frame.decode())
            await websocket.close(code=code, reason=mapping_for(err).title[:120])


async def _serve(
    websocket: WebSocket,
    hub: WsHub,
    watcher: Watcher,
    reauthenticate: Callable[[], Awaitable[None]],
) -> None:
    """Read the client's messages and write frames until either side ends."""
    reader = asyncio.create_task(_read(websocket, hub, watcher), name="ws-read")
    writer = asyncio.create_task(_write(websocket, hub, watcher, reauthenticate), name="ws-write")
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.wait({reader, writer})
    for task in done:
        task.result()  # re-raises the reason the session ended


async def _read(websocket: WebSocket, hub: WsHub, watcher: Watcher) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            watcher.reply(_frame("error", detail="send JSON text frames, not binary"))
            continue
        if len(text) > MAX_CLIENT_MESSAGE:
            watcher.reply(
                _frame("error", detail=f"messages are at most {MAX_CLIENT_MESSAGE} bytes")
            )
            continue
        body = _json_object(text)
        if body is None:
            watcher.reply(_frame("error", detail="a message must be a JSON object with a type"))
            continue
        _handle(body, hub, watcher)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _handle(body: dict[str, Any], hub: WsHub, watcher: Watcher) -> None:
    # "action" is accepted for "type": both spellings are common in WebSocket APIs.
    kind = body.get("type", body.get("action"))
    if kind == "ping":
        watcher.reply(_frame("pong"))
        return
    if kind not in ("subscribe", "unsubscribe"):
        watcher.reply(_frame("error", detail=f"unknown message type {str(kind)[:40]!r}"))
        return
    topics = body.get("topics")
    if (
        not isinstance(topics, list)
        or not 0 < len(topics) <= MAX_TOPICS
        or not all(isinstance(t, str) for t in topics)
    ):
        watcher.reply(_frame("error", detail=f"topics must be a list of 1 to {MAX_TOPICS} strings"))
        return
    problem = _check_topics(topics, hub)
    if problem is not None:
        watcher.reply(_frame("error", detail=problem))
        return
    if kind == "subscribe":
        _subscribe(topics, hub, watcher)
    else:
        _unsubscribe(topics, hub, watcher)


def _check_topics(topics: list[str], hub: WsHub) -> str | None:
    for topic in topics:
        if topic in ("printers", "jobs"):
            continue
        prefix, _, serial = topic.partition(":")
        if prefix != "printer" or not serial:
            return f"unknown topic {topic[:60]!r}; topics: printers, printer:<serial>, jobs"
        if serial not in hub.farm:
            return f"no printer {serial[:40]!r} in the farm"
    return None


def _subscribe(topics: list[str], hub: WsHub, watcher: Watcher) -> None:
    before = (
        {p.serial for p in hub.farm.printers()} if watcher.all_printers else set(watcher.serials)
    )
    for topic in topics:
        if topic == "printers":
            watcher.all_printers = True
        elif topic == "jobs":
            hub.follow_jobs(watcher)
        elif topic.startswith("printer:"):
            watcher.serials.add(topic.partition(":")[2])
    now = {p.serial for p in hub.farm.printers()} if watcher.all_printers else watcher.serials
    watcher.full |= set(now) - before
    watcher.reply(_frame("subscribed", topics=_topics(watcher)))


def _unsubscribe(topics: list[str], hub: WsHub, watcher: Watcher) -> None:
    for topic in topics:
        if topic == "printers":
            watcher.all_printers = False
        elif topic == "jobs":
            hub.unfollow_jobs(watcher)
        elif topic.startswith("printer:"):
            watcher.serials.discard(topic.partition(":")[2])
    watcher.drop_unwanted()
    watcher.reply(_frame("unsubscribed", topics=_topics(watcher)))


def _topics(watcher: Watcher) -> list[str]:
    return (
        (["printers"] if watcher.all_printers else [])
        + (["jobs"] if watcher.jobs else [])
        + [f"printer:{serial}" for serial in sorted(watcher.serials)]
    )


async def _write(
    websocket: WebSocket,
    hub: WsHub,
    watcher: Watcher,
    reauthenticate: Callable[[], Awaitable[None]],
) -> None:
    loop = asyncio.get_running_loop()
    next_check = loop.time() + REAUTH_S
    while True:
        try:
            async with asyncio.timeout(max(0.0, next_check - loop.time())):
                await watcher.ready.wait()
        except TimeoutError:
            await reauthenticate()
            next_check = loop.time() + REAUTH_S
            continue
        watcher.ready.clear()
        for frame in hub.frames(watcher):
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await websocket.send_text(frame.decode())
            except TimeoutError:
                logger.warning(
                    "closing a WebSocket client that took no data for %g s", SEND_TIMEOUT_S
                )
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await websocket.close(code=4408, reason="too slow")
                return
            hub.frames_sent.inc()
