"""`GET /metrics` for Prometheus, and the HTTP request metrics the API itself records.

The registry belongs to the services (one per process); the fleet, the queue and the
WebSocket fan-out add their own collectors to the same registry. Scraping needs a `read`
key (`authorization: {credentials: bf_...}` in Prometheus' scrape config) like every other
view of the farm.

Requests are labelled by route template (`/api/v1/users/{username}`), never by raw path:
one series per route, however many users or printers there are, and no names in labels.
"""

import time
from typing import Final

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bambufarm.api.deps import CanView, ServicesDep
from bambufarm.api.schemas import problem_responses

router = APIRouter(tags=["metrics"])

UNMATCHED_ROUTE: Final = "unmatched"
# API calls take ~1 ms to ~1 s; login's argon2 ~40 ms on the reference machine.
DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class HttpMetrics:
    """Counters and a latency histogram for HTTP requests, on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "bambufarm_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "bambufarm_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request in `HttpMetrics`."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it by the route the router matched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router writes the matched route into the shared scope dict.
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            self.metrics.observe(scope["method"], str(route), status, time.perf_counter() - started)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        **problem_responses(401, 403, 503),
    },
)
async def metrics_route(principal: CanView, services: ServicesDep) -> Response:
    """Every metric of this server process in Prometheus' text format."""
    await services.queue_metrics.refresh(services.database)
    return Response(generate_latest(services.metrics), media_type=CONTENT_TYPE_LATEST)
