"""The event history through a database outage (PostgreSQL): events published while the
database refuses writes are kept and stored once it is back, none lost, none doubled; a
restart (every connection killed) under a running farm is survived the same way."""

from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bambufarm.storage.events import event_history
from tests.support.farm import running_farm_api

pytest_plugins = ["tests.support.postgres"]


async def _admin(pg_server: str, database_url: str, *statements: str) -> None:
    """Run statements as the server's admin, then drop every connection to the database
    (what a restart does), so the pool reconnects with the new settings."""
    name = make_url(database_url).database
    admin = await asyncpg.connect(pg_server)
    try:
        for statement in statements:
            await admin.execute(statement.format(name=name))
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()


async def test_events_during_an_outage_are_stored_when_the_database_is_back(
    pg_server: str, pg_database_url: str, tmp_path: Path
) -> None:
    async with running_farm_api(
        pg_database_url, tmp_path, farm_options={"history_retry_s": 0.2}
    ) as farm_api:
        await farm_api.add()
        await farm_api.until_online()
        await farm_api.farm.flush_history()
        recorder = farm_api.farm.history
        assert recorder is not None
        stored_before = recorder.written

        await _admin(
            pg_server,
            pg_database_url,
            'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
        )
        serial = farm_api.printer(0).serial
        # The printer's link drops and comes back: offline, then online again.
        farm_api.sim.node(serial).drop_connections()
        await farm_api.until(lambda: recorder.failures >= 1, "a refused write")
        await farm_api.until_online([serial])
        assert recorder.pending >= 1

        await _admin(
            pg_server,
            pg_database_url,
            'ALTER DATABASE "{name}" SET default_transaction_read_only = off',
        )
        await farm_api.until(lambda: recorder.pending == 0, "the backlog to be written")
        await farm_api.farm.flush_history()
        assert recorder.lost == 0
        assert recorder.written > stored_before
        async with farm_api.services.database.session(readonly=True) as session:
            page = await event_history(session, serial=serial, kinds={"connection_changed"})
        states = [event.body["state"] for event in reversed(page.items)]
        # connecting + online at the add, then the outage's offline and online again, once.
        assert states.count("offline") == 1
        assert states[-1] == "online"
        ids = [event.id for event in page.items]
        assert len(ids) == len(set(ids))
