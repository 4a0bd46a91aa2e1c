"""`/api/v1/api-keys`: keys for machines — create (the token is shown once), list, revoke.

Everyone manages their own keys, with scopes their role can grant (a viewer only `read`).
Admins also see and revoke everybody's (`?owner=NAME` or `?all=true`). Somebody else's key
is "not found" to a non-admin, so ids cannot be probed.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.api.auth_routes import NO_STORE
from bambufarm.api.deps import CanManageOwnKeys, ServicesDep
from bambufarm.api.schemas import PRINTABLE, Username, problem_responses
from bambufarm.auth.api_keys import MAX_NAME, create_api_key, revoke
from bambufarm.auth.roles import Action, Scope
from bambufarm.storage.audit import record_action
from bambufarm.storage.credentials import ApiKeyRecord, get_api_key, list_api_keys
from bambufarm.storage.errors import ApiKeyNotFound
from bambufarm.storage.users import get_user, get_user_by_id

router = APIRouter(
    prefix="/api/v1/api-keys",
    tags=["api keys"],
    responses=problem_responses(401, 403, 404, 422, 503),
)

# The public id part of bf_<id>_<secret>: 16 lower-case hex characters.
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's public id.")]


class ApiKey(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    owner: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(BaseModel):
    """A label for the key and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=PRINTABLE, examples=["erp-sync"])
    scopes: list[Scope] = Field(min_length=1, examples=[["read"]])


class CreatedApiKey(ApiKey):
    """The new key with its token, `bf_<id>_<secret>`: shown this once, store it now."""

    token: str


class ApiKeyList(BaseModel):
    """Keys, oldest first."""

    items: list[ApiKey]


def key_model(record: ApiKeyRecord, owner: str) -> ApiKey:
    """The API view of a stored key."""
    return ApiKey(
        id=record.id,
        name=record.name,
        owner=owner,
        scopes=sorted(Scope(s) for s in record.scopes),
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKey,
    summary="Create an API key",
)
async def create_route(
    body: NewApiKey, principal: CanManageOwnKeys, services: ServicesDep
) -> JSONResponse:
    """A key acting for you with the given scopes; its token is in this response only."""
    now = services.clock()
    async with services.database.session() as session:
        owner = await get_user_by_id(session, principal.user_id)
        issued = await create_api_key(
            session, owner, body.name, [s.value for s in body.scopes], now=now
        )
        await record_action(
            session,
            principal.actor,
            "api_key.create",
            details={
                "id": issued.record.id,
                "name": issued.record.name,
                "scopes": sorted(issued.record.scopes),
            },
            at=now,
        )
    created = CreatedApiKey(
        **key_model(issued.record, owner.username).model_dump(), token=issued.token
    )
    return JSONResponse(
        created.model_dump(mode="json"), status_code=status.HTTP_201_CREATED, headers=NO_STORE
    )


@router.get("", summary="List API keys")
async def list_route(
    principal: CanManageOwnKeys,
    services: ServicesDep,
    owner: Annotated[Username | None, Query(description="Another user's keys (admin).")] = None,
    all_owners: Annotated[
        bool, Query(alias="all", description="Everybody's keys (admin).")
    ] = False,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys.")] = False,
) -> ApiKeyList:
    """Your keys; admins may ask for one user's or everybody's."""
    others = all_owners or (owner is not None and owner != principal.username)
    if others:
        principal.require(Action.MANAGE_USERS)
    async with services.database.session(readonly=True) as session:
        owner_id: int | None = principal.user_id
        if all_owners:
            owner_id = None
        elif owner is not None:
            owner_id = (await get_user(session, owner)).id
        records = await list_api_keys(session, owner_id=owner_id, include_revoked=include_revoked)
        names = await _owner_names(session, records)
    return ApiKeyList(items=[key_model(r, names[r.owner_id]) for r in records])


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
)
async def revoke_route(key_id: KeyId, principal: CanManageOwnKeys, services: ServicesDep) -> None:
    """Revoke for good: the key stops working at once (revoking twice is harmless)."""
    now = services.clock()
    async with services.database.session() as session:
        record = await get_api_key(session, key_id)
        if record.owner_id != principal.user_id and not principal.can(Action.MANAGE_USERS):
            raise ApiKeyNotFound(f"no API key with id {key_id!r}")
        await revoke(session, key_id, now=now)
        owner = await get_user_by_id(session, record.owner_id)
        await record_action(
            session,
            principal.actor,
            "api_key.revoke",
            details={"id": key_id, "owner": owner.username},
            at=now,
        )


async def _owner_names(session: AsyncSession, records: tuple[ApiKeyRecord, ...]) -> dict[int, str]:
    names: dict[int, str] = {}
    for owner_id in {r.owner_id for r in records}:
        names[owner_id] = (await get_user_by_id(session, owner_id)).username
    return names
