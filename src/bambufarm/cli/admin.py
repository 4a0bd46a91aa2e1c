"""`bambufarm admin …`: administration done on the database directly, for when the API cannot
help — today `reset-password` for a forgotten or lost admin password. Safe while the server
runs (SQLite queues the write; PostgreSQL just commits it)."""

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from bambufarm.auth.bootstrap import reset_password
from bambufarm.auth.passwords import Passwords
from bambufarm.cli.serve import ConfigOption, settings_or_exit
from bambufarm.settings import Settings
from bambufarm.storage.db import open_database
from bambufarm.storage.errors import StorageError

# How the audit log names a reset made here: by whoever could run commands on the server.
CLI_ACTOR = "command line"

admin_app = typer.Typer(
    name="admin",
    help="Administration on the database directly (works while the server runs).",
    no_args_is_help=True,
)


async def reset(settings: Settings, username: str) -> str:
    """Give `username` a new random password (re-enabling the account); return it."""
    database = await open_database(settings.database_url)
    try:
        async with database.session() as session:
            return await reset_password(session, Passwords(), username, actor=CLI_ACTOR)
    finally:
        await database.aclose()


@admin_app.command("reset-password")
def reset_password_command(
    username: Annotated[str, typer.Argument(help="The account, e.g. admin.")],
    config: ConfigOption = None,
) -> None:
    """Set a new random password (shown once), re-enable the account, end its sessions."""
    settings = settings_or_exit(config)
    try:
        password = asyncio.run(reset(settings, username))
    except StorageError as err:
        # Includes "no user named ..." and a malformed name.
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    Console().print(
        Panel(
            f"username: [bold]{username.strip().lower()}[/bold]\npassword: [bold]{password}[/bold]"
            "\n\nShown once. Sign in and change it; every session of the account was ended.",
            title="password reset",
        )
    )


def register(app: typer.Typer) -> None:
    """Add the `admin` command group to the CLI."""
    app.add_typer(admin_app)
