"""`/api/v1/library`: upload sliced `.gcode.3mf` files, list and search them, read their plates
and thumbnails, rename, move, tag and delete them.

Uploads stream: the body goes chunk by chunk into the library's temporary file while it is
hashed and counted against the library's size cap, so a 200 MB file never sits in memory. The
body is either the file itself (any binary content type; the name from `?name=` or a
`Content-Disposition` filename) or `multipart/form-data` with one file part, parsed as it
arrives; form fields `name`, `folder` and `tag` must come before the file part, since the file
is stored as it is read (query parameters win over them). A refused file says why: not sliced
(`not-sliced`), corrupt (`invalid-3mf`), hostile (`unsafe-3mf`), for a printer model the farm
does not know (`invalid-protocol-value`), too large (`upload-too-large`, 413); nothing of it
is kept.

Reading needs `view`; changing the library needs `queue`. Every change is audited.
"""

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request, Response, status
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from bambufarm.api.deps import CanQueue, CanView, ServicesDep
from bambufarm.api.errors import BadRequest, problem_response
from bambufarm.api.queue_schemas import (
    SHA256_PATTERN,
    FileChangesIn,
    FileContent,
    Folders,
    LibraryFileOut,
    content_out,
    library_file_out,
)
from bambufarm.api.schemas import Page, PageParams, Problem, problem_responses
from bambufarm.app import Services
from bambufarm.auth.roles import Principal
from bambufarm.farm.service import model_code
from bambufarm.storage.audit import record_action
from bambufarm.storage.errors import NotFound
from bambufarm.storage.library import FileChanges, LibraryFileRecord, list_files, update_file
from bambufarm.storage.unset import UNSET

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/library",
    tags=["library"],
    responses=problem_responses(401, 403, 404, 422, 503),
)

JSON: Final = "application/json"
PNG: Final = "image/png"
# The route's own body limit, above the app's 1 MiB for JSON. The library's cap (256 MiB by
# default, configurable) is what refuses a file, with a clear 413; this only bounds a library
# configured beyond any sliced file's size.
MAX_UPLOAD_BODY: Final = 8 * 1024**3
# Form fields are names, folders and tags: a few hundred bytes. These caps bound what a client
# can make the server hold before the file part starts.
MAX_FIELD_BYTES: Final = 1024
MAX_FIELDS: Final = 40
_FORM_FIELDS: Final = frozenset({"name", "folder", "tag"})
_NOT_FILES: Final = frozenset(
    {"application/json", "application/x-www-form-urlencoded", "text/plain", "text/html"}
)
# Thumbnails by content never change (the URL names the content); by file id, a deleted
# file's id could be reused, so browsers revalidate after a few minutes.
IMMUTABLE: Final = "private, max-age=31536000, immutable"
REVALIDATE: Final = "private, max-age=300"

FileIdPath = Annotated[int, Path(ge=1, description="The library file's id.")]
Sha256Path = Annotated[str, Path(pattern=SHA256_PATTERN, description="The content's sha256.")]
PlatePath = Annotated[int, Path(ge=1, le=1000, description="The plate (1-based).")]


def _json(
    model: LibraryFileOut | FileContent | Folders, code: int = status.HTTP_200_OK
) -> Response:
    return Response(model.model_dump_json(), status_code=code, media_type=JSON)


# ------------------------------------------------------------------------------ upload


@dataclass
class _FormReader:
    """A multipart/form-data body fed chunk by chunk: fields before the file, then its bytes."""

    boundary: bytes
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    file_started: bool = False  # the file part's headers are read: its data follows
    file_ended: bool = False
    ended: bool = False  # the closing boundary was read
    _pending: list[bytes] = field(default_factory=list)
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _field: str | None = None  # the form field being read
    _value: bytearray = field(default_factory=bytearray)
    _in_file: bool = False
    _parser: MultipartParser | None = None

    def __post_init__(self) -> None:
        self._parser = MultipartParser(
            self.boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse a chunk of the body; the file bytes it held."""
        if self._parser is None:
            raise BadRequest("the multipart body cannot be read")
        try:
            self._parser.write(chunk)
        except FormParserError as err:
            raise BadRequest(f"the multipart body is malformed: {err}") from None
        pending, self._pending = self._pending, []
        return pending

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("latin-1")
        if b"filename" in options or name == "file":
            if self.file_started:
                raise BadRequest("send one file per upload; this body has two file parts")
            self.file_started = self._in_file = True
            filename = options.get(b"filename", b"").decode("utf-8", errors="replace")
            self.filename = filename.replace("\\", "/").rsplit("/", 1)[-1] or None
            return
        if self.file_started:
            raise BadRequest(
                f"form field {name[:40]!r} comes after the file; put the name, folder and tag "
                "fields before the file part (or use the query parameters)"
            )
        if name not in _FORM_FIELDS:
            raise BadRequest(
                f"unknown form field {name[:40]!r}; the fields are name, folder, tag and file"
            )
        if sum(len(v) for v in self.fields.values()) >= MAX_FIELDS:
            raise BadRequest(f"at most {MAX_FIELDS} form fields")
        self._field = name
        self._value.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(bytes(data[start:end]))
        elif self._field is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise BadRequest(f"form field {self._field!r} is longer than {MAX_FIELD_BYTES}")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.file_ended = True
        elif self._field is not None:
            try:
                text = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field {self._field!r} is not UTF-8 text") from None
            self.fields.setdefault(self._field, []).append(text)
            self._field = None

    def _end(self) -> None:
        self.ended = True


@dataclass(frozen=True, slots=True)
class _Upload:
    """Where an upload's bytes come from and what to call it."""

    chunks: AsyncIterator[bytes]
    name: str | None
    folder: str | None
    tags: tuple[str, ...]


async def _body(request: Request) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives; a client that hangs up mid-way is a bad request."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        # Nobody is left to answer; the library removes what it had staged.
        logger.info("upload to %s broken off by the client", request.url.path)
        raise BadRequest("the client closed the connection before the upload ended") from None


async def _multipart(request: Request, boundary: bytes) -> _Upload:
    """Read a form up to its file part; the file's bytes follow as they arrive."""
    reader = _FormReader(boundary)
    body = _body(request)
    first: list[bytes] = []
    while not reader.file_started:
        chunk = await anext(body, None)
        if chunk is None or reader.ended:
            raise BadRequest("the multipart body has no file part; send the file as 'file'")
        first = reader.feed(chunk)

    async def chunks() -> AsyncGenerator[bytes, None]:
        for piece in first:
            yield piece
        async for chunk in body:
            for piece in reader.feed(chunk):
                yield piece
        if not (reader.file_ended and reader.ended):
            raise BadRequest("the upload ended before the end of the multipart body; send it again")

    fields = reader.fields
    return _Upload(
        chunks=chunks(),
        name=fields["name"][-1] if "name" in fields else reader.filename,
        folder=fields["folder"][-1] if "folder" in fields else None,
        tags=tuple(fields.get("tag", ())),
    )


def _raw(request: Request) -> _Upload:
    """The body is the file; a `Content-Disposition` filename may name it."""
    _, options = parse_options_header(request.headers.get("content-disposition"))
    filename = options.get(b"filename", b"").decode("utf-8", errors="replace")
    return _Upload(
        chunks=_body(request),
        name=filename.replace("\\", "/").rsplit("/", 1)[-1] or None,
        folder=None,
        tags=(),
    )


@router.post(
    "/files",
    status_code=status.HTTP_201_CREATED,
    response_model=LibraryFileOut,
    summary="Upload a sliced file",
    max_body_size=MAX_UPLOAD_BODY,
    responses={
        **problem_responses(400, 409, 413),
        415: {"model": Problem, "description": "The body is not a file or a multipart form."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "name": {"type": "string"},
                            "folder": {"type": "string"},
                            "tag": {"type": "array", "items": {"type": "string"}},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
            },
        }
    },
)
async def upload_route(
    request: Request,
    principal: CanQueue,
    services: ServicesDep,
    *,
    name: Annotated[str | None, Query(max_length=255, description="The file's name.")] = None,
    folder: Annotated[str | None, Query(max_length=255, description="'/'-separated.")] = None,
    tag: Annotated[list[str] | None, Query(max_length=32, description="Tags (repeat).")] = None,
) -> Response:
    """Store a sliced `.gcode.3mf` (the body, or the `file` part of a form) in the library.

    The same content under the same name is stored once and answered again.
    """
    media, options = parse_options_header(request.headers.get("content-type"))
    kind = media.decode("latin-1")
    if kind == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart/form-data needs a boundary in its Content-Type")
        upload = await _multipart(request, boundary)
    elif kind in _NOT_FILES or kind.startswith("text/"):
        return _unsupported(request, kind)
    else:
        upload = _raw(request)
    file_name = name or upload.name
    if not file_name:
        raise BadRequest(
            "name the file: ?name=part.gcode.3mf, a multipart filename, or a Content-Disposition "
            "filename"
        )
    # A file over the library's cap stops the read with a 413, which an HTTP client reads
    # while it is still sending (httpx does, 12 MB past a 1 MiB cap on loopback).
    entry = await services.library.add(
        upload.chunks,
        name=file_name,
        folder=folder if folder is not None else upload.folder or "",
        tags=(*(tag or ()), *upload.tags),
    )
    await _audit(services, principal, "library.add", entry)
    return _json(library_file_out(entry), status.HTTP_201_CREATED)


def _unsupported(request: Request, kind: str) -> Response:
    return problem_response(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"a {kind} body is not a file: send the .gcode.3mf itself (application/octet-stream) "
        "or as the 'file' part of multipart/form-data",
        instance=request.url.path,
    )


# ------------------------------------------------------------------------------ reading


@router.get("/files", response_model=Page[LibraryFileOut], summary="List library files")
async def list_route(
    principal: CanView,
    services: ServicesDep,
    page: PageParams,
    *,
    folder: Annotated[
        str | None, Query(max_length=255, description="Only this folder ('' the top).")
    ] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    search: Annotated[
        str | None, Query(min_length=1, max_length=255, description="Text in the name.")
    ] = None,
    model: Annotated[
        str | None, Query(min_length=1, max_length=40, description="Printer model name or code.")
    ] = None,
    sha256: Annotated[
        str | None, Query(pattern=SHA256_PATTERN, description="Only names of this content.")
    ] = None,
) -> Response:
    """Files by folder and name, filtered by folder, tag, name text, printer model or content."""
    async with services.database.session(readonly=True) as session:
        found = await list_files(
            session, folder=folder, tag=tag, search=search,
            printer_model=model_code(model) if model is not None else None,
            sha256=sha256, offset=page.offset, limit=page.limit,
        )  # fmt: skip
    body = Page[LibraryFileOut](
        items=[library_file_out(e) for e in found.items],
        total=found.total,
        offset=found.offset,
        limit=found.limit,
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/folders", response_model=Folders, summary="List folders")
async def folders_route(principal: CanView, services: ServicesDep) -> Response:
    """Every folder that holds files, and their parents."""
    return _json(Folders(folders=list(await services.library.folders())))


@router.get("/files/{file_id}", response_model=LibraryFileOut, summary="A library file")
async def get_route(file_id: FileIdPath, principal: CanView, services: ServicesDep) -> Response:
    """One file with its plates: time, filaments (type, colour, grams), objects."""
    return _json(library_file_out(await services.library.get(file_id)))


@router.get("/contents/{sha256}", response_model=FileContent, summary="A stored content")
async def content_route(sha256: Sha256Path, principal: CanView, services: ServicesDep) -> Response:
    """The stored content with this sha256 (404 when the library does not have it)."""
    return _json(content_out(await services.library.content(sha256.lower())))


@router.get(
    "/files/{file_id}/plates/{plate}/thumbnail",
    response_class=Response,
    responses={200: {"content": {PNG: {}}, "description": "The plate's PNG."}},
    summary="A plate's thumbnail",
)
async def file_thumbnail_route(
    request: Request,
    file_id: FileIdPath,
    plate: PlatePath,
    principal: CanView,
    services: ServicesDep,
) -> Response:
    """The plate's preview image as the slicer rendered it."""
    entry = await services.library.get(file_id)
    return await _thumbnail(request, services, entry.sha256, plate, REVALIDATE)


@router.get(
    "/contents/{sha256}/plates/{plate}/thumbnail",
    response_class=Response,
    responses={200: {"content": {PNG: {}}, "description": "The plate's PNG."}},
    summary="A plate's thumbnail, by content",
)
async def content_thumbnail_route(
    request: Request,
    sha256: Sha256Path,
    plate: PlatePath,
    principal: CanView,
    services: ServicesDep,
) -> Response:
    """The plate's preview image; cacheable for good, since the URL names the content."""
    return await _thumbnail(request, services, sha256.lower(), plate, IMMUTABLE)


async def _thumbnail(
    request: Request, services: Services, sha256: str, plate: int, cache: str
) -> Response:
    blob = await services.library.content(sha256)
    found = next((p for p in blob.metadata.plates if p.index == plate), None)
    if found is None:
        there = ", ".join(str(p.index) for p in blob.metadata.plates)
        raise NotFound(f"the file has no plate {plate}; its plates are: {there}")
    if found.thumbnail_path is None:
        raise NotFound(f"plate {plate} of the file has no thumbnail; the slicer did not add one")
    etag = f'"{blob.sha256[:32]}-{plate}"'
    headers = {"Cache-Control": cache, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    png = await services.library.thumbnail(blob.sha256, plate)
    return Response(png, media_type=PNG, headers=headers)


# ------------------------------------------------------------------------------ changes


@router.patch(
    "/files/{file_id}",
    response_model=LibraryFileOut,
    summary="Rename, move or tag a file",
    responses=problem_responses(409),
)
async def update_route(
    file_id: FileIdPath, body: FileChangesIn, principal: CanQueue, services: ServicesDep
) -> Response:
    """Change a file's name, folder or tags (one change, audited with it)."""
    changes = FileChanges(
        name=UNSET if body.name is None else body.name,
        folder=UNSET if body.folder is None else body.folder,
        tags=UNSET if body.tags is None else tuple(body.tags),
    )
    now = services.clock()
    async with services.database.session() as session:
        entry = await update_file(session, file_id, changes, now=now)
        await record_action(
            session,
            principal.actor,
            "library.update",
            details={**_details(entry), "changed": sorted(body.model_fields_set)},
            at=now,
        )
    return _json(library_file_out(entry))


@router.delete(
    "/files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a file",
    responses=problem_responses(409),
)
async def delete_route(file_id: FileIdPath, principal: CanQueue, services: ServicesDep) -> Response:
    """Delete a file; refused (409 file-in-use) while unfinished jobs need its content."""
    entry = await services.library.get(file_id)
    await services.library.delete(file_id)
    await _audit(services, principal, "library.delete", entry)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _details(entry: LibraryFileRecord) -> dict[str, object]:
    return {
        "file_id": entry.id,
        "name": entry.name,
        "folder": entry.folder,
        "sha256": entry.sha256,
        "size": entry.blob.size,
    }


async def _audit(
    services: Services, principal: Principal, action: str, entry: LibraryFileRecord
) -> None:
    await services.farm.audit(principal.actor, action, None, _details(entry))
