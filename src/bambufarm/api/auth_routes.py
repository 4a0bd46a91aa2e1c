"""`/api/v1/auth`: sign in and out, who am I, change my password.

Login sets two cookies: `bf_session` (HttpOnly, so page scripts cannot steal it) and
`bf_csrf` (readable, so the page can echo it in `X-CSRF-Token`); both SameSite=Lax and Secure
when the request came over HTTPS. Lax rather than Strict: a link to the farm from a chat or
a ticket opens it signed in, and that is safe because GET never changes anything here and
every unsafe request needs the CSRF header, which no other site can send.
"""

from datetime import datetime
from typing import Final

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from bambufarm.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AuthDep,
    AuthMethod,
    ServicesDep,
    client_address,
)
from bambufarm.api.errors import BadRequest, WrongPassword
from bambufarm.api.schemas import Username, problem_responses
from bambufarm.auth.accounts import change_password
from bambufarm.auth.errors import Forbidden, InvalidCredentials
from bambufarm.auth.passwords import MAX_PASSWORD_LENGTH
from bambufarm.auth.roles import Role, Scope
from bambufarm.auth.sessions import IssuedSession, login, logout
from bambufarm.storage.audit import record_action

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# Responses carrying a token or a password must not sit in a shared or browser cache.
NO_STORE: Final = {"Cache-Control": "no-store"}


class LoginRequest(BaseModel):
    """A username and password."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class LoginResponse(BaseModel):
    """The signed-in user and the CSRF token to send as `X-CSRF-Token` on unsafe requests."""

    username: str
    role: Role
    must_change_password: bool
    csrf_token: str
    expires_at: datetime


class Me(BaseModel):
    """Who the request is authenticated as, and how."""

    username: str
    role: Role
    must_change_password: bool
    auth: AuthMethod
    api_key_id: str | None = None
    scopes: list[Scope] | None = Field(
        default=None, description="The API key's scopes; null for a browser session."
    )
    session_expires_at: datetime | None = None


class PasswordChange(BaseModel):
    """The current password and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


@router.post(
    "/login",
    summary="Sign in with a username and password",
    responses=problem_responses(401, 422, 429, 503),
)
async def login_route(
    body: LoginRequest, request: Request, response: Response, services: ServicesDep
) -> LoginResponse:
    """Open a browser session: sets the session and CSRF cookies; returns the CSRF token."""
    address = client_address(request)
    now = services.clock()
    async with services.database.session() as session:
        previous = request.cookies.get(SESSION_COOKIE)
        issued = await login(
            session,
            services.passwords,
            services.limiter,
            username=body.username,
            password=body.password,
            address=address,
            now=now,
        )
        if previous:
            # Signing in again replaces the browser's session instead of leaving it behind.
            await logout(session, previous)
        await record_action(
            session, issued.user.username, "auth.login", details={"address": address}, at=now
        )
    _set_session_cookies(response, issued, secure=_is_https(request), now=now)
    response.headers.update(NO_STORE)
    return LoginResponse(
        username=issued.user.username,
        role=Role(issued.user.role),
        must_change_password=issued.user.must_change_password,
        csrf_token=issued.csrf_token,
        expires_at=issued.expires_at,
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End this browser session",
    responses=problem_responses(400, 401, 403, 503),
)
async def logout_route(auth: AuthDep, request: Request, services: ServicesDep) -> Response:
    """End the session of the cookie (needs the CSRF header) and clear both cookies."""
    if auth.method is not AuthMethod.SESSION or auth.session_token is None:
        raise BadRequest(
            "an API key is not signed out; revoke it instead: DELETE /api/v1/api-keys/{id}"
        )
    async with services.database.session() as session:
        await logout(session, auth.session_token)
        await record_action(session, auth.principal.actor, "auth.logout", at=services.clock())
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_session_cookies(response, secure=_is_https(request))
    return response


@router.get("/me", summary="Who am I", responses=problem_responses(401, 503))
async def me_route(auth: AuthDep) -> Me:
    """The user behind this request, their role, and the session or key used."""
    principal = auth.principal
    return Me(
        username=principal.username,
        role=principal.role,
        must_change_password=principal.must_change_password,
        auth=auth.method,
        api_key_id=principal.api_key_id,
        scopes=sorted(principal.scopes) if principal.scopes is not None else None,
        session_expires_at=auth.session_expires_at,
    )


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change my password",
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def password_route(
    body: PasswordChange, auth: AuthDep, request: Request, services: ServicesDep
) -> Response:
    """Replace the password; every session of the user ends, this one too: sign in again."""
    principal = auth.principal
    if auth.method is not AuthMethod.SESSION:
        raise Forbidden("a password is changed from a signed-in session, not with an API key")
    address = client_address(request)
    # Guessing the current password from a stolen session counts like guessing at login.
    services.limiter.check(principal.username, address)
    now = services.clock()
    try:
        async with services.database.session() as session:
            await change_password(
                session,
                services.passwords,
                principal.username,
                body.current_password,
                body.new_password,
                now=now,
            )
            await record_action(session, principal.actor, "auth.password_change", at=now)
    except InvalidCredentials:
        services.limiter.failed(principal.username, address)
        raise WrongPassword("the current password is wrong") from None
    services.limiter.succeeded(principal.username, address)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_session_cookies(response, secure=_is_https(request))
    return response


def _is_https(request: Request) -> bool:
    # uvicorn sets the scheme from TLS, or from X-Forwarded-Proto of a trusted proxy.
    return request.url.scheme == "https"


def _set_session_cookies(
    response: Response, issued: IssuedSession, *, secure: bool, now: datetime
) -> None:
    max_age = max(0, int((issued.expires_at - now).total_seconds()))
    for name, value, http_only in (
        (SESSION_COOKIE, issued.token, True),
        (CSRF_COOKIE, issued.csrf_token, False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=http_only,
            samesite="lax",
        )


def _clear_session_cookies(response: Response, *, secure: bool) -> None:
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="lax")
