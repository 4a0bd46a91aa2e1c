"""Pytest plugin: `api`, the real API on a fresh database of each dialect (SQLite, PostgreSQL).

Load it with `pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]`.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.api import RunningApi, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The API on a fresh database, served on 127.0.0.1, with the first admin created."""
    async with running_api(database_url, tmp_path / "data") as running:
        yield running
