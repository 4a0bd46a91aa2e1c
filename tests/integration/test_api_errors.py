"""One error model over real HTTP: every domain error becomes the right problem+json answer,
bugs are logged and answered without internals, bad input never gets a 5xx, and database
faults (unreachable, read-only, restarted) give clear answers on SQLite and PostgreSQL.
"""

import inspect
import logging
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from fastapi import APIRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

import bambufarm.api.errors as api_errors
import bambufarm.auth.errors as auth_errors
import bambufarm.fleet.errors as fleet_errors
import bambufarm.protocol.errors as protocol_errors
import bambufarm.storage.errors as storage_errors
from bambufarm.api.deps import CanView
from bambufarm.auth.roles import Role
from bambufarm.storage.db import open_database
from bambufarm.storage.errors import NotWritableReason
from tests.support.api import PASSWORD, RunningApi, running_api

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

PROBLEM = "application/problem+json"
# A path that must never reach a client: operator detail lives in the server log.
SECRET_PATH = "/srv/farm-secret/bambufarm.db"
ADVICE = "the printer P1S-01 was asked; do this next"


def _case(
    factory: Callable[[], Exception], status: int, slug: str, *, public: bool = True
) -> tuple[Callable[[], Exception], int, str, bool]:
    return factory, status, slug, public


# Each raised error and what the client must see. `public`: the message is the detail.
CASES: dict[str, tuple[Callable[[], Exception], int, str, bool]] = {
    # api
    "BadRequest": _case(lambda: api_errors.BadRequest(ADVICE), 400, "bad-request"),
    "PasswordChangeRequired": _case(
        lambda: api_errors.PasswordChangeRequired(ADVICE), 403, "password-change-required"
    ),
    "WrongPassword": _case(lambda: api_errors.WrongPassword(ADVICE), 403, "wrong-password"),
    "Conflict": _case(lambda: api_errors.Conflict(ADVICE), 409, "conflict"),
    # auth
    "InvalidCredentials": _case(auth_errors.InvalidCredentials, 401, "unauthenticated"),
    "RateLimited": _case(lambda: auth_errors.RateLimited(29.6), 429, "rate-limited"),
    "Forbidden": _case(lambda: auth_errors.Forbidden(ADVICE), 403, "forbidden"),
    "CsrfRejected": _case(lambda: auth_errors.CsrfRejected(ADVICE), 403, "csrf-rejected"),
    "WeakPassword": _case(lambda: auth_errors.WeakPassword(ADVICE), 422, "weak-password"),
    "InvalidScopes": _case(lambda: auth_errors.InvalidScopes(ADVICE), 422, "invalid-scopes"),
    # storage
    "InvalidValue": _case(lambda: storage_errors.InvalidValue(ADVICE), 422, "invalid-value"),
    "PrinterNotFound": _case(lambda: storage_errors.PrinterNotFound(ADVICE), 404, "not-found"),
    "UserNotFound": _case(lambda: storage_errors.UserNotFound(ADVICE), 404, "not-found"),
    "ApiKeyNotFound": _case(lambda: storage_errors.ApiKeyNotFound(ADVICE), 404, "not-found"),
    "DuplicatePrinter": _case(
        lambda: storage_errors.DuplicatePrinter(ADVICE), 409, "already-exists"
    ),
    "DuplicateUser": _case(lambda: storage_errors.DuplicateUser(ADVICE), 409, "already-exists"),
    "StorageUnavailable": _case(
        lambda: storage_errors.StorageUnavailable(f"the database at {SECRET_PATH} is gone"),
        503,
        "storage-unavailable",
        public=False,
    ),
    "StorageNotWritable-full": _case(
        lambda: storage_errors.StorageNotWritable(SECRET_PATH, NotWritableReason.DISK_FULL),
        503,
        "storage-not-writable",
        public=False,
    ),
    "StorageNotWritable-read-only": _case(
        lambda: storage_errors.StorageNotWritable(SECRET_PATH, NotWritableReason.READ_ONLY),
        503,
        "storage-not-writable",
        public=False,
    ),
    "MigrationError": _case(
        lambda: storage_errors.MigrationError(SECRET_PATH), 503, "storage-migration", public=False
    ),
    "SecretKeyError": _case(
        lambda: storage_errors.SecretKeyError(SECRET_PATH), 503, "secret-key", public=False
    ),
    "StorageError": _case(
        lambda: storage_errors.StorageError(SECRET_PATH), 503, "storage-failed", public=False
    ),
    # fleet
    "UnknownPrinter": _case(lambda: fleet_errors.UnknownPrinter(ADVICE), 404, "unknown-printer"),
    "PrinterOffline": _case(lambda: fleet_errors.PrinterOffline(ADVICE), 409, "printer-offline"),
    "AuthFailed": _case(lambda: fleet_errors.AuthFailed(ADVICE), 409, "printer-auth-failed"),
    "TlsVerificationFailed": _case(
        lambda: fleet_errors.TlsVerificationFailed(ADVICE), 409, "printer-tls-failed"
    ),
    "PrinterUnreachable": _case(
        lambda: fleet_errors.PrinterUnreachable(ADVICE), 409, "printer-unreachable"
    ),
    "CommandRefused": _case(lambda: fleet_errors.CommandRefused(ADVICE), 409, "command-refused"),
    "ReadOnlyPrinter": _case(
        lambda: fleet_errors.ReadOnlyPrinter(ADVICE), 409, "printer-read-only"
    ),
    "PrinterBusy": _case(lambda: fleet_errors.PrinterBusy(ADVICE), 409, "printer-busy"),
    "CommandTimeout": _case(lambda: fleet_errors.CommandTimeout(ADVICE), 504, "command-timeout"),
    "UploadFailed": _case(lambda: fleet_errors.UploadFailed(ADVICE), 502, "upload-failed"),
    "DiscoveryError": _case(
        lambda: fleet_errors.DiscoveryError(ADVICE), 503, "discovery-unavailable"
    ),
    "CameraUnavailable": _case(
        lambda: fleet_errors.CameraUnavailable(ADVICE), 409, "camera-unavailable"
    ),
    "FleetError": _case(lambda: fleet_errors.FleetError(ADVICE), 409, "printer-error"),
    "EventError": _case(
        lambda: fleet_errors.EventError(SECRET_PATH), 500, "internal-error", public=False
    ),
    # protocol
    "CommandError": _case(lambda: protocol_errors.CommandError(ADVICE), 422, "invalid-command"),
    "ThreeMFError": _case(lambda: protocol_errors.ThreeMFError(ADVICE), 422, "invalid-3mf"),
    "UnsafeArchiveError": _case(
        lambda: protocol_errors.UnsafeArchiveError(ADVICE), 422, "unsafe-3mf"
    ),
    "NotSlicedError": _case(lambda: protocol_errors.NotSlicedError(ADVICE), 422, "not-sliced"),
    **{
        # Bad values on the printer side of the protocol share the ProtocolError row.
        kind: _case(
            lambda kind=kind: getattr(protocol_errors, kind)(ADVICE),  # type: ignore[misc]
            422,
            "invalid-protocol-value",
        )
        for kind in (
            "ReportError",
            "AckError",
            "HmsError",
            "SsdpError",
            "BindFrameError",
            "CameraError",
            "ModelError",
            "MqttPacketError",
        )
    },
    # a bug: nobody mapped it
    "RuntimeError": _case(
        lambda: RuntimeError(f"internals: {SECRET_PATH}"), 500, "internal-error", public=False
    ),
}


def _raising_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/test-errors")

    @router.get("/{name}")
    async def raise_named(name: str, principal: CanView) -> None:
        raise CASES[name][0]()

    return router


@pytest.fixture
async def raising(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(database_url, tmp_path / "data", routers=[_raising_router()]) as api:
        yield api


async def test_every_error_becomes_its_problem(
    raising: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    await raising.add_user("root", Role.ADMIN)
    client = raising.key_client(await raising.add_key("root", ["read"]))
    for name, (factory, status, slug, public) in CASES.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bambufarm.api"):
            response = await client.get(f"/api/v1/test-errors/{quote(name, safe='')}")
        assert response.status_code == status, name
        assert response.headers["content-type"] == PROBLEM, name
        body = response.json()
        assert body["type"] == f"urn:bambufarm:problem:{slug}", name
        assert body["status"] == status
        assert body["title"]
        assert body["instance"] == f"/api/v1/test-errors/{quote(name, safe='')}"
        if public:
            assert body["detail"] == str(factory()), name
        else:
            assert SECRET_PATH not in response.text, name
            assert body["detail"], name
            # ... but the operator finds it in the log.
            assert SECRET_PATH in caplog.text, name
    # The server still answers after all of that, bugs included.
    assert (await client.get("/api/v1/auth/me")).status_code == 200


async def test_bugs_are_logged_with_their_traceback_once(
    raising: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    await raising.add_user("root", Role.ADMIN)
    client = raising.key_client(await raising.add_key("root", ["read"]))
    with caplog.at_level(logging.ERROR):
        response = await client.get("/api/v1/test-errors/RuntimeError")
    assert response.status_code == 500
    assert response.json()["detail"].startswith("the server failed on this request")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "bambufarm.api.errors"
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RuntimeError


async def test_retry_after_for_rate_limits_and_an_unavailable_database(
    raising: RunningApi,
) -> None:
    await raising.add_user("root", Role.ADMIN)
    client = raising.key_client(await raising.add_key("root", ["read"]))
    limited = await client.get("/api/v1/test-errors/RateLimited")
    assert limited.headers["retry-after"] == "30"
    assert limited.json()["retry_after"] == 30
    down = await client.get("/api/v1/test-errors/StorageUnavailable")
    assert down.headers["retry-after"] == "5"
    full = await client.get("/api/v1/test-errors/StorageNotWritable-full")
    assert "disk is full" in full.json()["detail"]


def test_every_error_class_of_every_package_has_a_case() -> None:
    # A new error class needs a row in api/errors.py MAPPINGS and a case here.
    modules: tuple[types.ModuleType, ...] = (
        api_errors,
        auth_errors,
        storage_errors,
        fleet_errors,
        protocol_errors,
    )
    classes = {
        name
        for module in modules
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__
    }
    covered = {name.split("-")[0] for name in CASES}
    # Bases that are only ever raised through a subclass with its own case.
    abstract = {"ApiError", "AuthError", "ProtocolError", "NotFound", "AlreadyExists"}
    assert len(classes) > 40
    missing = sorted(classes - covered - abstract)
    assert not missing, f"error classes without a case: {missing}"


# --- Starlette's own errors and validation -------------------------------------------------


async def test_unknown_paths_and_methods_are_problems(api: RunningApi) -> None:
    client = api.client()
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["type"] == "urn:bambufarm:problem:not-found"
    wrong = await client.put("/api/health")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert wrong.json()["type"] == "urn:bambufarm:problem:method-not-allowed"


async def test_validation_lists_each_field_and_never_echoes_values(api: RunningApi) -> None:
    client = api.client()
    secret = "my-secret-password-value"
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": "x" * 200, "password": secret, "remember": True},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:bambufarm:problem:validation"
    fields = {e["field"]: e for e in body["errors"]}
    assert set(fields) == {"body.username", "body.remember"}
    assert fields["body.remember"]["type"] == "extra_forbidden"
    assert "64 characters" in fields["body.username"]["message"]
    assert secret not in response.text
    assert "body.username" in body["detail"]
    missing = await client.post("/api/v1/auth/login", json={})
    assert {e["field"] for e in missing.json()["errors"]} == {"body.username", "body.password"}
    assert {e["type"] for e in missing.json()["errors"]} == {"missing"}


async def test_malformed_json_and_wrong_content_type(api: RunningApi) -> None:
    client = api.client()
    broken = await client.post(
        "/api/v1/auth/login",
        content=b'{"username": "admin", "password": ',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422
    (error,) = broken.json()["errors"]
    assert error["field"] == "body"
    assert error["type"] == "json_invalid"
    assert error["message"].startswith("the body is not valid JSON at character ")
    # A form post (what a cross-site page can send without CORS) is not read as JSON.
    form = await client.post("/api/v1/auth/login", data={"username": "admin", "password": "x"})
    assert form.status_code == 422
    assert form.headers["content-type"] == PROBLEM


async def test_query_and_path_values_are_checked(api: RunningApi) -> None:
    await api.add_user("root", Role.ADMIN)
    client = api.key_client(await api.add_key("root", ["admin"]))
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"offset": -1}):
        response = await client.get("/api/v1/users", params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["field"].startswith("query."), params
    bad_id = await client.delete("/api/v1/api-keys/not-an-id")
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["field"] == "path.key_id"
    bad_name = await client.get("/api/v1/users/%00")
    assert bad_name.status_code == 422
    assert bad_name.json()["errors"][0]["field"] == "path.username"


async def test_oversized_bodies_are_refused(api: RunningApi) -> None:
    client = api.client()
    big = b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    declared = await client.post(
        "/api/v1/auth/login", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413

    async def chunks() -> Any:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == PROBLEM
    assert streamed.json()["type"] == "urn:bambufarm:problem:too-large"
    assert (await client.get("/api/health")).status_code == 200


# --- no 5xx for any input ------------------------------------------------------------------

# Strings that have broken servers before: NUL (PostgreSQL refuses it in text and JSON),
# control and direction characters, SQL and path tricks, huge and empty values.
_NASTY = (
    "",
    "\x00",
    "a\x00b",
    "admin\x00",
    "\x7f\x1b[31m",
    "\u202eadmin",
    "\ufeffadmin",
    "' OR 1=1 --",
    "../../etc/passwd",
    "%00",
    "ADMIN",
    "a" * 5000,
    "\U0001f5a8\ufe0f",
)
_TEXT = st.sampled_from(_NASTY) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=8,
)
_EXAMPLES_PER_OPERATION = 30


def _requests_for(
    path: str, method: str, operation: dict[str, Any], spec: dict[str, Any]
) -> list[tuple[str, dict[str, str], Any]]:
    """Hypothesis-made (url, query, body) triples for one operation of the OpenAPI spec."""
    params = operation.get("parameters", [])
    path_names = [p["name"] for p in params if p["in"] == "path"]
    query_names = [p["name"] for p in params if p["in"] == "query"]
    body_schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    ref = body_schema.get("$ref", "")
    props = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"] if ref else {}
    values = _TEXT | _JSON
    bodies = (
        st.fixed_dictionaries(dict.fromkeys(props, values))
        | st.fixed_dictionaries({}, optional=dict.fromkeys(props, values))
        | _JSON
    )
    made: list[tuple[str, dict[str, str], Any]] = []

    @settings(
        max_examples=_EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        path_values=st.fixed_dictionaries({n: _TEXT.filter(bool) for n in path_names}),
        query=st.fixed_dictionaries(
            {}, optional={n: _TEXT | st.integers().map(str) for n in query_names}
        ),
        body=bodies,
    )
    def collect(path_values: dict[str, str], query: dict[str, str], body: Any) -> None:
        url = path
        for name, value in path_values.items():
            url = url.replace(f"{{{name}}}", quote(value, safe=""))
        made.append((url, query, body if "requestBody" in operation else None))

    collect()
    return made


async def test_no_input_makes_the_server_fail(api: RunningApi) -> None:
    await api.add_user("root", Role.ADMIN)
    client = api.key_client(await api.add_key("root", ["admin"]))
    spec = (await client.get("/api/openapi.json")).json()
    sent = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for url, query, body in _requests_for(path, method, operation, spec):
                response = await client.request(method.upper(), url, params=query, json=body)
                assert response.status_code < 500, (method, url, query, body, response.text)
                sent += 1
    assert sent >= 10 * _EXAMPLES_PER_OPERATION
    # And the key still works: nothing above broke the server or the account.
    assert (await client.get("/api/v1/auth/me")).status_code == 200


# --- database faults -----------------------------------------------------------------------


async def test_unreachable_database_is_a_503_and_health_says_so(tmp_path: Path) -> None:
    # A loopback port nobody listens on: connecting is refused at once.
    url = "postgresql+asyncpg://bf@127.0.0.1:9/farm"
    database = await open_database(url, migrate=False)
    async with running_api(url, tmp_path / "data", database=database, first_admin=False) as api:
        client = api.client()
        login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
        )
        assert login.status_code == 503
        assert login.headers["retry-after"] == "5"
        assert login.json()["type"] == "urn:bambufarm:problem:storage-unavailable"
        assert "127.0.0.1:9" not in login.text
        health = await client.get("/api/health")
        assert health.status_code == 503
        assert health.json() == {
            "status": "degraded",
            "version": api.services.version,
            "database": "unavailable",
        }
        keyed = api.key_client("bf_0123456789abcdef_" + "A" * 43)
        assert (await keyed.get("/api/v1/auth/me")).status_code == 503


async def _make_read_only(database_url: str, pg_admin: str | None, tmp_path: Path) -> str:
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        return f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    assert pg_admin is not None
    name = make_url(database_url).database
    admin = await asyncpg.connect(pg_admin)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    finally:
        await admin.close()
    return database_url


async def test_read_only_database_reads_but_refuses_writes_clearly(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with running_api(database_url, tmp_path / "data") as api:
        await api.add_user("root", Role.ADMIN)
        root = await api.sign_in("root")
        cookie, csrf = root.client.cookies["bf_session"], root.csrf
    pg_admin = None if database_url.startswith("sqlite") else request.getfixturevalue("pg_server")
    read_only_url = await _make_read_only(database_url, pg_admin, tmp_path)
    database = await open_database(read_only_url, migrate=False)
    async with running_api(
        read_only_url, tmp_path / "data", database=database, first_admin=False
    ) as api:
        client = api.client(cookies={"bf_session": cookie}, headers={"X-CSRF-Token": csrf})
        listed = await client.get("/api/v1/users")
        assert listed.status_code == 200
        assert [u["username"] for u in listed.json()["items"]] == ["admin", "root"]
        created = await client.post("/api/v1/users", json={"username": "otto"})
        assert created.status_code == 503
        assert created.json()["type"] == "urn:bambufarm:problem:storage-not-writable"
        assert "bambufarm.db" not in created.text
        assert (await client.get("/api/health")).status_code == 200


async def test_database_connections_lost_under_the_server_recover(
    pg_server: str, pg_database_url: str, tmp_path: Path
) -> None:
    async with running_api(pg_database_url, tmp_path / "data") as api:
        olga = await api.user_session("olga", Role.OPERATOR)
        assert (await olga.client.get("/api/v1/auth/me")).status_code == 200
        admin = await asyncpg.connect(pg_server)
        try:
            # What a PostgreSQL restart does to the pooled connections.
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                make_url(pg_database_url).database,
            )
        finally:
            await admin.close()
        assert killed >= 1
        me = await olga.client.get("/api/v1/auth/me")
        assert me.status_code == 200
        assert me.json()["username"] == "olga"
