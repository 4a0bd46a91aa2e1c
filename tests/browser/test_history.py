"""The history page in Chromium: a print that a simulated printer finished is listed with its
outcome, duration and filament, the statistics count it (figures, SVG charts, per-printer
table), and the filters narrow the list.
"""

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from bambufarm.jobs.history import PrintOutcome, finish_print, start_print
from bambufarm.protocol.threemf import PlateFilament
from tests.browser.conftest import PHONE, VIEWER, Pages, Screenshot
from tests.browser.print_farm import PrintFarm, print_farm
from tests.support.api import PASSWORD
from tests.support.queue_api import sliced

# 600 s of slicer time at 300x: the simulated print is over in a few seconds.
TIME_SCALE = 300.0
PETG = PlateFilament(1, "GFG00", "PETG", "#000000", 20.0, 6.6)


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[PrintFarm]:
    """One idle simulated P1S on a fast clock."""
    async with print_farm(tmp_path, time_scale=TIME_SCALE) as running:
        yield running


async def _finished_print(farm: PrintFarm) -> None:
    """Queue a file and wait until the printer has printed it and the history says so."""
    file = await farm.upload(sliced(grams=12.0, prediction_s=600), "bracket.gcode.3mf")
    (job,) = await farm.queue(file["id"])
    await farm.until(
        lambda: farm.get("/api/v1/history/prints", job=job["id"]),
        lambda page: bool(page["items"]) and page["items"][0]["outcome"] == "done",
        "the print recorded as done",
    )


async def _failed_print(farm: PrintFarm) -> None:
    """A print that failed at 40 % an hour ago, written to the history as the runner would."""
    started = farm.api.services.clock() - timedelta(hours=1)
    async with farm.api.services.database.session() as session:
        record = await start_print(
            session, printer_serial=farm.serial(), file_name="vase.gcode.3mf", plate=2,
            filaments=(PETG,), started_at=started,
        )  # fmt: skip
        await finish_print(
            session, record.id, outcome=PrintOutcome.FAILED, progress=40,
            ended_at=started + timedelta(minutes=30), reason="spaghetti detected",
        )  # fmt: skip


async def test_a_finished_print_is_listed_and_counted(
    pages: Pages, farm: PrintFarm, screenshot: Screenshot
) -> None:
    await _failed_print(farm)
    await _finished_print(farm)
    page = await pages.open(farm.api.url, "/history", sign_in=(VIEWER, PASSWORD))
    await expect(page.get_by_role("heading", name="History", exact=True)).to_be_visible()
    rows = page.locator(".history-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator(".history-summary")).to_have_text("2 prints")

    done = rows.filter(has=page.locator('[data-col="outcome"]', has_text="Done"))
    await expect(done).to_have_count(1)
    await expect(done.locator('[data-col="printer"]')).to_have_text(farm.name())
    await expect(done.locator('[data-col="file"]')).to_have_text("bracket.gcode.3mf")
    await expect(done.locator('[data-col="plate"]')).to_have_text("1")
    await expect(done.locator('[data-col="started"] time')).to_have_text(re.compile(r"\d"))
    await expect(done.locator('[data-col="ended"] time')).to_have_text(re.compile(r"\d"))
    await expect(done.locator('[data-col="duration"]')).to_have_text(re.compile(r"min$"))
    await expect(done.locator(".filament")).to_contain_text("PLA")
    await expect(done.locator(".filament")).to_contain_text("12.0 g")

    failed = rows.filter(has=page.locator('[data-col="outcome"]', has_text="Failed"))
    await expect(failed.locator('[data-col="outcome"]')).to_contain_text("at 40%")
    await expect(failed.locator('[data-col="outcome"]')).to_contain_text("spaghetti detected")
    await expect(failed.locator('[data-col="duration"]')).to_have_text("30 min")
    # Failed at 40 %: 40 % of the 20 g planned.
    await expect(failed.locator(".filament")).to_contain_text("8.0 g")

    # Fleet figures: two prints, one done and one failed, grams of both materials.
    await expect(page.locator('[data-stat="prints"] dd')).to_have_text("2")
    await expect(page.locator('[data-stat="success"] dd')).to_have_text("50%")
    await expect(page.locator('[data-stat="success"] .stat-hint')).to_have_text(
        "1 done · 1 failed · 0 cancelled"
    )
    await expect(page.locator('[data-stat="filament"] dd')).to_have_text("20.0 g")
    await expect(page.locator('[data-stat="hours"] dd')).to_have_text(re.compile(r"^0\.\d h$"))
    # The charts are SVG drawn by the page: a done and a failed bar for the printer, a bar
    # per material.
    charts = page.locator("figure.chart")
    await expect(charts).to_have_count(3)
    outcomes = charts.filter(has_text="Outcomes per printer")
    await expect(outcomes.locator("svg.chart-svg rect.chart-done")).to_have_count(1)
    await expect(outcomes.locator("svg.chart-svg rect.chart-failed")).to_have_count(1)
    await expect(outcomes.locator("svg.chart-svg")).to_have_attribute(
        "aria-label", f"{farm.name()}: 1 done, 1 failed, 0 cancelled"
    )
    materials = charts.filter(has_text="Filament by material")
    await expect(materials.locator("rect.chart-filament")).to_have_count(2)
    per_printer = page.locator(f'.stats-table tr[data-printer="{farm.serial()}"]')
    await expect(per_printer.locator("th")).to_have_text(farm.name())
    await expect(per_printer.locator("td").nth(4)).to_have_text("50%")
    await screenshot(page, "history")

    # Filters: only failed prints, then only this printer's in the last 24 hours.
    await page.get_by_label("Outcome").select_option("failed")
    await expect(rows).to_have_count(1)
    await expect(rows.locator('[data-col="file"]')).to_have_text("vase.gcode.3mf")
    await page.get_by_label("Outcome").select_option("")
    await page.get_by_label("Printer", exact=True).select_option(farm.serial())
    await page.get_by_label("Time range").select_option("1d")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Outcome").select_option("cancelled")
    await expect(rows).to_have_count(0)
    await expect(page.locator(".history-summary")).to_have_text("No print matches these filters.")

    # On a phone the page's own content fits; wide tables scroll inside their box.
    await page.get_by_label("Outcome").select_option("")
    await expect(rows).to_have_count(2)
    await page.set_viewport_size(PHONE)
    assert await page.locator("history-page").evaluate("el => el.scrollWidth <= el.clientWidth")
    await screenshot(page, "phone")
