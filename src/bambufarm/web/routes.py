"""The UI's routes: page shells at `/`, `/login`, `/password`, `/printers/{serial}`, and
static files at `/static/<digest>/<name>`.

Pages are for people with a browser session: without one they answer 303 to `/login` (with
`next` set to come back), and an account that must change its password is sent to
`/password` first — the same rule the API enforces with its 403s. The login page and the
static files are public: they are the same for every installation and hold no farm data.

Every page is sent with a strict Content-Security-Policy: scripts and styles only from this
server, no inline script or style, no framing, no plugins, connections only back to this
origin (the REST API and the WebSocket). Pages are `no-store` because they name the user;
static files are cached for a year under their digest URL.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bambufarm.api.deps import SESSION_COOKIE, ServicesDep
from bambufarm.app import Services
from bambufarm.auth.errors import InvalidCredentials
from bambufarm.auth.roles import Principal
from bambufarm.auth.sessions import authenticate_session
from bambufarm.web.assets import AssetTable, load_assets
from bambufarm.web.pages import Html, Shell, SignedInUser, element, load_shell

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        # 'self' covers ws:/wss: to this origin (CSP level 3): the live updates.
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
)
PAGE_HEADERS: Final = MappingProxyType({**SECURITY_HEADERS, "Cache-Control": "no-store"})
# A digest URL never changes content, so a year with `immutable` spares even revalidation.
STATIC_CACHE: Final = "public, max-age=31536000, immutable"
# A stale page asking for another digest gets today's file, but nobody may keep it.
STALE_CACHE: Final = "no-cache"
# Serials are 15 characters today; the pattern only keeps odd bytes out of the page.
SERIAL_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_NEXT: Final = 2000
# The pages besides the fleet and a printer's: (path, page name, title, component).
SECTIONS: Final = (
    ("/queue", "queue", "Queue", "queue-page"),
    ("/library", "library", "Library", "library-page"),
    ("/history", "history", "History", "history-page"),
    ("/settings", "settings", "Settings", "settings-page"),
)


def web_router(assets: AssetTable | None = None) -> APIRouter:
    """The router of the UI pages and static files (`assets` defaults to `static/`)."""
    table = assets if assets is not None else load_assets()
    shell = load_shell(table)
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def fleet_page(request: Request, services: ServicesDep) -> Response:
        """The fleet dashboard."""
        return await _page(
            request, services, shell, title="Fleet", page="fleet", main=element("fleet-dashboard")
        )

    def section(path: str, page: str, title: str, component: str) -> None:
        async def section_page(request: Request, services: ServicesDep) -> Response:
            return await _page(
                request, services, shell, title=title, page=page, main=element(component)
            )

        section_page.__doc__ = f"The {title.lower()} page."
        router.add_api_route(path, section_page, methods=["GET"], name=f"{page}_page")

    for path, page, title, component in SECTIONS:
        section(path, page, title, component)

    @router.get("/printers/{serial}")
    async def printer_page(
        serial: Annotated[str, Path(pattern=SERIAL_PATTERN)],
        request: Request,
        services: ServicesDep,
    ) -> Response:
        """One printer's detail page."""
        main = element("printer-detail", {"serial": serial})
        return await _page(request, services, shell, title=serial, page="printer", main=main)

    @router.get("/password")
    async def password_page(request: Request, services: ServicesDep) -> Response:
        """Change one's password (forced on the first sign-in of a generated account)."""
        principal = await _principal(request, services)
        if principal is None:
            return _redirect(_login_url("/password"))
        form = element(
            "password-form",
            {"username": principal.username, "forced": principal.must_change_password},
        )
        # A forced change leads nowhere else yet: no links to pages that would send it back.
        page = shell.render(
            title="Change password",
            page="password",
            main=form,
            user=_user(principal),
            nav=not principal.must_change_password,
        )
        return _html(page)

    @router.get("/login")
    async def login_page(
        request: Request,
        services: ServicesDep,
        next_path: Annotated[str, Query(alias="next")] = "/",
    ) -> Response:
        """The sign-in page (signed-in visitors go on to `next`)."""
        target = _local_path(next_path)
        principal = await _principal(request, services)
        if principal is not None:
            return _redirect("/password" if principal.must_change_password else target)
        form = element("login-form", {"next": target})
        return _html(shell.render(title="Sign in", page="login", main=form, user=None))

    @router.get("/static/{digest}/{name}")
    async def static_file(digest: str, name: str, request: Request) -> Response:
        """A static file of the UI, cached by its digest URL."""
        asset = table.get(name)
        if asset is None:
            return Response(
                f"no static file {name}\n",
                status_code=404,
                media_type="text/plain",
                headers=dict(SECURITY_HEADERS),
            )
        headers = {
            **SECURITY_HEADERS,
            "ETag": asset.etag,
            "Cache-Control": STATIC_CACHE if digest == table.digest else STALE_CACHE,
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    return router


async def _page(
    request: Request, services: Services, shell: Shell, *, title: str, page: str, main: Html
) -> Response:
    principal = await _principal(request, services)
    if principal is None:
        return _redirect(_login_url(request.url.path))
    if principal.must_change_password:
        return _redirect("/password")
    return _html(shell.render(title=title, page=page, main=main, user=_user(principal)))


async def _principal(request: Request, services: Services) -> Principal | None:
    # A page only needs to know whether the cookie is a live session; an API key is for
    # machines and never opens a page.
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        async with services.database.session(readonly=True) as session:
            auth = await authenticate_session(session, token, now=services.clock())
    except InvalidCredentials:
        return None
    return auth.principal


def _user(principal: Principal) -> SignedInUser:
    return SignedInUser(principal.username, principal.role.value)


def _html(document: str, headers: Mapping[str, str] = PAGE_HEADERS) -> HTMLResponse:
    return HTMLResponse(document, headers=dict(headers))


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=dict(PAGE_HEADERS))


def _login_url(back_to: str) -> str:
    return "/login" if back_to == "/" else f"/login?next={quote(back_to, safe='/')}"


def _local_path(candidate: str) -> str:
    """`candidate` if it is a path on this server, else `/`: `next` must not leave the farm."""
    if (
        not candidate.startswith("/")
        # "//host" is another server to a browser; the rest are no pages to come back to.
        or candidate.startswith(("//", "/login", "/static/", "/api/"))
        or len(candidate) > MAX_NEXT
        # Browsers read "\\" as "/" and drop control characters: "/\\host" is "//host".
        or any(ord(ch) < 0x20 or ch == "\\" for ch in candidate)
    ):
        return "/"
    return candidate
