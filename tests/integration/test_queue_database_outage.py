"""The queue when the database is down at start-up (PostgreSQL): the dispatcher starts without
reconciling and dispatches nothing, then reconciles and runs the queue once the database can
be reached — a job queued before the outage prints, once."""

from pathlib import Path

from sqlalchemy.engine import make_url

from bambufarm.jobs.library import Library
from bambufarm.jobs.model import JobSpec, JobState
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.runner import DispatcherOptions
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.storage.db import open_database
from tests.support.queue_harness import add_file, queue_rig, sliced_file
from tests.support.tcp_relay import free_port, relay

pytest_plugins = ["tests.support.postgres"]


async def test_a_queue_started_without_its_database_runs_once_it_is_back(
    pg_database_url: str, tmp_path: Path
) -> None:
    real = await open_database(pg_database_url)
    try:
        library = Library(tmp_path / "library", real)
        sha = await add_file(library, sliced_file(), "clip.gcode.3mf")
        queue = JobQueue(real, Wakeup())
        (queued,) = await queue.add(JobSpec(sha, "clip", created_by="ann"))
    finally:
        await real.aclose()

    url = make_url(pg_database_url)
    port = free_port()
    # The same database behind a port nobody listens on yet: every connection is refused.
    down = await open_database(
        url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False), migrate=False
    )
    options = DispatcherOptions(storage_retry_s=0.1)
    try:
        async with queue_rig(tmp_path, down, options=options) as rig:
            assert rig.dispatcher.running
            assert rig.dispatcher.recovery is None  # not reconciled: nothing is dispatched
            assert rig.started.starts == []

            async with relay(port, (url.host or "127.0.0.1", url.port or 5432)):
                (done,) = await rig.until_jobs(
                    [queued.id], lambda js: js[0].state is JobState.AWAITING_CLEAR,
                    "the job queued before the outage to print",
                )  # fmt: skip
                assert rig.dispatcher.recovery is not None
                assert done.printer == rig.serial(0)
                assert [serial for serial, _, _ in rig.started.starts] == [rig.serial(0)]
    finally:
        await down.aclose()
