"""Request dependencies: the services, who is asking, and whether they may.

Two ways in, tried in this order:

* `Authorization: Bearer bf_<id>_<secret>` — an API key (machines). A request that carries an
  Authorization header is judged by it alone; a wrong one is a 401 even with a valid cookie.
  Keys never need a CSRF token: a browser never attaches them on its own.
* the `bf_session` cookie — a browser session. Unsafe methods (anything but GET, HEAD,
  OPTIONS) must echo the session's CSRF token in `X-CSRF-Token`; the token came with the
  login response and sits in the readable `bf_csrf` cookie (double submit). A cross-site
  page can make the browser send the cookie but can neither read nor send that header.

Routes declare what they do with `require(Action.X)` (or the `Can*` aliases below); a user who
must change their password may only reach `/auth/me`, `/auth/password` and `/auth/logout`.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from bambufarm.api.errors import PasswordChangeRequired
from bambufarm.app import Services
from bambufarm.auth.api_keys import authenticate_api_key, looks_like_api_key
from bambufarm.auth.errors import InvalidCredentials
from bambufarm.auth.roles import Action, Principal
from bambufarm.auth.sessions import authenticate_session

SESSION_COOKIE: Final = "bf_session"
CSRF_COOKIE: Final = "bf_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_api_key_scheme: Final = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`bf_<id>_<secret>`), sent as `Authorization: Bearer bf_...`.",
)
_session_scheme: Final = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="Session",
    description=(
        "The browser session from POST /api/v1/auth/login; unsafe methods also need "
        f"the `{CSRF_HEADER}` header."
    ),
)


class AuthMethod(StrEnum):
    """How a request proved who it is."""

    SESSION = "session"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request's principal and how it got in (the cookie token is kept for logout)."""

    principal: Principal
    method: AuthMethod
    session_expires_at: datetime | None = None
    session_token: str | None = field(default=None, repr=False)


def get_services(request: Request) -> Services:
    """The services the app was created with."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_address(request: Request) -> str:
    """The client's address as the server sees it (after trusted proxy headers)."""
    return request.client.host if request.client is not None else "unknown"


async def authenticate(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_api_key_scheme)],
    cookie: Annotated[str | None, Security(_session_scheme)],
) -> Authenticated:
    """Who is asking: an API key or a session cookie (with CSRF on unsafe methods); else 401."""
    if "authorization" in request.headers:
        if bearer is None or not looks_like_api_key(bearer.credentials):
            raise InvalidCredentials(
                "the Authorization header must be 'Bearer bf_...' with an API key of this server"
            )
        # Writable: the key's last use is recorded (at most once a minute per key).
        async with services.database.session() as session:
            principal = await authenticate_api_key(
                session, bearer.credentials, now=services.clock()
            )
        return Authenticated(principal, AuthMethod.API_KEY)
    if cookie:
        async with services.database.session(readonly=True) as session:
            auth = await authenticate_session(session, cookie, now=services.clock())
        if request.method not in SAFE_METHODS:
            auth.check_csrf(request.headers.get(CSRF_HEADER))
        return Authenticated(
            auth.principal, AuthMethod.SESSION, auth.expires_at, session_token=cookie
        )
    raise InvalidCredentials(
        "sign in (POST /api/v1/auth/login) or send an API key (Authorization: Bearer bf_...)"
    )


AuthDep = Annotated[Authenticated, Depends(authenticate)]


def require(action: Action) -> Callable[[Authenticated], Awaitable[Principal]]:
    """A dependency giving the principal if it may perform `action` (401/403 otherwise)."""

    async def allowed(auth: AuthDep) -> Principal:
        principal = auth.principal
        if principal.must_change_password:
            raise PasswordChangeRequired(
                f"{principal.username} must change their password first: POST /api/v1/auth/password"
            )
        principal.require(action)
        return principal

    allowed.__name__ = f"require_{action.value}"
    return allowed


CanView = Annotated[Principal, Depends(require(Action.VIEW))]
CanControl = Annotated[Principal, Depends(require(Action.CONTROL))]
CanQueue = Annotated[Principal, Depends(require(Action.QUEUE))]
CanManagePrinters = Annotated[Principal, Depends(require(Action.MANAGE_PRINTERS))]
CanManageOwnKeys = Annotated[Principal, Depends(require(Action.MANAGE_OWN_KEYS))]
CanViewAudit = Annotated[Principal, Depends(require(Action.VIEW_AUDIT))]
CanManageUsers = Annotated[Principal, Depends(require(Action.MANAGE_USERS))]
