"""`/api/v1/users`: accounts, for admins — list, create, change role, disable, reset password.

The farm always keeps an enabled admin: nobody can demote or disable themselves, and the last
enabled admin cannot be demoted or disabled by anyone (`bambufarm admin reset-password` is the
way back in, not a second account). Users are disabled rather than deleted, so the audit log
keeps naming real accounts.
"""

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.api.auth_routes import NO_STORE
from bambufarm.api.deps import CanManageUsers, ServicesDep
from bambufarm.api.errors import BadRequest, Conflict
from bambufarm.api.schemas import Page, PageParams, Username, problem_responses
from bambufarm.auth.accounts import create_user, set_disabled
from bambufarm.auth.bootstrap import reset_password
from bambufarm.auth.passwords import MAX_PASSWORD_LENGTH, generate_password
from bambufarm.auth.roles import Principal, Role
from bambufarm.storage.audit import record_action
from bambufarm.storage.paging import MAX_LIMIT
from bambufarm.storage.users import (
    UserChanges,
    UserRecord,
    get_user,
    list_users,
    update_user,
)

router = APIRouter(
    prefix="/api/v1/users",
    tags=["users"],
    responses=problem_responses(401, 403, 404, 422, 503),
)

UsernamePath = Annotated[Username, Path(description="The account's name (any case).")]
_ADMIN: Final = Role.ADMIN.value


class User(BaseModel):
    """An account (never its password hash)."""

    id: int
    username: str
    role: Role
    disabled: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime


class NewUser(BaseModel):
    """A new account; without a password a random one is made and returned once."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    role: Role = Role.VIEWER
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PASSWORD_LENGTH,
        description="Omit to have a random password generated (returned once).",
    )


class CreatedUser(User):
    """The new account, and its generated password when none was given (shown this once)."""

    initial_password: str | None = None


class UserUpdate(BaseModel):
    """The fields to change; give at least one."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> "UserUpdate":
        if self.role is None and self.disabled is None:
            raise ValueError("give role and/or disabled")
        return self


class ResetPassword(BaseModel):
    """A user's new random password, shown this once; they must change it at sign-in."""

    username: str
    password: str


def user_model(record: UserRecord) -> User:
    """The API view of a stored user."""
    return User(
        id=record.id,
        username=record.username,
        role=Role(record.role),
        disabled=record.disabled,
        must_change_password=record.must_change_password,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


@router.get("", summary="List users")
async def list_route(
    principal: CanManageUsers, services: ServicesDep, page: PageParams
) -> Page[User]:
    """Users by name, `limit` at a time."""
    async with services.database.session(readonly=True) as session:
        found = await list_users(session, offset=page.offset, limit=page.limit)
    return Page[User](
        items=[user_model(u) for u in found.items],
        total=found.total,
        offset=found.offset,
        limit=found.limit,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedUser,
    summary="Create a user",
    responses=problem_responses(409),
)
async def create_route(
    body: NewUser, principal: CanManageUsers, services: ServicesDep
) -> JSONResponse:
    """A new account that must change its password at first sign-in."""
    password = body.password if body.password is not None else generate_password()
    now = services.clock()
    async with services.database.session() as session:
        record = await create_user(
            session, services.passwords, body.username, password, body.role, now=now
        )
        await record_action(
            session,
            principal.actor,
            "user.create",
            details={"username": record.username, "role": record.role},
            at=now,
        )
    created = CreatedUser(
        **user_model(record).model_dump(),
        initial_password=password if body.password is None else None,
    )
    return JSONResponse(
        created.model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/api/v1/users/{record.username}", **NO_STORE},
    )


@router.get("/{username}", summary="Show a user")
async def get_route(
    username: UsernamePath, principal: CanManageUsers, services: ServicesDep
) -> User:
    """One account."""
    async with services.database.session(readonly=True) as session:
        return user_model(await get_user(session, username))


@router.patch(
    "/{username}",
    summary="Change a user's role or disable them",
    responses=problem_responses(409),
)
async def update_route(
    username: UsernamePath, body: UserUpdate, principal: CanManageUsers, services: ServicesDep
) -> User:
    """Set the role and/or disabled flag; disabling ends the user's sessions and keys' use."""
    now = services.clock()
    async with services.database.session() as session:
        user = await get_user(session, username)
        losing_admin = (
            user.role == _ADMIN
            and not user.disabled
            and ((body.role is not None and body.role is not Role.ADMIN) or body.disabled is True)
        )
        if losing_admin:
            await _keep_an_admin(session, principal, user)
        if body.role is not None and body.role.value != user.role:
            user = await update_user(session, user.username, UserChanges(role=body.role), now=now)
        if body.disabled is not None and body.disabled != user.disabled:
            user = await set_disabled(session, user.username, body.disabled, now=now)
        await record_action(
            session,
            principal.actor,
            "user.update",
            details={
                "username": user.username,
                **({"role": body.role.value} if body.role is not None else {}),
                **({"disabled": body.disabled} if body.disabled is not None else {}),
            },
            at=now,
        )
    return user_model(user)


@router.post(
    "/{username}/reset-password",
    response_model=ResetPassword,
    summary="Reset a user's password",
    responses=problem_responses(400),
)
async def reset_route(
    username: UsernamePath, principal: CanManageUsers, services: ServicesDep
) -> JSONResponse:
    """A new random password (shown once): ends their sessions and re-enables the account."""
    if username == principal.username:
        raise BadRequest("change your own password with POST /api/v1/auth/password")
    async with services.database.session() as session:
        user = await get_user(session, username)
        password = await reset_password(
            session, services.passwords, user.username, actor=principal.actor, now=services.clock()
        )
    body = ResetPassword(username=user.username, password=password)
    return JSONResponse(body.model_dump(mode="json"), headers=dict(NO_STORE))


async def _keep_an_admin(session: AsyncSession, principal: Principal, user: UserRecord) -> None:
    # The principal is an enabled admin, so after the self-check there is always another one,
    # unless two admins demote each other at once: SQLite runs one writer at a time, so the
    # second sees the first's change here and is refused.
    if user.id == principal.user_id:
        raise Conflict("you cannot demote or disable your own account; another admin can do it")
    others = 0
    offset = 0
    while True:
        page = await list_users(session, offset=offset, limit=MAX_LIMIT)
        others += sum(
            1 for u in page.items if u.role == _ADMIN and not u.disabled and u.id != user.id
        )
        offset += len(page.items)
        if not page.items or offset >= page.total:
            break
    if others == 0:
        raise Conflict(f"{user.username} is the last enabled admin; make another admin first")
