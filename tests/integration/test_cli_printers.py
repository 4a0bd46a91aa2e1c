"""`bambufarm printers ...`, `pause`, `resume`, `stop` against the real server and simulator.

The CLI is a blocking HTTP client; it runs on a worker thread (`asyncio.to_thread`) so the
server, in this test's event loop, keeps serving it.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bambufarm.cli.main import app
from bambufarm.protocol.state import GcodeState
from bambufarm.simulator.demo import demo_job, start_job
from tests.support.farm import FarmApi, running_farm_api

pytest_plugins = ["tests.support.postgres"]

ADMIN_PASSWORD = "a fresh admin passphrase"  # what tests.support.farm changes it to


@pytest.fixture
async def farm_api(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """The server and a simulated P1S and X1C (not yet added), on each database."""
    async with running_farm_api(database_url, tmp_path) as running:
        yield running


async def _cli(
    farm_api: FarmApi, args: Sequence[str], *, key: str | None = "admin", stdin: str = ""
) -> Result:
    env = {"BAMBUFARM_URL": farm_api.api.url, "COLUMNS": "200"}
    if key == "admin":
        env["BAMBUFARM_API_KEY"] = farm_api.admin_key
    elif key is not None:
        env["BAMBUFARM_API_KEY"] = key
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env, input=stdin)


async def test_import_list_status_and_remove(farm_api: FarmApi, tmp_path: Path) -> None:
    manifest = tmp_path / "sim.json"
    farm_api.manifest.write(manifest)
    imported = await _cli(farm_api, ["printers", "import", str(manifest)])
    assert imported.exit_code == 0, imported.output
    assert "2 added, 0 already there, 0 failed" in imported.output
    again = await _cli(farm_api, ["printers", "import", str(manifest)])
    assert "0 added, 2 already there" in again.output
    await farm_api.until_online()

    listed = await _cli(farm_api, ["printers", "list"])
    assert listed.exit_code == 0, listed.output
    for printer in farm_api.manifest.printers:
        assert printer.serial in listed.output
        assert printer.access_code not in listed.output
    assert "online" in listed.output
    only_x1c = await _cli(farm_api, ["printers", "list", "--model", "X1C"])
    assert farm_api.printer(1).serial in only_x1c.output
    assert farm_api.printer(0).serial not in only_x1c.output

    # By name: "P1S #1" is the simulator's name for its first P1S.
    status = await _cli(farm_api, ["printers", "status", farm_api.printer(0).name])
    assert status.exit_code == 0, status.output
    assert farm_api.printer(0).serial in status.output
    assert "online: connected" in status.output
    assert "firmware" in status.output

    removed = await _cli(farm_api, ["printers", "remove", farm_api.printer(0).serial, "--yes"])
    assert removed.exit_code == 0, removed.output
    assert farm_api.printer(0).serial not in farm_api.farm
    unknown = await _cli(farm_api, ["printers", "status", "nonesuch"])
    assert unknown.exit_code == 1
    assert "no printer with serial or name 'nonesuch'" in unknown.output


async def test_add_shows_why_a_connection_failed(farm_api: FarmApi) -> None:
    printer = farm_api.printer(0)
    common = ["--host", printer.host, "--mqtt-port", str(printer.ports.mqtt)]
    wrong = await _cli(
        farm_api, ["printers", "add", printer.serial, *common, "--access-code", "11112222"]
    )
    assert wrong.exit_code == 1
    assert "access code" in wrong.output
    assert "(409)" in wrong.output
    # Without --access-code it is asked for, not echoed.
    added = await _cli(
        farm_api,
        ["printers", "add", printer.serial, *common, "--ftps-port", str(printer.ports.ftps)],
        stdin=printer.access_code + "\n",
    )
    assert added.exit_code == 0, added.output
    assert f"added {printer.name} ({printer.serial}, P1S)" in added.output
    assert printer.access_code not in added.output


async def test_pause_resume_stop_by_name(farm_api: FarmApi) -> None:
    await farm_api.add()
    printer = farm_api.printer(0)
    node = farm_api.sim.node(printer.serial)
    start_job(node, "cube.gcode.3mf", demo_job(node.spec.identity.model, 2.0), task_id=99)
    await farm_api.until(
        lambda: (
            farm_api.farm.printer(printer.serial).snapshot.state.job.gcode_state
            in (GcodeState.PREPARE, GcodeState.RUNNING)
        ),
        "the job to start",
    )
    for command in ("pause", "resume", "stop"):
        result = await _cli(farm_api, [command, printer.name])
        assert result.exit_code == 0, result.output
        assert f"{command} {printer.serial}: ok" in result.output
    refused = await _cli(farm_api, ["resume", printer.serial])
    assert refused.exit_code == 1
    assert "not paused" in refused.output


async def test_credentials_a_session_instead_of_a_key_and_an_unreachable_server(
    farm_api: FarmApi,
) -> None:
    no_key = await _cli(farm_api, ["printers", "list"], key=None)
    assert no_key.exit_code == 1
    assert "--api-key" in no_key.output
    bad_key = await _cli(farm_api, ["printers", "list"], key="bf_0123456789abcdef_wrong")
    assert bad_key.exit_code == 1
    assert "(401)" in bad_key.output
    signed_in = await _cli(
        farm_api, ["printers", "list", "--user", "admin"], key=None, stdin=ADMIN_PASSWORD + "\n"
    )
    assert signed_in.exit_code == 0, signed_in.output
    assert "0 printer(s)" in signed_in.output
    nobody = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["printers", "list", "--url", "http://127.0.0.1:1", "--api-key", "bf_x_y"],
    )
    assert nobody.exit_code == 1
    assert "cannot reach http://127.0.0.1:1" in nobody.output
