"""`bambufarm files add|list`, `bambufarm print FILE`, `bambufarm queue [JOB]` and
`bambufarm clear PRINTER`: the print queue from the terminal, through the HTTP API.

Signed in like `bambufarm printers` (`--url`, `--api-key` or `--user`). Uploads stream the file
from disk with a progress bar, never holding it in memory. `print` looks the file up by its
sha256 first and uploads it only when the library does not have it, then queues the copies.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn
from urllib.parse import quote

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from bambufarm.cli.printers import (
    ApiClient,
    KeyOption,
    PrinterArgument,
    UrlOption,
    UserOption,
    api_client,
)

# Reads of 256 KiB move the bar smoothly (a 30 MB file in ~120 steps) at little cost.
CHUNK_BYTES: Final = 256 * 1024
PAGE: Final = 1000
# What `bambufarm queue` shows without --all: every job not yet done, failed or cancelled.
UNFINISHED: Final = (
    "queued", "waiting", "uploading", "starting", "printing", "paused", "awaiting_clear",
)  # fmt: skip

files_app = typer.Typer(help="The print library: add and list sliced files.", no_args_is_help=True)

FolderOption = Annotated[str, typer.Option(help="Library folder ('/'-separated).")]
TagOption = Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat for more).")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _console() -> Console:
    # Wide enough for names and reasons when stdout is not a terminal (pipes, tests).
    return Console(width=max(140, Console().width))


def _checked_file(path: Path) -> int:
    """The size of a readable local file, or exit saying what is wrong with it."""
    try:
        size = path.stat().st_size
    except OSError as err:
        _fail(f"cannot read {path}: {err.strerror or err}")
    if not path.is_file():
        _fail(f"{path} is not a file")
    return size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            progress.advance(task, len(chunk))
            yield chunk


def upload(
    api: ApiClient, path: Path, *, name: str, folder: str = "", tags: list[str] | None = None
) -> dict[str, Any]:
    """Stream `path` into the library with a progress bar; the stored file as the API says."""
    size = _checked_file(path)
    params: dict[str, Any] = {"name": name, "folder": folder, "tag": tags or []}
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"uploading {name}", total=size)
        stored: dict[str, Any] = api.call(
            "POST",
            "/api/v1/library/files",
            params=params,
            content=_chunks(path, progress, task),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
    return stored


def _describe(file: dict[str, Any]) -> str:
    plates = file["plate_count"]
    minutes = (file["prediction_s"] or 0) // 60
    grams = file["weight_g"]
    weight = f", {grams:.0f} g" if grams else ""
    where = f"{file['folder']}/" if file["folder"] else ""
    return (
        f"{where}{file['name']} (file {file['id']}): {file['model_name']}, {plates} plate"
        f"{'s' if plates != 1 else ''}, {minutes // 60} h {minutes % 60:02d} min{weight}"
    )


@files_app.command("add")
def add_command(
    file: Annotated[Path, typer.Argument(help="A sliced .gcode.3mf file.")],
    *,
    name: Annotated[str | None, typer.Option(help="Name in the library (default: file's).")] = None,
    folder: FolderOption = "",
    tag: TagOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """Upload a sliced file to the library (refused with the reason if it is not printable)."""
    with api_client(url, api_key, user) as api:
        stored = upload(api, file, name=name or file.name, folder=folder, tags=tag)
    _console().print(f"added {_describe(stored)}", highlight=False)


@files_app.command("list")
def list_command(
    *,
    folder: Annotated[str | None, typer.Option(help="Only this folder.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only files with this tag.")] = None,
    search: Annotated[str | None, typer.Option(help="Text in the name.")] = None,
    model: Annotated[str | None, typer.Option(help="Only files for this model.")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """The library's files with their model, plates, time and filament."""
    filters = {
        k: v
        for k, v in (("folder", folder), ("tag", tag), ("search", search), ("model", model))
        if v is not None
    }
    with api_client(url, api_key, user) as api:
        page = api.call("GET", "/api/v1/library/files", params={**filters, "limit": PAGE})
    table = Table(title=f"{page['total']} file(s)")
    for column in ("id", "folder", "name", "model", "plates", "time", "filament", "tags"):
        table.add_column(column)
    for f in page["items"]:
        filaments = {
            f"{x['type'] or '?'} {x['color'] or ''}".strip()
            for plate in f["plates"]
            for x in plate["filaments"]
        }
        minutes = (f["prediction_s"] or 0) // 60
        table.add_row(
            str(f["id"]), f["folder"], f["name"], f["model_name"], str(f["plate_count"]),
            f"{minutes // 60}:{minutes % 60:02d}", ", ".join(sorted(filaments)),
            ", ".join(f["tags"]),
        )  # fmt: skip
    _console().print(table)


def _library_file(api: ApiClient, path: Path) -> tuple[str, bool]:
    """The file's sha256, uploading it unless the library has its content; and whether it did."""
    _checked_file(path)
    sha256 = _sha256(path)
    found = api.call("GET", "/api/v1/library/files", params={"sha256": sha256, "limit": 1})
    if found["total"]:
        return sha256, False
    stored = upload(api, path, name=path.name)
    return str(stored["sha256"]), True


def _target_text(target: dict[str, Any]) -> str:
    if target["printer"]:
        return str(target["printer"])
    if target["models"]:
        return "any " + " or ".join(target["model_names"])
    return "any"


def _print_command(
    file: Path,
    *,
    plate: int,
    copies: int,
    printer: str | None,
    model: list[str] | None,
    priority: int,
    api: ApiClient,
) -> dict[str, Any]:
    if printer is not None and model:
        _fail("give --printer or --model, not both")
    target: dict[str, Any] = {}
    if printer is not None:
        target["printer"] = api.printer_serial(printer)
    elif model:
        target["models"] = model
    sha256, uploaded = _library_file(api, file)
    if uploaded:
        typer.echo(f"uploaded {file.name}", err=True)
    body = {
        "sha256": sha256, "name": file.name, "plate": plate, "copies": copies,
        "priority": priority, "target": target,
    }  # fmt: skip
    queued: dict[str, Any] = api.call("POST", "/api/v1/jobs", json=body)
    return queued


def _job_progress(job: dict[str, Any]) -> str:
    state, progress = job["state"], job["progress"]
    if progress is None:
        return ""
    if state == "uploading":
        return f"upload {progress}%"
    text = f"{progress}%"
    if job["layer"] is not None:
        text += f" L{job['layer']}"
    if job["remaining_s"] is not None:
        text += f", {job['remaining_s'] // 60} min left"
    return text


def _jobs_table(jobs: list[dict[str, Any]], total: int) -> Table:
    table = Table(title=f"{total} job(s)")
    for column in ("id", "name", "copy", "state", "target", "printer", "progress", "reason"):
        table.add_column(column, overflow="fold")
    for j in jobs:
        table.add_row(
            str(j["id"]), f"{j['name']} (plate {j['plate']})", f"{j['copy_index']}/{j['copies']}",
            j["state"], _target_text(j["target"]), j["printer"] or "", _job_progress(j),
            j["reason"] or "",
        )  # fmt: skip
    return table


def _job_detail(job: dict[str, Any]) -> Table:
    table = Table(
        title=f"job {job['id']}: {job['name']} (plate {job['plate']}), {job['state']}",
        show_header=bool(job["waiting_reasons"]),
    )
    table.add_column("printer")
    table.add_column("why not")
    table.add_column("detail", overflow="fold")
    for reason in job["waiting_reasons"]:
        table.add_row(reason["printer"], reason["reason"], reason["detail"])
    if not job["waiting_reasons"]:
        table.add_row("target", _target_text(job["target"]), "")
        table.add_row("printer", job["printer"] or "-", _job_progress(job))
        table.add_row("reason", job["reason"] or "-", "")
    return table


def _queue_command(
    api: ApiClient, job: int | None, states: list[str] | None, show_all: bool
) -> Table:
    if job is not None:
        return _job_detail(api.call("GET", f"/api/v1/jobs/{job}"))
    wanted = states or ([] if show_all else list(UNFINISHED))
    page = api.call(
        "GET",
        "/api/v1/jobs",
        params={"state": wanted, "limit": PAGE, "order": "newest" if show_all else "queue"},
    )
    return _jobs_table(page["items"], page["total"])


def register(app: typer.Typer) -> None:
    """Add `files`, `print`, `queue` and `clear` to the CLI."""
    app.add_typer(files_app, name="files")

    @app.command("print")
    def print_command(
        file: Annotated[Path, typer.Argument(help="A sliced .gcode.3mf file.")],
        *,
        plate: Annotated[int, typer.Option(min=1, help="The plate to print.")] = 1,
        copies: Annotated[int, typer.Option(min=1, help="How many copies (one job each).")] = 1,
        printer: Annotated[
            str | None, typer.Option(help="Only this printer (serial or name).")
        ] = None,
        model: Annotated[
            list[str] | None, typer.Option(help="Any printer of this model (repeat for more).")
        ] = None,
        priority: Annotated[int, typer.Option(help="Higher prints first.")] = 0,
        url: UrlOption = None,
        api_key: KeyOption = None,
        user: UserOption = None,
    ) -> None:
        """Queue copies of a sliced file (uploaded first unless the library has it)."""
        with api_client(url, api_key, user) as api:
            queued = _print_command(
                file, plate=plate, copies=copies, printer=printer, model=model,
                priority=priority, api=api,
            )  # fmt: skip
        jobs = queued["jobs"]
        ids = f"job {jobs[0]['id']}" if len(jobs) == 1 else f"jobs {jobs[0]['id']}-{jobs[-1]['id']}"
        _console().print(
            f"queued {len(jobs)} cop{'y' if len(jobs) == 1 else 'ies'} of {file.name} "
            f"(plate {plate}) on {_target_text(jobs[0]['target'])}: {ids}",
            highlight=False,
        )

    @app.command("queue")
    def queue_command(
        job: Annotated[int | None, typer.Argument(help="Show this job and why it waits.")] = None,
        *,
        state: Annotated[
            list[str] | None, typer.Option(help="Only jobs in this state (repeat for more).")
        ] = None,
        show_all: Annotated[
            bool, typer.Option("--all", help="Finished jobs too, newest first.")
        ] = False,
        url: UrlOption = None,
        api_key: KeyOption = None,
        user: UserOption = None,
    ) -> None:
        """The queue: state, target, printer, progress and why each job waits."""
        with api_client(url, api_key, user) as api:
            table = _queue_command(api, job, state, show_all)
        _console().print(table)

    @app.command("clear")
    def clear_command(
        printer: PrinterArgument,
        url: UrlOption = None,
        api_key: KeyOption = None,
        user: UserOption = None,
    ) -> None:
        """Confirm a printer's plate is clear, so it takes the next job."""
        with api_client(url, api_key, user) as api:
            serial = api.printer_serial(printer)
            cleared = api.call("POST", f"/api/v1/printers/{quote(serial)}/plate/clear")
        done = [str(j["id"]) for j in cleared["completed_jobs"]]
        typer.echo(
            f"plate of {serial} cleared" + (f"; job(s) {', '.join(done)} done" if done else "")
        )
