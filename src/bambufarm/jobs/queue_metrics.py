"""The queue's Prometheus metrics: jobs by state (the queue's depth) and the dispatcher's work.

Job counts live in the database, which a collector (called synchronously by
`generate_latest`) cannot query; `/metrics` calls `refresh()` (one GROUP BY) just before it
renders, and the collector reports what that read. The dispatcher's counters are read live.
"""

import logging
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bambufarm.jobs.model import JobState
from bambufarm.jobs.starter import DispatchStats
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.job_counts import count_jobs_by_state

logger = logging.getLogger(__name__)


class QueueMetrics(Collector):
    """Jobs by state and the dispatcher's counters, registered on one server's registry."""

    def __init__(self, registry: CollectorRegistry, stats: Callable[[], DispatchStats]) -> None:
        self._stats = stats
        self.job_counts: Mapping[str, int] = MappingProxyType({})
        registry.register(self)

    async def refresh(self, database: Database) -> None:
        """Read the job counts; with the database down the last ones stay (and it is logged)."""
        try:
            async with database.session(readonly=True) as session:
                self.job_counts = await count_jobs_by_state(session)
        except StorageError as err:
            logger.warning("queue metrics show the last job counts read: %s", err)

    def collect(self) -> Iterator[Metric]:
        """The current values (job counts as of the last refresh)."""
        jobs = GaugeMetricFamily(
            "bambufarm_queue_jobs", "Jobs by state (queued and waiting: the queue's depth).",
            labels=("state",),
        )  # fmt: skip
        for state in JobState:
            jobs.add_metric((state.value,), self.job_counts.get(state.value, 0))
        yield jobs
        stats = self._stats()
        for name, help_text, value in (
            ("rounds", "Matching rounds the dispatcher ran.", stats.rounds),
            ("assignments", "Jobs the dispatcher assigned to a printer.", stats.assignments),
            ("starts", "project_file commands sent to printers.", stats.starts_sent),
            ("uploads", "Files uploaded to start a job.", stats.uploads),
            ("upload_bytes", "Bytes uploaded to start jobs.", stats.upload_bytes),
        ):
            yield CounterMetricFamily(f"bambufarm_queue_{name}", help_text, value=value)
