"""`create_app(services)`: the FastAPI application, assembled from the routers.

The app has no ASGI lifespan: the services it serves are started and stopped by whoever made
them (`bambufarm serve`, the demo, a test), so the same app object can be served, tested and
thrown away without owning any background work.

Every route needs a session or an API key except a short allow-list — `POST /api/v1/auth/login`,
`GET /api/health` and the API description (`/api/openapi.json`, `/api/docs`). The description is
public because it is the same for every installation (it is generated from this open code),
holds no farm data, and integrators need it before they have a key; a test walks every route
to keep the list short.
"""

from typing import Any, Final

from fastapi import FastAPI

from bambufarm.api import (
    api_keys,
    audit_routes,
    auth_routes,
    camera_routes,
    commands,
    events_routes,
    health,
    history_routes,
    jobs_routes,
    library_routes,
    metrics,
    printer_files,
    printers,
    telemetry_routes,
    users,
    ws,
)
from bambufarm.api.errors import install_error_handlers
from bambufarm.api.metrics import HttpMetrics, MetricsMiddleware
from bambufarm.api.schemas import PROBLEM_MEDIA_TYPE
from bambufarm.api.ws_hub import WsHub
from bambufarm.app import Services
from bambufarm.web.routes import web_router

OPENAPI_URL: Final = "/api/openapi.json"
DOCS_URL: Final = "/api/docs"
# JSON bodies here are a few hundred bytes; a megabyte is generous and bounds what a client
# can make the server buffer. Upload routes set their own, larger limit.
MAX_JSON_BODY: Final = 1024 * 1024

DESCRIPTION: Final = """\
The HTTP API of a bambufarm print-farm server.

**Authentication.** Machines send an API key: `Authorization: Bearer bf_<id>_<secret>`
(create one at `POST /api/v1/api-keys`). Browsers sign in at `POST /api/v1/auth/login`, which
sets a session cookie and returns a CSRF token to send as `X-CSRF-Token` on every request
that is not GET/HEAD/OPTIONS.

**Errors** are `application/problem+json` (RFC 9457): compare `type`, show `detail`.
"""


class BambufarmApi(FastAPI):
    """FastAPI whose OpenAPI document declares problem responses as problem+json."""

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (built once)."""
        if self.openapi_schema is None:
            _problems_as_problem_json(super().openapi())
        # FastAPI returns the document it built and kept above.
        return super().openapi()


def create_app(services: Services) -> FastAPI:
    """The API app serving `services` (one app per `Services`: it registers their metrics)."""
    app = BambufarmApi(
        title="bambufarm",
        version=services.version,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=DOCS_URL,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        max_body_size=MAX_JSON_BODY,
    )
    app.state.services = services
    app.state.ws_hub = WsHub(services.farm, services.metrics)
    install_error_handlers(app)
    # Added last, so it is the outermost of ours: it also counts the 500s of the crash barrier.
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(services.metrics))
    for module in (health, auth_routes, users, api_keys, audit_routes, metrics):
        app.include_router(module.router)
    for module in (printers, commands, printer_files, events_routes, ws):
        app.include_router(module.router)
    for module in (telemetry_routes, camera_routes):
        app.include_router(module.router)
    for module in (library_routes, jobs_routes, history_routes):
        app.include_router(module.router)
    app.include_router(web_router())
    return app


def _problems_as_problem_json(schema: dict[str, Any]) -> None:
    # FastAPI files every declared response model under application/json; error bodies are
    # sent as application/problem+json, and a contract checker compares the two.
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(code)[:1] in "45" and "application/json" in content:
                    body = content.pop("application/json")
                    if "Problem" in str(body.get("schema", {}).get("$ref", "")):
                        content[PROBLEM_MEDIA_TYPE] = body
                    else:
                        content["application/json"] = body
