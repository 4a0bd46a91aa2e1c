"""Pydantic models shared by every router: the problem body, pages, and their OpenAPI entries.

Resource models (users, keys, printers, ...) live beside their router in `api/<resource>.py`.
"""

from typing import Annotated, Any, Final, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel, Field

from bambufarm.storage.paging import DEFAULT_LIMIT, MAX_LIMIT
from bambufarm.storage.users import MAX_USERNAME, normalize_username

T = TypeVar("T")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# Names people give things (API keys, later printers): printable text. PostgreSQL refuses NUL
# in text and JSON, and control characters make log lines and tables lie.
PRINTABLE: Final = r"^[^\x00-\x1f\x7f]+$"


def _username(value: str) -> str:
    # The storage rule, checked at the edge: a name that cannot exist is a 422, and odd bytes
    # never reach the database.
    return normalize_username(value)


Username = Annotated[str, Field(min_length=1, max_length=MAX_USERNAME), AfterValidator(_username)]


class FieldProblem(BaseModel):
    """One invalid field of a request: where, what was wrong, and the validator's code."""

    field: str = Field(examples=["body.username"])
    message: str = Field(examples=["Field required"])
    type: str = Field(examples=["missing"])


class Problem(BaseModel):
    """An error response (RFC 9457 `application/problem+json`): what went wrong, what to do."""

    type: str = Field(
        description="A stable identifier of the kind of problem; compare this, not the text.",
        examples=["urn:bambufarm:problem:not-found"],
    )
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What was wrong with this request and what to do about it.")
    instance: str | None = Field(default=None, description="The path of the request.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="For validation problems: each invalid field."
    )
    retry_after: int | None = Field(
        default=None, description="Seconds to wait before retrying (also in Retry-After)."
    )


class Page(BaseModel, Generic[T]):
    """One page of a list: its items, how many match in all, and where the page starts."""

    items: list[T]
    total: int
    offset: int
    limit: int


class CursorPage(BaseModel, Generic[T]):
    """Newest-first items and the cursor for the next (older) page; null at the end."""

    items: list[T]
    next_cursor: str | None


class PageQuery(BaseModel):
    """`?offset=&limit=` of an offset-paginated list."""

    offset: int = Field(default=0, ge=0, description="How many items to skip.")
    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="At most this many items."
    )


PageParams = Annotated[PageQuery, Query()]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries saying these statuses answer with a `Problem`."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS: Final = {
    400: "The request cannot be carried out as sent.",
    401: "No valid session cookie or API key (`Authorization: Bearer bf_...`).",
    403: "Signed in, but the role, the key's scopes or the CSRF token do not allow this.",
    404: "No such resource.",
    409: "The request conflicts with the current state.",
    413: "The request body is too large.",
    422: "The request is malformed: see `errors` for each field.",
    429: "Too many attempts: wait `Retry-After` seconds.",
    503: "The database (or another service) is unavailable; retry later.",
}
