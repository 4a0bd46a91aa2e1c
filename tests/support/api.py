"""The real API, served by uvicorn on 127.0.0.1 (an ephemeral port), for integration tests.

`running_api()` builds the services on a database, the app, and the server; the pytest plugin
`tests.support.api_fixtures` wraps it as the `api` fixture on each dialect. Tests that need TLS,
extra routes or a database of their own call `running_api()` directly.

Clients from `RunningApi.client()` are real httpx clients over TCP, closed at teardown.
Users are made through the auth services with a cheap argon2 cost (the API's behaviour does
not depend on the cost) and sign in through the API like anybody else.
"""

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, FastAPI

from bambufarm.api.app import create_app
from bambufarm.api.deps import CSRF_HEADER
from bambufarm.api.server import HttpServer, TlsFiles
from bambufarm.app import Services
from bambufarm.auth.accounts import create_user
from bambufarm.auth.api_keys import create_api_key
from bambufarm.auth.passwords import HashParams, Passwords
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.auth.roles import Role
from bambufarm.settings import Settings
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.secrets import SecretBox, load_or_create_key
from bambufarm.storage.users import get_user

CHEAP = HashParams(time_cost=1, memory_kib=64, parallelism=1)
PASSWORD = "correct horse battery staple"


class MovableClock:
    """A wall clock (UTC) that starts now and moves only when told."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


class MonotonicClock:
    """Monotonic seconds for the login limiter, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SignedIn:
    """A client holding a session cookie, and the CSRF token it was given."""

    client: httpx.AsyncClient
    csrf: str
    body: dict[str, Any]

    @property
    def csrf_header(self) -> dict[str, str]:
        """The header unsafe requests of this session need."""
        return {CSRF_HEADER: self.csrf}


@dataclass
class RunningApi:
    """A served app, its services and clocks, and clients to call it with."""

    url: str
    app: FastAPI
    services: Services
    clock: MovableClock
    limiter_clock: MonotonicClock
    admin_password: str
    verify: Any = True
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A new httpx client for this server (closed at teardown)."""
        kwargs.setdefault("base_url", self.url)
        client = httpx.AsyncClient(timeout=30, verify=self.verify, **kwargs)
        self._clients.append(client)
        return client

    def key_client(self, token: str) -> httpx.AsyncClient:
        """A client that sends an API key."""
        return self.client(headers={"Authorization": f"Bearer {token}"})

    async def sign_in(self, username: str, password: str = PASSWORD) -> SignedIn:
        """Sign in through the API; fails the test if that does not work."""
        client = self.client()
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return SignedIn(client, body["csrf_token"], body)

    async def add_user(
        self, username: str, role: Role, *, password: str = PASSWORD, must_change: bool = False
    ) -> None:
        """A user made directly through the auth services."""
        async with self.services.database.session() as session:
            await create_user(
                session,
                self.services.passwords,
                username,
                password,
                role,
                must_change_password=must_change,
                now=self.clock(),
            )

    async def user_session(self, username: str, role: Role) -> SignedIn:
        """A new user of this role, signed in."""
        await self.add_user(username, role)
        return await self.sign_in(username)

    async def add_key(self, username: str, scopes: Iterable[str], name: str = "test") -> str:
        """An API key for an existing user; returns its token."""
        async with self.services.database.session() as session:
            owner = await get_user(session, username)
            issued = await create_api_key(session, owner, name, scopes, now=self.clock())
        return issued.token

    async def aclose(self) -> None:
        """Close every client made by `client()`."""
        for client in self._clients:
            await client.aclose()


@contextlib.asynccontextmanager
async def running_api(
    database_url: str,
    data_dir: Path,
    *,
    tls: TlsFiles | None = None,
    routers: Iterable[APIRouter] = (),
    database: Database | None = None,
    first_admin: bool = True,
) -> AsyncIterator[RunningApi]:
    """Services on a fresh database, the app, and uvicorn serving it on 127.0.0.1:0."""
    clock = MovableClock()
    limiter_clock = MonotonicClock()
    if database is None:
        database = await open_database(database_url)
    services = Services(
        settings=Settings(data_dir=data_dir, database_url=database_url),
        database=database,
        secret_box=SecretBox(load_or_create_key(data_dir)),
        passwords=Passwords(CHEAP),
        limiter=LoginLimiter(clock=limiter_clock),
        clock=clock,
    )
    try:
        admin_password = (await services.first_admin_password() or "") if first_admin else ""
        await services.start()
        app = create_app(services)
        for router in routers:
            app.include_router(router)
        async with HttpServer(app, host="127.0.0.1", port=0, tls=tls) as server:
            running = RunningApi(
                url=server.url,
                app=app,
                services=services,
                clock=clock,
                limiter_clock=limiter_clock,
                admin_password=admin_password,
                verify=ssl.create_default_context(cafile=tls.cert) if tls else True,
            )
            try:
                yield running
            finally:
                await running.aclose()
    finally:
        await services.stop()


def self_signed_tls(directory: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key, written to `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
