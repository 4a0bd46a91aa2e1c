"""The one place where errors become HTTP responses: `application/problem+json` (RFC 9457).

Every domain error has a row in `MAPPINGS`: its status, a stable `type` (what clients compare)
and a title; the detail is the error's own message, which says what was wrong and what to do.
The most specific row wins (an `InvalidValue` is a 422 although a `StorageError` is a 503).
Add a row here when a package grows a new error; never catch and translate in a router.

The API's own errors, for what only the HTTP layer decides:

    ApiError                     base
    ├── BadRequest               the request cannot be done this way (400)
    ├── PasswordChangeRequired   the account must change its password before anything else
    ├── WrongPassword            the current password given to change it is wrong
    └── Conflict                 it would leave the farm in a bad state (e.g. no admin left)

The job package's own `ValueError`s (`IllegalTransition`, `DispatchInputError`) are mapped
here too: a move the job state machine forbids is a 409, a target that cannot be matched a 422.

Infrastructure errors (database down, disk full) keep their full message in the server log
and give the client a short one: an anonymous caller of /auth/login need not learn the
database's path. Anything without a row is a bug: logged with its traceback, answered 500
with no internals.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bambufarm.api.schemas import PROBLEM_MEDIA_TYPE, FieldProblem, Problem
from bambufarm.auth.errors import (
    AuthError,
    CsrfRejected,
    Forbidden,
    InvalidCredentials,
    InvalidScopes,
    RateLimited,
    WeakPassword,
)
from bambufarm.fleet.errors import (
    AuthFailed,
    CameraUnavailable,
    CommandRefused,
    CommandTimeout,
    DiscoveryError,
    EventError,
    FleetError,
    PrinterBusy,
    PrinterOffline,
    PrinterUnreachable,
    ReadOnlyPrinter,
    TlsVerificationFailed,
    UnknownPrinter,
    UploadFailed,
)
from bambufarm.jobs.dispatch import DispatchInputError
from bambufarm.jobs.history import DuplicatePrint, PrintAlreadyEnded
from bambufarm.jobs.library import LibraryDiskError, UploadTooLarge
from bambufarm.jobs.model import IllegalTransition
from bambufarm.protocol.errors import (
    CommandError,
    NotSlicedError,
    ProtocolError,
    ThreeMFError,
    UnsafeArchiveError,
)
from bambufarm.protocol.ftps_replies import (
    FtpsAuthError,
    FtpsError,
    FtpsNotFoundError,
    FtpsStorageFullError,
)
from bambufarm.storage.errors import (
    AlreadyExists,
    InvalidValue,
    MigrationError,
    NotFound,
    NotWritableReason,
    SecretKeyError,
    StorageError,
    StorageNotWritable,
    StorageUnavailable,
)
from bambufarm.storage.jobs import JobStateConflict
from bambufarm.storage.library import DuplicateFileName, FileInUse

logger = logging.getLogger(__name__)

TYPE_PREFIX: Final = "urn:bambufarm:problem:"
# Sent with every 401, as HTTP requires; "Bearer" so browsers never pop up a Basic dialog.
WWW_AUTHENTICATE: Final = 'Bearer realm="bambufarm"'
# How long a client should wait before retrying when the database is unavailable.
UNAVAILABLE_RETRY_S: Final = 5


class ApiError(Exception):
    """Base of the errors the API raises itself."""


class BadRequest(ApiError):  # noqa: N818 - named for what it is
    """The request cannot be carried out this way; the message says which way works."""


class PasswordChangeRequired(ApiError):  # noqa: N818 - named for what is needed
    """The account has a temporary password and must change it before doing anything else."""


class WrongPassword(ApiError):  # noqa: N818 - named for what it is
    """The current password given with a password change is wrong."""


class Conflict(ApiError):  # noqa: N818 - named for what it is
    """The change would leave the farm in a state it must not be in (e.g. without an admin)."""


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """How one exception class answers: status, `type` slug, title, and a public detail.

    `public_detail` replaces the message for errors whose text is meant for the operator
    (paths, hosts); the full message then goes to the log.
    """

    status: int
    slug: str
    title: str
    public_detail: str | None = None


_DB_OPERATOR = "the server log has the details for its administrator"

MAPPINGS: Final[Mapping[type[Exception], ProblemKind]] = MappingProxyType(
    {
        # api
        ApiError: ProblemKind(400, "bad-request", "Bad request"),
        BadRequest: ProblemKind(400, "bad-request", "Bad request"),
        PasswordChangeRequired: ProblemKind(
            403, "password-change-required", "Password change required"
        ),
        WrongPassword: ProblemKind(403, "wrong-password", "Wrong password"),
        Conflict: ProblemKind(409, "conflict", "Conflict"),
        # auth
        AuthError: ProblemKind(403, "forbidden", "Not allowed"),
        InvalidCredentials: ProblemKind(401, "unauthenticated", "Not signed in"),
        RateLimited: ProblemKind(429, "rate-limited", "Too many attempts"),
        Forbidden: ProblemKind(403, "forbidden", "Not allowed"),
        CsrfRejected: ProblemKind(403, "csrf-rejected", "Missing or wrong CSRF token"),
        WeakPassword: ProblemKind(422, "weak-password", "Password refused"),
        InvalidScopes: ProblemKind(422, "invalid-scopes", "API key scopes refused"),
        # storage
        StorageError: ProblemKind(
            503, "storage-failed", "Database error", f"the database failed; {_DB_OPERATOR}"
        ),
        StorageUnavailable: ProblemKind(
            503,
            "storage-unavailable",
            "Database unavailable",
            f"the database cannot be reached right now; retry shortly ({_DB_OPERATOR})",
        ),
        StorageNotWritable: ProblemKind(
            503,
            "storage-not-writable",
            "Database not writable",
            f"the database cannot be written; {_DB_OPERATOR}",
        ),
        MigrationError: ProblemKind(
            503,
            "storage-migration",
            "Database schema",
            f"the database schema is wrong; {_DB_OPERATOR}",
        ),
        SecretKeyError: ProblemKind(
            503,
            "secret-key",
            "Secret key problem",
            f"stored secrets cannot be read with this server's key; {_DB_OPERATOR}",
        ),
        InvalidValue: ProblemKind(422, "invalid-value", "Invalid value"),
        NotFound: ProblemKind(404, "not-found", "Not found"),
        AlreadyExists: ProblemKind(409, "already-exists", "Already exists"),
        # fleet: 409 when the printer's state forbids the request (nothing was sent), 504 when a
        # command went out and its answer did not come back (the outcome is unknown: check the
        # printer's status before repeating it).
        FleetError: ProblemKind(409, "printer-error", "Printer error"),
        UnknownPrinter: ProblemKind(404, "unknown-printer", "Unknown printer"),
        PrinterUnreachable: ProblemKind(409, "printer-unreachable", "Printer unreachable"),
        PrinterOffline: ProblemKind(409, "printer-offline", "Printer offline"),
        AuthFailed: ProblemKind(409, "printer-auth-failed", "Printer refused the access code"),
        TlsVerificationFailed: ProblemKind(
            409, "printer-tls-failed", "Printer certificate refused"
        ),
        CommandRefused: ProblemKind(409, "command-refused", "Command refused"),
        ReadOnlyPrinter: ProblemKind(409, "printer-read-only", "Printer not in Developer Mode"),
        PrinterBusy: ProblemKind(409, "printer-busy", "Printer busy"),
        CommandTimeout: ProblemKind(504, "command-timeout", "No answer from the printer"),
        UploadFailed: ProblemKind(502, "upload-failed", "Upload to the printer failed"),
        DiscoveryError: ProblemKind(503, "discovery-unavailable", "Discovery unavailable"),
        CameraUnavailable: ProblemKind(409, "camera-unavailable", "Camera unavailable"),
        # Events come from our own processes: one that cannot be read is our bug, not the client's.
        EventError: ProblemKind(500, "internal-error", "Internal error", "internal error"),
        # protocol: values the client gave that cannot become a command or a printable file
        ProtocolError: ProblemKind(422, "invalid-protocol-value", "Invalid value"),
        CommandError: ProblemKind(422, "invalid-command", "Invalid command"),
        ThreeMFError: ProblemKind(422, "invalid-3mf", "Unusable 3MF file"),
        UnsafeArchiveError: ProblemKind(422, "unsafe-3mf", "Refused 3MF file"),
        NotSlicedError: ProblemKind(422, "not-sliced", "3MF file not sliced"),
        # FTPS to a printer's storage (files routes): the printer's answer, not the client's input
        FtpsError: ProblemKind(502, "printer-files-failed", "Printer file transfer failed"),
        FtpsAuthError: ProblemKind(409, "printer-auth-failed", "Printer refused the access code"),
        FtpsNotFoundError: ProblemKind(
            404, "printer-file-not-found", "No such file on the printer"
        ),
        FtpsStorageFullError: ProblemKind(507, "printer-storage-full", "Printer storage full"),
        # library: a refused file says why (not sliced, unsafe, corrupt: above; no known model is
        # a ModelError, whose message names the model)
        UploadTooLarge: ProblemKind(413, "upload-too-large", "File too large"),
        DuplicateFileName: ProblemKind(409, "duplicate-file-name", "File name taken"),
        FileInUse: ProblemKind(409, "file-in-use", "File in use"),
        # The message names the library's directory: for the operator's log only.
        LibraryDiskError: ProblemKind(
            507,
            "library-storage",
            "Library storage failed",
            "the print library cannot store or read files; the server log has the details "
            "for its administrator",
        ),
        # jobs: a change the job's state does not allow right now (nothing was changed)
        JobStateConflict: ProblemKind(409, "job-state-conflict", "Job state conflict"),
        IllegalTransition: ProblemKind(409, "illegal-transition", "Not allowed in this state"),
        DispatchInputError: ProblemKind(422, "invalid-target", "Invalid job target"),
        DuplicatePrint: ProblemKind(409, "duplicate-print", "Print already recorded"),
        PrintAlreadyEnded: ProblemKind(409, "print-already-ended", "Print already ended"),
    }
)

_BUG = ProblemKind(
    500,
    "internal-error",
    "Internal error",
    "the server failed on this request; its log has the details (note the time of the request)",
)
_HTTP_KINDS: Final = MappingProxyType(
    {
        400: ("bad-request", "Bad request"),
        404: ("not-found", "Not found"),
        405: ("method-not-allowed", "Method not allowed"),
        406: ("not-acceptable", "Not acceptable"),
        413: ("too-large", "Request body too large"),
        415: ("unsupported-media-type", "Unsupported media type"),
    }
)


def mapping_for(exc: BaseException) -> ProblemKind:
    """The row of `MAPPINGS` for this exception (its most specific class), else the bug row."""
    for cls in type(exc).__mro__:
        found = MAPPINGS.get(cls)
        if found is not None:
            return found
    return _BUG


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[FieldProblem] | None = None,
    retry_after: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A `Problem` as an `application/problem+json` response."""
    problem = Problem(
        type=TYPE_PREFIX + slug,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
        retry_after=retry_after,
    )
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    body = orjson.dumps(problem.model_dump(mode="json", exclude_none=True))
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=all_headers)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    """Answer a domain error (storage, auth, fleet, protocol) from its `MAPPINGS` row."""
    row = mapping_for(exc)
    if row.status >= 500:
        if row.status == 500:
            logger.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        else:
            logger.warning(
                "%s %s answered %d: %s", request.method, request.url.path, row.status, exc
            )
    retry_after: int | None = None
    if isinstance(exc, RateLimited):
        retry_after = exc.retry_after
    elif isinstance(exc, StorageUnavailable):
        retry_after = UNAVAILABLE_RETRY_S
    detail = row.public_detail or str(exc) or row.title
    if isinstance(exc, StorageNotWritable) and exc.reason is NotWritableReason.DISK_FULL:
        detail = f"the database cannot be written: its disk is full; {_DB_OPERATOR}"
    return problem_response(
        row.status,
        row.slug,
        row.title,
        detail,
        instance=request.url.path,
        retry_after=retry_after,
    )


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """A 422 listing each invalid field; the rejected values are never echoed back."""
    raw: list[Any] = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    fields = [_field_problem(error) for error in raw]
    summary = "; ".join(f"{f.field}: {f.message}" for f in fields[:5])
    more = f" (and {len(fields) - 5} more)" if len(fields) > 5 else ""
    return problem_response(
        422,
        "validation",
        "Invalid request",
        f"the request is not valid: {summary}{more}" if fields else "the request is not valid",
        instance=request.url.path,
        errors=fields,
    )


def _field_problem(error: Mapping[str, Any]) -> FieldProblem:
    loc = [str(part) for part in error.get("loc", ())]
    kind = str(error.get("type", "invalid"))
    message = str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        # pydantic puts the character offset in the location: ("body", 17).
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = str(error.get("ctx", {}).get("error", "")).strip()
        message = f"the body is not valid JSON{where}" + (f" ({reason})" if reason else "")
        loc = loc[:1]
    return FieldProblem(field=".".join(loc) or "request", message=message, type=kind)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown path, wrong method, body too large) as problems."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    slug, title = _HTTP_KINDS.get(status, (f"http-{status}", "Request failed"))
    if status == 404:
        detail = f"nothing at {request.url.path}; the API is described at /api/docs"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = str(getattr(exc, "detail", "")) or title
    return problem_response(status, slug, title, detail, instance=request.url.path, headers=headers)


class CrashBarrier:
    """ASGI middleware: an exception nobody mapped is a bug — log it once, answer a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an escaped exception into a logged 500 problem."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                # A response is already out: nothing to answer here. Outer layers own their
                # own signals (Starlette's body limit sends its 413 this way) and uvicorn
                # logs a real crash once and closes the connection.
                raise
            # The request's boundary: the server keeps serving everyone else.
            logger.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            response = problem_response(
                _BUG.status,
                _BUG.slug,
                _BUG.title,
                _BUG.public_detail or "",
                instance=scope["path"],
            )
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the problem handlers and the crash barrier on `app`."""
    roots = (ApiError, StorageError, AuthError, FleetError, ProtocolError)
    for root in (*roots, IllegalTransition, DispatchInputError):
        app.add_exception_handler(root, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_middleware(CrashBarrier)
