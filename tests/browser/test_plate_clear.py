"""Handling a finished print from the dashboard, in Chromium with a simulated P1S: the card of a
printer whose queued print finished shows "plate not cleared" with the job's name and plate
thumbnail; Clear asks first, then clears the plate and the next job starts; a viewer sees the
badge without the button.
"""

import re

from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import OPERATOR, VIEWER, Pages, Screenshot
from tests.browser.queue_fixtures import LONG_S, SHORT_S, QueueFarm, queue_farm
from tests.support.api import PASSWORD

__all__ = ["queue_farm"]  # the fixture, imported for pytest


async def _dashboard(pages: Pages, qf: QueueFarm, username: str) -> tuple[Page, Locator]:
    page = await pages.open(qf.url, "/", sign_in=(username, PASSWORD))
    card = page.locator(f'printer-card[data-serial="{qf.serial()}"]')
    await expect(card).to_be_visible()
    await expect(page.locator(".live-state")).to_have_text("Live")
    return page, card


async def test_clear_a_finished_print_and_the_next_job_starts(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    serial = qf.serial()
    page, card = await _dashboard(pages, qf, OPERATOR)
    badge = card.locator('[data-field="plate"]')
    await expect(badge).to_be_hidden()
    short = await qf.file("hook.gcode.3mf", prediction_s=SHORT_S)
    long = await qf.file("tray.gcode.3mf", prediction_s=LONG_S)
    (first,) = await qf.queue(short, target={"printer": serial})
    await qf.until_job(first["id"], lambda j: j["state"] == "awaiting_clear", "the first print")
    (second,) = await qf.queue(long, target={"printer": serial})
    await qf.until_job(second["id"], lambda j: j["state"] == "waiting", "the next job waiting")

    # The print finished: the card says the plate must be cleared, with our job and its plate.
    await expect(badge).to_be_visible()
    await expect(badge).to_contain_text("Plate not cleared")
    await expect(card.locator(".job-name")).to_have_text("hook.gcode.3mf")
    await expect(card.locator(".card-thumb img")).to_have_attribute(
        "alt", "Plate 1 of hook.gcode.3mf"
    )
    await screenshot(page, "not-cleared")

    clear = badge.get_by_role("button", name=re.compile("^Clear the plate"))
    await clear.click()
    dialog = page.get_by_role("dialog", name=re.compile("^Clear the plate"))
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()
    assert (await qf.job(first["id"]))["state"] == "awaiting_clear"
    await clear.click()
    await page.get_by_role("dialog").get_by_role("button", name="Plate is clear").click()

    await expect(badge).to_be_hidden()
    assert (await qf.job(first["id"]))["state"] == "done"
    started = await qf.until_job(
        second["id"], lambda j: j["state"] == "printing", "the next job printing"
    )
    assert started["printer"] == serial
    await expect(card.locator(".job-name")).to_have_text("tray.gcode.3mf")
    await expect(card.locator(".pill")).to_have_text("Printing")
    await screenshot(page, "next-printing")


async def test_a_viewer_sees_the_badge_without_clear(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    short = await qf.file("hook.gcode.3mf", prediction_s=SHORT_S)
    (job,) = await qf.queue(short, target={"printer": qf.serial()})
    await qf.until_job(job["id"], lambda j: j["state"] == "awaiting_clear", "the print")
    page, card = await _dashboard(pages, qf, VIEWER)
    badge = card.locator('[data-field="plate"]')
    await expect(badge).to_contain_text("Plate not cleared")
    await expect(card.locator("button")).to_have_count(0)
    await screenshot(page, "viewer")
