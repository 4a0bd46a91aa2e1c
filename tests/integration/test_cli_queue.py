"""`bambufarm files add|list`, `print`, `queue` and `clear` against the real server and
simulated printers, on SQLite and PostgreSQL.

The CLI is a blocking HTTP client; it runs on a worker thread (`asyncio.to_thread`) so the
server, in this test's event loop, keeps serving it.
"""

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bambufarm.cli.main import app
from bambufarm.jobs.model import JobState
from tests.support.farm import FarmApi
from tests.support.queue_api import X1C, queue_farm_api, sliced
from tests.support.queue_harness import set_tray
from tests.support.threemf_factory import build_gcode_3mf

pytest_plugins = ["tests.support.postgres"]

WAIT = 60.0  # prints take ~2 s at the simulator's time scale; a loaded machine is slower


@pytest.fixture
async def farm(database_url: str, tmp_path: Path) -> AsyncIterator[FarmApi]:
    """P1S, P1S, X1C, P1S added to the server; the last P1S has red PLA instead of white."""
    async with queue_farm_api(
        database_url, tmp_path / "farm", models=("P1S", "P1S", "X1C", "P1S")
    ) as farm_api:
        red = farm_api.printer(3).serial
        set_tray(farm_api.sim, red, tray_color="FF0000FF")

        def seen() -> bool:
            trays = farm_api.farm.printer(red).snapshot.state.ams.units[0].trays
            return trays[0].color == "FF0000FF"

        await farm_api.until(seen, "the server seeing the red spool")
        yield farm_api


async def _cli(farm: FarmApi, args: Sequence[str]) -> Result:
    env = {
        "BAMBUFARM_URL": farm.api.url,
        "BAMBUFARM_API_KEY": farm.admin_key,
        "COLUMNS": "200",
    }
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def _states(farm: FarmApi, ids: Sequence[int]) -> list[JobState]:
    return [(await farm.services.queue.get(i)).state for i in ids]


async def _until_states(farm: FarmApi, ids: Sequence[int], done: int, what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while True:
                if (await _states(farm, ids)).count(JobState.AWAITING_CLEAR) >= done:
                    return
                # The database has no change notification for tests: look every 100 ms.
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {await _states(farm, ids)}") from None


async def test_files_add_and_list(farm: FarmApi, tmp_path: Path) -> None:
    part = tmp_path / "bracket.gcode.3mf"
    part.write_bytes(sliced(grams=21.0, prediction_s=5400))
    added = await _cli(farm, ["files", "add", str(part), "--folder", "brackets", "--tag", "pla"])
    assert added.exit_code == 0, added.output
    assert "added brackets/bracket.gcode.3mf (file 1): P1S, 1 plate, 1 h 30 min, 21 g" in (
        added.output
    )
    lid = tmp_path / "lid.gcode.3mf"
    lid.write_bytes(sliced(model=X1C, color="#00FF00"))
    named = await _cli(farm, ["files", "add", str(lid), "--name", "lid v2.gcode.3mf"])
    assert named.exit_code == 0, named.output

    listed = await _cli(farm, ["files", "list"])
    assert listed.exit_code == 0, listed.output
    assert "2 file(s)" in listed.output
    assert "bracket.gcode.3mf" in listed.output
    assert "lid v2.gcode.3mf" in listed.output
    assert "PLA #00FF00" in listed.output
    only_x1c = await _cli(farm, ["files", "list", "--model", "X1C"])
    assert "1 file(s)" in only_x1c.output
    assert "bracket" not in only_x1c.output


async def test_refused_and_missing_files_say_why(farm: FarmApi, tmp_path: Path) -> None:
    project = tmp_path / "project.3mf"
    project.write_bytes(build_gcode_3mf(sliced=False))
    refused = await _cli(farm, ["files", "add", str(project)])
    assert refused.exit_code == 1
    assert "(422)" in refused.output
    assert "slice" in refused.output
    missing = await _cli(farm, ["print", str(tmp_path / "nope.gcode.3mf")])
    assert missing.exit_code == 1
    assert "cannot read" in missing.output
    both = await _cli(farm, ["print", str(project), "--printer", "x", "--model", "P1S"])
    assert both.exit_code == 1
    assert "not both" in both.output
    assert (await farm.services.library.folders()) == ()


async def test_three_copies_on_any_p1s_with_white_pla_from_the_cli(
    farm: FarmApi, tmp_path: Path
) -> None:
    p1s_a, p1s_b, x1c, red = (farm.printer(i).serial for i in range(4))
    part = tmp_path / "bracket.gcode.3mf"
    part.write_bytes(sliced(color="#FFFFFF"))
    printed = await _cli(farm, ["print", str(part), "--copies", "3", "--model", "P1S"])
    assert printed.exit_code == 0, printed.output
    assert "uploaded bracket.gcode.3mf" in printed.output
    match = re.search(
        r"queued 3 copies of bracket.gcode.3mf \(plate 1\) on any P1S: jobs (\d+)-(\d+)",
        printed.output,
    )
    assert match is not None, printed.output
    ids = list(range(int(match[1]), int(match[2]) + 1))
    assert len(ids) == 3

    await _until_states(farm, ids, 2, "two copies printed")
    states = await _states(farm, ids)
    third = ids[states.index(next(s for s in states if s is not JobState.AWAITING_CLEAR))]
    holders = {(await farm.services.queue.get(i)).printer for i in ids if i != third}
    assert holders == {p1s_a, p1s_b}

    table = await _cli(farm, ["queue"])
    assert table.exit_code == 0, table.output
    assert "3 job(s)" in table.output
    assert table.output.count("awaiting_clear") == 2
    assert "any P1S" in table.output
    reasons = await _cli(farm, ["queue", str(third)])
    assert reasons.exit_code == 0, reasons.output
    for serial, why in ((x1c, "not_targeted"), (red, "missing_filament")):
        assert re.search(rf"{serial}\s+│\s+{why}", reasons.output), reasons.output

    # The same file again: found by its hash, not uploaded twice.
    again = await _cli(farm, ["print", str(part), "--printer", farm.printer(0).name])
    assert again.exit_code == 0, again.output
    assert "uploaded" not in again.output
    assert f"on {p1s_a}" in again.output
    listed = await farm.services.library.content(
        (await farm.services.queue.get(ids[0])).file_sha256 or ""
    )
    assert listed.size == part.stat().st_size

    # Clearing a plate by the printer's name completes its job and frees it for the third copy.
    cleared = await _cli(farm, ["clear", farm.printer(1).name])
    assert cleared.exit_code == 0, cleared.output
    assert f"plate of {p1s_b} cleared; job(s)" in cleared.output
    await _until_states(farm, [third], 1, "the third copy printed")
    assert (await farm.services.queue.get(third)).printer == p1s_b

    everything = await _cli(farm, ["queue", "--all"])
    assert "done" in everything.output
    assert (await _cli(farm, ["queue", "--state", "sleeping"])).exit_code == 1
