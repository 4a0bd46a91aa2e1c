"""The composition root: services built from settings, the first admin, start and stop."""

import asyncio
import hashlib
import stat
from datetime import timedelta
from pathlib import Path

from bambufarm.app import Services, open_services, running_services
from bambufarm.auth.accounts import create_user
from bambufarm.auth.passwords import Passwords
from bambufarm.auth.roles import Role
from bambufarm.auth.sessions import login
from bambufarm.settings import Settings
from bambufarm.storage.credentials import get_session
from tests.support.api import CHEAP, PASSWORD, MovableClock

pytest_plugins = ["tests.support.postgres"]


async def test_services_from_settings_make_the_key_and_the_first_admin_once(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    async with running_services(settings, passwords=Passwords(CHEAP)) as services:
        assert services.running
        key_file = tmp_path / "data" / "secret.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert services.secret_box.decrypt(services.secret_box.encrypt("12345678")) == "12345678"
        first = await services.first_admin_password()
        assert first is not None
        assert await services.first_admin_password() is None
        await services.start()  # a second start changes nothing
        assert services.running
    assert not services.running
    await services.stop()  # nor does a second stop


async def _stored(services: Services, token: str) -> bool:
    async with services.database.session(readonly=True) as session:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return await get_session(session, digest) is not None


async def test_expired_sessions_are_pruned_in_the_background(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    clock = MovableClock()
    passwords = Passwords(CHEAP)
    services = await open_services(
        settings, passwords=passwords, clock=clock, prune_interval_s=0.05
    )
    try:
        async with services.database.session() as session:
            await create_user(session, passwords, "olga", PASSWORD, Role.OPERATOR)
            tokens = []
            for age in (timedelta(days=2), timedelta(0)):
                issued = await login(
                    session,
                    passwords,
                    services.limiter,
                    username="olga",
                    password=PASSWORD,
                    address="127.0.0.1",
                    now=clock() - age,
                )
                tokens.append(issued.token)
        expired, fresh = tokens
        assert await _stored(services, expired)
        await services.start()
        for _ in range(200):
            if not await _stored(services, expired):
                break
            # The background round runs every 50 ms; nothing else says when it has run.
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the expired session was not pruned within 10 s")
        assert await _stored(services, fresh)
    finally:
        await services.stop()
