"""Every route of the app needs authentication, except a short, named allow-list.

API routes answer 401 (problem+json, WWW-Authenticate); web UI pages send the browser to
sign in (303 to /login).

The walk reads `app.routes` of the real app, so a route added later is checked without
anyone remembering to add it here; a route kind this test cannot check fails it (teach the
test, do not skip the route).
"""

import asyncio
import base64
import contextlib
import os
import re
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import BaseRoute, WebSocketRoute

from bambufarm.auth.roles import Role
from tests.support.api import RunningApi

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

# (method, path) pairs that answer without credentials, and why.
PUBLIC = {
    ("POST", "/api/v1/auth/login"): "how one gets credentials",
    ("GET", "/api/health"): "liveness probes have no credentials; says only version and ok",
    # The API description is the same for every installation (generated from open code) and
    # holds no farm data; integrators need it before they have a key.
    ("GET", "/api/openapi.json"): "the published contract",
    ("HEAD", "/api/openapi.json"): "the published contract",
    ("GET", "/api/docs"): "the contract, rendered",
    ("HEAD", "/api/docs"): "the contract, rendered",
    # The web UI's sign-in page and its static files: the same for every installation.
    ("GET", "/login"): "how a browser gets a session",
    ("GET", "/static/{digest}/{name}"): "scripts and styles of the pages, no farm data",
}

# Credentials that must all be refused like none at all.
BAD_CREDENTIALS = {
    "none": ({}, {}),
    "garbage bearer": ({"Authorization": "Bearer nonsense"}, {}),
    "unknown API key": (
        {"Authorization": "Bearer bf_0123456789abcdef_" + "A" * 43},
        {},
    ),
    "basic auth": ({"Authorization": "Basic YWRtaW46YWRtaW4="}, {}),
    "forged session cookie": ({}, {"bf_session": "x" * 43}),
}
_PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")


def _concrete(path: str) -> str:
    # Any value will do: authentication is decided before the path is looked at.
    return _PARAM.sub("0123456789abcdef", path)


def _is_page(path: str) -> bool:
    """A web UI page (HTML for browsers) rather than an API or metrics route."""
    return not (path.startswith("/api/") or path == "/metrics")


def _endpoints(routes: list[BaseRoute]) -> tuple[list[tuple[str, str]], list[str]]:
    """(method, path) of every HTTP route, and the path of every WebSocket route."""
    http: list[tuple[str, str]] = []
    sockets: list[str] = []
    # Included routers are not flattened into app.routes; this walks into them.
    for context in iter_route_contexts(routes):
        if context.methods and context.path:
            http.extend((method, context.path) for method in sorted(context.methods))
        elif isinstance(context.original_route, WebSocketRoute | APIWebSocketRoute):
            sockets.append(context.path or context.original_route.path)
        else:
            pytest.fail(
                f"route {context.original_route!r} is neither HTTP nor WebSocket: extend this "
                "test to check that it refuses unauthenticated clients"
            )
    return http, sockets


def _http_endpoints(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    return _endpoints(routes)[0]


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server-to-client WebSocket frame (unmasked, RFC 6455 §5.2): opcode and payload."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


async def _websocket_answer(port: int, path: str, headers: dict[str, str], cookies: str) -> str:
    """Open a WebSocket by hand, send nothing; 'http <status>' if refused, 'close <code>' if
    closed (after at most an error message), and fail on any other data."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
            *([f"Cookie: {cookies}"] if cookies else []),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        # Long enough for a server that waits for credentials in a first message (10 s in
        # api/ws.py) to give up on a client that sends none.
        async with asyncio.timeout(30):
            status = (await reader.readline()).split()
            while (await reader.readline()).strip():
                continue
            if status[1] != b"101":
                return f"http {status[1].decode()}"
            while True:
                opcode, payload = await _read_frame(reader)
                if opcode == 0x8:
                    return f"close {int.from_bytes(payload[:2], 'big')}"
                assert opcode == 0x1, f"{path}: an unauthenticated client got opcode {opcode}"
                assert orjson.loads(payload)["type"] == "error", f"{path}: got {payload[:200]!r}"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _call(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    # A JSON body of the wrong shape: authentication must be decided before validation.
    body = None if method in ("GET", "HEAD", "DELETE", "OPTIONS") else {"unexpected": 1}
    return await client.request(method, _concrete(path), json=body, headers=headers)


async def test_every_route_needs_credentials_unless_allow_listed(api: RunningApi) -> None:
    endpoints = _http_endpoints(api.app.routes)
    # The walk must see the real app, not an empty list.
    assert len(endpoints) >= 15
    assert set(PUBLIC) <= set(endpoints), "the allow-list names a route that does not exist"
    checked = 0
    for name, (headers, cookies) in BAD_CREDENTIALS.items():
        client = api.client(cookies=cookies)
        for method, path in endpoints:
            response = await _call(client, method, path, headers)
            if (method, path) in PUBLIC:
                assert response.status_code != 401, f"{method} {path} with {name}"
                continue
            if _is_page(path):
                # A browser is sent to sign in rather than shown an error.
                assert response.status_code == 303, f"{method} {path} with {name}"
                assert response.headers["location"].startswith("/login"), path
                checked += 1
                continue
            assert response.status_code == 401, (
                f"{method} {path} with {name}: {response.status_code} {response.text[:200]}"
            )
            if method != "HEAD":
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "urn:bambufarm:problem:unauthenticated"
            assert response.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked == len(BAD_CREDENTIALS) * (len(endpoints) - len(PUBLIC))


async def test_every_websocket_refuses_unauthenticated_clients(api: RunningApi) -> None:
    _, sockets = _endpoints(api.app.routes)
    if not sockets:
        pytest.skip("the app has no WebSocket route")
    port = urlsplit(api.url).port
    assert port is not None
    for name, (headers, cookies) in BAD_CREDENTIALS.items():
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        for path in sockets:
            answer = await _websocket_answer(port, _concrete(path), headers, cookie)
            # Refused at the handshake, or closed at once with a policy or auth code.
            assert answer in {"http 401", "http 403", "close 1008", "close 4401", "close 4403"}, (
                f"{path} with {name}: {answer}"
            )


async def test_a_signed_in_viewer_is_refused_every_admin_route(api: RunningApi) -> None:
    # The other side of the walk: authentication alone is not authorisation.
    viewer = await api.user_session("vera", Role.VIEWER)
    admin_only = [
        (method, path)
        for method, path in _http_endpoints(api.app.routes)
        if path.startswith("/api/v1/users")
    ]
    assert len(admin_only) >= 5
    for method, path in admin_only:
        response = await _call(viewer.client, method, path, viewer.csrf_header)
        assert response.status_code == 403, f"{method} {path}: {response.text[:200]}"
        assert response.json()["type"] == "urn:bambufarm:problem:forbidden"


async def test_public_routes_answer_without_credentials(api: RunningApi) -> None:
    client = api.client()
    health = await client.get("/api/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": api.services.version, "database": "ok"}
    spec = await client.get("/api/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/v1/auth/login" in paths
    # Errors are declared as what they are sent as.
    refused = paths["/api/v1/users"]["get"]["responses"]["401"]["content"]
    assert list(refused) == ["application/problem+json"]
    assert refused["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    schemes = spec.json()["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["Session"]["in"] == "cookie"
    docs = await client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    # Docs variants FastAPI would add by default are switched off, not left public.
    for path in ("/docs", "/redoc", "/api/redoc", "/openapi.json", "/api/docs/oauth2-redirect"):
        assert (await client.get(path)).status_code == 404, path
