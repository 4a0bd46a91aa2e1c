"""Entry point of the `bambufarm` command: builds the Typer app and configures logging."""

import logging

import typer

from bambufarm import __version__
from bambufarm.cli import admin, printers, queue, serve, sim
from bambufarm.runtime import tune_asyncio_tls

app = typer.Typer(
    name="bambufarm",
    help="Self-hosted print-farm server for Bambu Lab printers.",
    no_args_is_help=True,
    add_completion=False,
)


serve.register(app)
admin.register(app)
sim.register(app)
printers.register(app)
queue.register(app)


@app.command()
def version() -> None:
    """Print the bambufarm version."""
    typer.echo(__version__)


def main() -> None:
    """Run the command line (console script `bambufarm`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # At DEBUG the websockets library logs handshake headers, Authorization included.
    logging.getLogger("websockets").setLevel(logging.INFO)
    # httpx logs every request at INFO: noise in front of a CLI command's own table.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    tune_asyncio_tls()
    app()
