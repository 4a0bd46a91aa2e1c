"""`bambufarm serve`: the server — services, the HTTP API, until SIGINT/SIGTERM.

On the very first start (no users yet) it creates the `admin` account and prints its random
password once, on standard output: never through logging, so it reaches the operator's
console but no log file. SIGINT or SIGTERM stops gracefully (running requests finish, then the
services stop and the database closes); a second signal stops without waiting.
"""

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from bambufarm.api.app import create_app
from bambufarm.api.server import HttpServer, TlsFiles
from bambufarm.app import Services, open_services
from bambufarm.auth.bootstrap import ADMIN_USERNAME
from bambufarm.settings import Settings, SettingsError, load_settings
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (default: $BAMBUFARM_CONFIG, else none).",
        dir_okay=False,
    ),
]


def settings_or_exit(config: Path | None, **overrides: object) -> Settings:
    """Settings from env + file with CLI overrides; a readable error and exit 2 if invalid."""
    try:
        settings = load_settings(config)
    except SettingsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    changes = {key: value for key, value in overrides.items() if value is not None}
    return settings.model_copy(update=changes) if changes else settings


def show_first_password(console: Console, password: str) -> None:
    """Print the first admin's credentials, once, where only the operator sees them."""
    console.print(
        Panel(
            f"username: [bold]{ADMIN_USERNAME}[/bold]\npassword: [bold]{password}[/bold]\n\n"
            "This password is shown once and stored only as a hash. Sign in and change it; if "
            "it is lost, run: bambufarm admin reset-password admin",
            title="first start: admin account created",
        )
    )


async def serve(settings: Settings, console: Console) -> None:
    """Run the server until a signal asks it to stop."""
    services = await open_services(settings)
    try:
        password = await services.first_admin_password()
        if password is not None:
            show_first_password(console, password)
        await services.start()
        await _serve_http(services, settings, console)
    finally:
        await services.stop()


async def _serve_http(services: Services, settings: Settings, console: Console) -> None:
    tls = (
        TlsFiles(settings.tls_cert, settings.tls_key)
        if settings.tls_cert and settings.tls_key
        else None
    )
    server = HttpServer(create_app(services), host=settings.host, port=settings.port, tls=tls)
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            server.force_stop()
        stop.set()

    # Installed before the URL is printed: a signal sent as soon as the server says where it
    # listens must stop it gracefully, not interrupt it (exit 130).
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.start()
        # What start-up built (modules, the app, every stored printer's state) leaves the
        # collector's walk, as in the demo: at 1,000 printers a full collection otherwise
        # pauses the loop for 300-400 ms (bench/api.py), which WebSocket clients feel.
        gc.freeze()
        # soft_wrap: the URL stays on one line, whatever the console width, to be copied.
        console.print(
            f"bambufarm {services.version} serving on {server.url}/ "
            f"(API docs: {server.url}/api/docs)",
            soft_wrap=True,
            highlight=False,
        )
        await server.run_until(stop)
        console.print("stopping")
    finally:
        # The handlers stay until the server is down: a second signal cuts the wait short.
        try:
            # Camera streams never end by themselves: closed first, they finish their
            # responses, so the HTTP server's graceful stop does not wait out its timeout.
            await services.camera.close()
            await server.stop()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the CLI."""

    @app.command("serve")
    def serve_command(
        config: ConfigOption = None,
        host: Annotated[
            str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(min=0, max=65535, help="Port (default 8888; 0 picks a free one)."),
        ] = None,
        tls_cert: Annotated[
            Path | None,
            typer.Option(
                help="PEM certificate chain: serve HTTPS (with --tls-key).", dir_okay=False
            ),
        ] = None,
        tls_key: Annotated[
            Path | None,
            typer.Option(help="PEM private key of --tls-cert.", dir_okay=False),
        ] = None,
    ) -> None:
        """Run the print-farm server (API, web UI, fleet, queue) until Ctrl-C."""
        settings = settings_or_exit(
            config,
            host=host,
            port=port,
            tls_cert=tls_cert.resolve() if tls_cert else None,
            tls_key=tls_key.resolve() if tls_key else None,
        )
        if (settings.tls_cert is None) != (settings.tls_key is None):
            typer.echo("error: --tls-cert and --tls-key go together (or neither)", err=True)
            raise typer.Exit(2)
        logging.getLogger().setLevel(settings.log_level.value.upper())
        console = Console()
        try:
            asyncio.run(serve(settings, console))
        except StorageError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        except OSError as err:
            # Binding the port or reading the TLS files.
            typer.echo(f"error: cannot serve on {settings.host}:{settings.port}: {err}", err=True)
            raise typer.Exit(1) from None
