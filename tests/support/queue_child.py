"""A dispatcher in its own process, for the crash tests: `python -m tests.support.queue_child`.

It connects to the simulated printers of a manifest (trusting its CA), opens the database and
the library, starts the dispatcher (which reconciles what a killed predecessor left) and runs
until it is killed. It prints one line, `ready <requeued> <resumed>`, once dispatching.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bambufarm.fleet.config import SessionOptions
from bambufarm.fleet.events import EventBus
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.fleet.uploads import Uploader
from bambufarm.jobs.library import Library
from bambufarm.jobs.runner import Dispatcher, DispatcherOptions
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.jobs.watchdog import StageLimits
from bambufarm.simulator.manifest import Manifest
from bambufarm.storage.db import open_database
from tests.support.fleet_harness import printer_config


async def run(args: argparse.Namespace) -> None:
    """Dispatch until killed."""
    manifest = Manifest.read(Path(args.manifest))
    database = await open_database(args.database)
    library = Library(Path(args.library), database)
    policy = TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))
    options = DispatcherOptions(
        limits=StageLimits(confirm_s=args.confirm_s, ack_s=2.0), prestage=False
    )
    async with (
        Uploader(max_concurrent=4) as uploader,
        Fleet(
            bus=EventBus(),
            tls=policy,
            uploader=uploader,
            session_options=SessionOptions(connect_timeout=5.0, ack_timeout=5.0),
        ) as fleet,
    ):
        for printer in manifest.printers:
            fleet.add(printer_config(printer))
        dispatcher = Dispatcher(
            database=database, fleet=fleet, library=library, wakeup=Wakeup(), options=options
        )
        recovery = await dispatcher.start()
        if recovery is None:
            raise SystemExit("the test database could not be reached")
        print(f"ready {len(recovery.requeued)} {len(recovery.resumed)}", flush=True)
        try:
            await asyncio.Event().wait()  # until killed: that is the point of this process
        finally:
            await dispatcher.stop()
            await database.aclose()


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--library", required=True)
    parser.add_argument("--confirm-s", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(relativeCreated)d %(name)s %(message)s"
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
