"""`bambufarm printers list|add|import|remove|status` and `bambufarm pause|resume|stop PRINTER`.

A thin client of the HTTP API: every command is one or two requests to `--url` (default
`$BAMBUFARM_URL`, else http://127.0.0.1:8888), signed in with an API key (`--api-key`, default
`$BAMBUFARM_API_KEY`) or, with `--user NAME`, a username and a password asked for on the
terminal. A printer is named by its serial or by its (unique) name. Errors are the server's
problem details, printed as they are: they say what was wrong and what to do.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from bambufarm.simulator.manifest import Manifest, ManifestError

DEFAULT_URL: Final = "http://127.0.0.1:8888"
URL_ENV: Final = "BAMBUFARM_URL"
KEY_ENV: Final = "BAMBUFARM_API_KEY"
# Adding a printer tests its connection (up to ~10 s); an import tests many, 16 at a time.
TIMEOUT_S: Final = 120.0
PAGE: Final = 1000

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help=f"The server (default ${URL_ENV}, else {DEFAULT_URL})."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", help=f"An API key (default ${KEY_ENV}).", show_default=False),
]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Sign in as this user instead (the password is asked for)."),
]
PrinterArgument = Annotated[str, typer.Argument(help="Serial or name.")]

printers_app = typer.Typer(
    help="Printers of a running server: list, add, import, remove, status.",
    no_args_is_help=True,
)


class ApiClient:
    """An httpx client signed in to the server by API key or by a session."""

    def __init__(self, client: httpx.Client, csrf: str | None = None) -> None:
        self._client = client
        self._csrf = csrf

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON answer, or exit 1 with the server's explanation."""
        headers = dict(kwargs.pop("headers", {}))
        if self._csrf is not None:
            headers["X-CSRF-Token"] = self._csrf
        try:
            response = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as err:
            _fail(f"cannot reach {self._client.base_url}: {err}; is the server running?")
        if response.status_code >= 400:
            _fail(_problem_text(response))
        return response.json() if response.content else None

    def printer_serial(self, name_or_serial: str) -> str:
        """The serial of the printer with this serial or this (unique) name."""
        printers = self.all_printers()
        if any(p["serial"] == name_or_serial for p in printers):
            return name_or_serial
        named = [p for p in printers if p["name"].casefold() == name_or_serial.casefold()]
        if not named:
            _fail(
                f"no printer with serial or name {name_or_serial!r}; see: bambufarm printers list"
            )
        if len(named) > 1:
            serials = ", ".join(p["serial"] for p in named)
            _fail(f"{len(named)} printers are named {name_or_serial!r} ({serials}); give a serial")
        return str(named[0]["serial"])

    def all_printers(self, **filters: str) -> list[dict[str, Any]]:
        """Every printer, following the pages."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.call(
                "GET", "/api/v1/printers", params={**filters, "offset": len(items), "limit": PAGE}
            )
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["total"]:
                return items


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('title', 'error')} ({response.status_code}): {body['detail']}"
    return f"HTTP {response.status_code}: {response.text[:200]}"


@contextmanager
def api_client(url: str | None, api_key: str | None, user: str | None) -> Iterator[ApiClient]:
    """A client for the server at `url`, signed in with a key or as `user`."""
    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    key = api_key or os.environ.get(KEY_ENV)
    with httpx.Client(base_url=base, timeout=TIMEOUT_S) as client:
        if user is not None:
            password = typer.prompt(f"password for {user}", hide_input=True)
            signed_in = ApiClient(client)
            body = signed_in.call(
                "POST", "/api/v1/auth/login", json={"username": user, "password": password}
            )
            yield ApiClient(client, csrf=str(body["csrf_token"]))
            return
        if not key:
            _fail(f"give an API key (--api-key or ${KEY_ENV}) or sign in with --user NAME")
        client.headers["Authorization"] = f"Bearer {key}"
        yield ApiClient(client)


def _console() -> Console:
    # Wide enough for serials and hosts when stdout is not a terminal (pipes, tests).
    return Console(width=max(120, Console().width))


def _temperature(value: object, target: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    shown = f"{value:.0f}"
    return f"{shown}/{target:.0f}" if isinstance(target, int | float) and target else shown


def _job(printer: dict[str, Any]) -> str:
    job = printer["job"]
    state = str(job["gcode_state"])
    if job.get("progress") is not None and state in ("RUNNING", "PAUSE", "PREPARE"):
        left = job.get("remaining_minutes")
        rest = f", {left} min left" if left is not None else ""
        return f"{state} {job['progress']}%{rest}"
    return state


def _printer_table(printers: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(printers)} printer(s)")
    for column in ("serial", "name", "model", "host", "link", "job", "nozzle °C", "bed °C", "HMS"):
        table.add_column(column)
    for p in printers:
        temps = p["temperatures"]
        link = p["connection"]["state"]
        table.add_row(
            p["serial"], p["name"], p["model_name"], p["host"],
            link if p["enabled"] else "disabled", _job(p),
            _temperature(temps["nozzle"], temps["nozzle_target"]),
            _temperature(temps["bed"], temps["bed_target"]),
            str(p["hms_count"]) if p["hms_count"] else "",
        )  # fmt: skip
    return table


@printers_app.command("list")
def list_command(
    *,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
    state: Annotated[
        str | None, typer.Option(help="Only this link state (online, offline, ...).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (P1S, X1C, ...).")] = None,
    search: Annotated[str | None, typer.Option(help="In name, serial or host.")] = None,
) -> None:
    """The printers with their link, job and temperatures."""
    filters = {
        k: v for k, v in (("state", state), ("model", model), ("search", search)) if v is not None
    }
    with api_client(url, api_key, user) as api:
        printers = api.all_printers(**filters)
    _console().print(_printer_table(printers))


@printers_app.command("add")
def add_command(
    serial: Annotated[str, typer.Argument(help="The printer's serial number.")],
    *,
    host: Annotated[
        str | None, typer.Option(help="IP address; omit for a printer in the discovery list.")
    ] = None,
    access_code: Annotated[
        str | None,
        typer.Option(help="The LAN access code (asked for when omitted).", show_default=False),
    ] = None,
    name: Annotated[str, typer.Option(help="A name (default: the printer's own).")] = "",
    model: Annotated[str | None, typer.Option(help="Model (default: the printer says).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    ftps_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    camera_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    test: Annotated[bool, typer.Option(help="Test the connection before saving.")] = True,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """Add a printer: its connection is tested first and the reason shown if it fails."""
    code = access_code or typer.prompt(f"access code of {serial}", hide_input=True)
    body = {
        "serial": serial,
        "access_code": code,
        "host": host,
        "name": name,
        "model": model,
        "mqtt_port": mqtt_port,
        "ftps_port": ftps_port,
        "camera_port": camera_port,
    }
    body = {k: v for k, v in body.items() if v is not None}
    with api_client(url, api_key, user) as api:
        added = api.call("POST", "/api/v1/printers", params={"test": test}, json=body)
    _console().print(
        f"added {added['name']} ({added['serial']}, {added['model_name']}) at {added['host']}: "
        f"{added['connection']['state']}",
        highlight=False,
    )


@printers_app.command("import")
def import_command(
    manifest: Annotated[
        Path, typer.Argument(help="A simulator manifest (bambufarm sim --manifest).")
    ],
    test: Annotated[bool, typer.Option(help="Test each connection before saving.")] = True,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """Add every printer of a simulator manifest; each is tested before it is saved."""
    try:
        parsed = Manifest.read(manifest)
    except ManifestError as err:
        _fail(str(err))
    body = orjson.loads(parsed.to_json())
    with api_client(url, api_key, user) as api:
        report = api.call("POST", "/api/v1/printers/import", params={"test": test}, json=body)
    table = Table(
        title=f"{report['added']} added, {report['existing']} already there, "
        f"{report['failed']} failed"
    )
    for column in ("serial", "outcome", "detail"):
        table.add_column(column)
    for item in report["items"]:
        table.add_row(item["serial"], item["outcome"], item["detail"])
    _console().print(table)
    if report["failed"]:
        raise typer.Exit(1)


@printers_app.command("remove")
def remove_command(
    printer: PrinterArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """Remove a printer (its history stays)."""
    with api_client(url, api_key, user) as api:
        serial = api.printer_serial(printer)
        if not yes:
            typer.confirm(f"remove printer {serial}?", abort=True)
        api.call("DELETE", f"/api/v1/printers/{serial}")
    typer.echo(f"removed {serial}")


@printers_app.command("status")
def status_command(
    printer: PrinterArgument,
    url: UrlOption = None,
    api_key: KeyOption = None,
    user: UserOption = None,
) -> None:
    """One printer's link, job, temperatures, AMS and HMS."""
    with api_client(url, api_key, user) as api:
        serial = api.printer_serial(printer)
        info = api.call("GET", f"/api/v1/printers/{serial}")
        status = api.call("GET", f"/api/v1/printers/{serial}/status")
    _console().print(_status_table(info, status))


def _status_table(info: dict[str, Any], status: dict[str, Any]) -> Table:
    job, temps, link = status["job"], status["temperatures"], status["connection"]
    table = Table(
        title=f"{info['name']} ({info['serial']}, {info['model_name']})", show_header=False
    )
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("address", f"{info['host']}:{info['mqtt_port']}"),
        ("link", f"{link['state']}: {link['reason']}"),
        ("job", _job(info) + (f" — {job['subtask_name'] or job['file']}" if job["file"] else "")),
        ("layer", f"{job['layer']}/{job['total_layers']}" if job["total_layers"] else "-"),
        ("nozzle °C", _temperature(temps["nozzle"], temps["nozzle_target"])),
        ("bed °C", _temperature(temps["bed"], temps["bed_target"])),
        ("chamber °C", _temperature(temps["chamber"], temps["chamber_target"])),
        ("firmware", status["firmware"]["version"] or "-"),
        ("developer mode", {True: "on", False: "off"}.get(status["developer_mode"], "-")),
    ]
    for unit in status["ams"]["units"]:
        trays = ", ".join(
            f"{t['id'] + 1}: {t['type'] or 'empty'}"
            + (f" {t['remain']}%" if t["remain"] >= 0 else "")
            for t in unit["trays"]
        )
        rows.append((f"AMS {unit['id'] + 1}", trays or "-"))
    rows.extend(("HMS", f"{h['code']} {h['severity']}: {h['summary']}") for h in status["hms"])
    for what, value in rows:
        table.add_row(what, value)
    return table


# The print controls without arguments: command (and API path) name, and its help.
PRINT_CONTROLS: Final = (
    ("pause", "Pause a printer's print."),
    ("resume", "Resume a paused print."),
    ("stop", "Stop (cancel) a printer's print."),
)


def _print_control(name: str, help_text: str) -> Callable[..., None]:
    """The CLI command `bambufarm <name> PRINTER`: POST /api/v1/printers/{serial}/<name>."""

    def command(
        printer: PrinterArgument,
        url: UrlOption = None,
        api_key: KeyOption = None,
        user: UserOption = None,
    ) -> None:
        with api_client(url, api_key, user) as api:
            serial = api.printer_serial(printer)
            outcome = api.call("POST", f"/api/v1/printers/{serial}/{name}")
        typer.echo(f"{name} {serial}: {outcome['status']} ({outcome['reason']})")

    command.__name__ = f"{name}_command"
    command.__doc__ = help_text
    return command


def register(app: typer.Typer) -> None:
    """Add `printers` and the `pause`, `resume` and `stop` commands to the CLI."""
    app.add_typer(printers_app, name="printers")
    for name, help_text in PRINT_CONTROLS:
        app.command(name)(_print_control(name, help_text))
