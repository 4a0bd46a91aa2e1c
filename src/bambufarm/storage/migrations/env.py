"""Alembic environment for bambufarm: runs the migrations in `versions/` on one connection.

The server runs them at start (`bambufarm.storage.db.open_database`), handing its own
connection in through `config.attributes["connection"]`. To write a new revision, compare the
tables with a database migrated to head:

    python -c "from alembic import command; from bambufarm.storage.db import alembic_config; \\
        c = alembic_config(); c.set_main_option('sqlalchemy.url', 'sqlite+aiosqlite:///dev.db'); \\
        command.upgrade(c, 'head'); command.revision(c, 'what changed', autogenerate=True)"

then read and tidy the generated file: a migration is code that runs on every farm's data.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bambufarm.storage.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported: run against a database")
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url set")
    asyncio.run(_run_with_own_engine(url))


_main()
