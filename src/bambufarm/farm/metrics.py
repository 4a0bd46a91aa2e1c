"""The farm's Prometheus metrics: printers by link state, reports, commands, uploads, history.

Printer counts and report totals are read from the fleet when Prometheus scrapes (a collector),
so the per-report path pays nothing for them. `bambufarm_printer_reports` sums each printer's
report counter; it restarts for one printer when that printer is edited (a new session), which
`rate()` treats as a counter reset. Commands and uploads are observed as they happen.
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bambufarm.fleet.commands import CommandResult
from bambufarm.fleet.connection import ConnectionState
from bambufarm.protocol.ftps import UploadResult

if TYPE_CHECKING:
    from bambufarm.farm.history import EventRecorder
    from bambufarm.fleet.supervisor import Fleet

# A LAN printer acknowledges in 50-500 ms; the ack timeout is 10 s.
COMMAND_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class FarmMetrics:
    """Metrics observed by the farm as things happen (commands, uploads)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.command_seconds = Histogram(
            "bambufarm_command_duration_seconds",
            "Round trip of a printer command: sent until acknowledged (or given up).",
            ("command", "status"),
            buckets=COMMAND_BUCKETS,
            registry=registry,
        )
        self.uploads = Counter(
            "bambufarm_uploads",
            "File uploads to printers, by result (ok, failed).",
            ("result",),
            registry=registry,
        )
        self.upload_bytes = Counter(
            "bambufarm_upload_bytes",
            "Bytes uploaded to printers; rate() over bambufarm_upload_seconds is throughput.",
            registry=registry,
        )
        self.upload_seconds = Counter(
            "bambufarm_upload_seconds",
            "Seconds spent transferring files to printers.",
            registry=registry,
        )

    def command(self, name: str, result: CommandResult, seconds: float) -> None:
        """Record one command's round trip."""
        self.command_seconds.labels(name, result.status.value).observe(seconds)

    def upload(self, result: UploadResult | None) -> None:
        """Record one upload: its result, or None when it failed."""
        if result is None:
            self.uploads.labels("failed").inc()
            return
        self.uploads.labels("ok").inc()
        self.upload_bytes.inc(result.bytes)
        self.upload_seconds.inc(result.seconds)


class FleetCollector(Collector):
    """Reads printer counts and report totals from the fleet at scrape time."""

    def __init__(self, fleet: "Fleet", recorder: Callable[[], "EventRecorder | None"]) -> None:
        self._fleet = fleet
        self._recorder = recorder

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        by_state = dict.fromkeys((state.value for state in ConnectionState), 0)
        reports = malformed = 0
        for snapshot in self._fleet.printers():
            by_state[snapshot.connection.state.value] += 1
            reports += snapshot.state.report_count
            malformed += self._fleet.session(snapshot.serial).malformed_reports
        printers = GaugeMetricFamily(
            "bambufarm_printers", "Printers in the fleet, by connection state.", labels=["state"]
        )
        for state, count in by_state.items():
            printers.add_metric([state], count)
        yield printers
        yield CounterMetricFamily(
            "bambufarm_printer_reports", "Reports merged from printers.", value=reports
        )
        yield CounterMetricFamily(
            "bambufarm_printer_malformed_reports",
            "Reports from printers that could not be read (ignored).",
            value=malformed,
        )
        recorder = self._recorder()
        stored = recorder.written if recorder is not None else 0
        lost = recorder.lost if recorder is not None else 0
        yield CounterMetricFamily(
            "bambufarm_events_stored", "Fleet events written to the history.", value=stored
        )
        yield CounterMetricFamily(
            "bambufarm_events_lost",
            "Fleet events the history could not keep (backlog full during an outage).",
            value=lost,
        )
