"""`/api/v1/printers/{serial}/files`: the printer's storage over FTPS — list, download, delete.

Paths are query parameters (`?path=/cache/job.gcode.3mf`), confined to the printer's storage:
`..` and control characters are refused. Listing and downloading need `view`; deleting is a
control action (`control`), audited like a command. FTPS failures answer with what went wrong:
the access code (409), a missing file (404), a full card, or a broken transfer (502).
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from bambufarm.api.deps import CanControl, CanView, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN, FileList, file_out
from bambufarm.api.schemas import problem_responses
from bambufarm.farm.files import MAX_PATH, remote_path

router = APIRouter(
    prefix="/api/v1/printers/{serial}/files",
    tags=["printer files"],
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
DirQuery = Annotated[
    str, Query(max_length=MAX_PATH, description="A directory of the printer's storage.")
]
FileQuery = Annotated[
    str,
    Query(min_length=1, max_length=MAX_PATH, description="A file, e.g. /cache/job.gcode.3mf."),
]


@router.get("", response_model=FileList, summary="List a printer directory")
async def list_route(
    serial: SerialPath, principal: CanView, services: ServicesDep, path: DirQuery = "/"
) -> Response:
    """The entries of a directory on the printer's storage, directories first."""
    farm = services.farm
    farm.printer(serial)
    directory = remote_path(path)
    entries = await farm.files.list(serial, directory)
    body = FileList(serial=serial, path=directory, items=[file_out(e) for e in entries])
    return Response(body.model_dump_json(), media_type="application/json")


@router.get(
    "/download",
    response_class=FileResponse,
    summary="Download a file from a printer",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file."}},
)
async def download_route(
    serial: SerialPath, principal: CanView, services: ServicesDep, path: FileQuery
) -> FileResponse:
    """The file's bytes, as an attachment named after it."""
    farm = services.farm
    farm.printer(serial)
    remote = remote_path(path, allow_root=False)
    local = await farm.files.download(serial, remote)
    name = remote.rsplit("/", 1)[-1]
    return FileResponse(
        local,
        media_type="application/octet-stream",
        filename=name,
        background=BackgroundTask(local.unlink, missing_ok=True),
    )


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a file on a printer")
async def delete_route(
    serial: SerialPath, principal: CanControl, services: ServicesDep, path: FileQuery
) -> Response:
    """Delete one file from the printer's storage (audited)."""
    farm = services.farm
    farm.printer(serial)
    remote = remote_path(path, allow_root=False)
    deleted = await farm.files.delete(serial, remote)
    await farm.audit(principal.actor, "printer.file_delete", serial, {"path": deleted})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
