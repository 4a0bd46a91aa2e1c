"""The queue page in Chromium, with a simulated P1S behind the server: jobs queued through the
API appear live and start; a waiting job says why; reorder from the keyboard; cancel is
confirmed; a viewer sees the queue without controls.
"""

import re

from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import OPERATOR, PHONE, VIEWER, Pages, Screenshot
from tests.browser.queue_fixtures import LONG_S, QueueFarm, queue_farm
from tests.support.api import PASSWORD

__all__ = ["queue_farm"]  # the fixture, imported for pytest


def _row(page: Page, job_id: int) -> Locator:
    return page.locator(f'job-row[data-job-id="{job_id}"]')


async def _queue_page(pages: Pages, qf: QueueFarm, username: str, **kwargs: object) -> Page:
    page = await pages.open(qf.url, "/queue", sign_in=(username, PASSWORD), **kwargs)  # type: ignore[arg-type]
    await expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    await expect(page.locator(".live-state")).to_have_text("Live")
    return page


async def _server_order(qf: QueueFarm) -> list[int]:
    response = await qf.client.get("/api/v1/jobs", params={"state": ["queued", "waiting"]})
    return [job["id"] for job in response.json()["items"]]


async def test_a_queued_job_appears_live_and_starts(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    page = await _queue_page(pages, qf, OPERATOR)
    await expect(page.locator(".empty")).to_be_visible()
    file = await qf.file("bracket.gcode.3mf", prediction_s=LONG_S)
    (job,) = await qf.queue(file, target={"printer": qf.serial()})
    row = _row(page, job["id"])
    # No reload: the row arrives over the WebSocket and follows the job onto the printer.
    await expect(row).to_be_visible()
    await expect(row.locator(".job-title")).to_have_text("bracket.gcode.3mf")
    await expect(row.locator('[data-field="target"]')).to_have_text(re.compile("^Only "))
    await expect(row.locator('[data-field="state"]')).to_have_text("Printing")
    await expect(row.locator('[data-field="printer"]')).not_to_have_text("—")
    await expect(row.locator(".job-thumb img")).to_have_attribute("alt", re.compile("Plate 1"))
    await expect(row.locator('[data-field="progress"]')).to_have_text(re.compile(r"\d+%"))
    await expect(row.get_by_role("button", name=re.compile("^Cancel"))).to_be_visible()
    await expect(page.locator(".queue-summary")).to_have_text(re.compile("^1 on printers"))
    await screenshot(page, "printing")


async def test_a_waiting_job_says_why(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    red = await qf.file("red.gcode.3mf", color="#FF0000")
    (job,) = await qf.queue(red)
    page = await _queue_page(pages, qf, OPERATOR, viewport=PHONE)
    row = _row(page, job["id"])
    await expect(row.locator('[data-field="state"]')).to_have_text("Waiting")
    await expect(row.locator('[data-field="reason"]')).to_have_text(re.compile("filament"))
    await row.get_by_text("Why, printer by printer").click()
    reason = row.locator('.why-list li[data-reason="missing_filament"]')
    await expect(reason).to_contain_text("#FF0000")
    await screenshot(page, "why")


async def test_reorder_from_the_keyboard(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    red = await qf.file("red.gcode.3mf", color="#FF0000")
    ids = [j["id"] for j in await qf.queue(red, copies=3)]
    await qf.until_job(ids[-1], lambda j: j["state"] == "waiting", "the copies waiting")
    assert await _server_order(qf) == ids
    page = await _queue_page(pages, qf, OPERATOR)
    rows = page.locator("job-row")
    await expect(rows).to_have_count(3)
    first, second, third = ids
    # The third copy's "move up" button, from the keyboard.
    up = _row(page, third).get_by_role("button", name=re.compile("^Move up"))
    await up.focus()
    await page.keyboard.press("Enter")
    announcer = page.locator('[data-field="announcer"]')
    await expect(announcer).to_have_text(re.compile("moved to place 2 of 3"))
    assert await _server_order(qf) == [first, third, second]
    await expect(rows.nth(1)).to_have_attribute("data-job-id", str(third))
    await expect(up).to_be_focused()
    # Alt+↑ on the focused row moves it once more: now first, and the server agrees.
    await page.keyboard.press("Alt+ArrowUp")
    await expect(announcer).to_have_text(re.compile("moved to place 1 of 3"))
    assert await _server_order(qf) == [third, first, second]
    await expect(rows.first).to_have_attribute("data-job-id", str(third))
    await expect(
        _row(page, third).get_by_role("button", name=re.compile("^Move up"))
    ).to_be_disabled()
    await screenshot(page, "reordered")


async def test_cancel_asks_first(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    red = await qf.file("red.gcode.3mf", color="#FF0000")
    (job,) = await qf.queue(red)
    page = await _queue_page(pages, qf, OPERATOR)
    row = _row(page, job["id"])
    cancel = row.get_by_role("button", name=re.compile("^Cancel"))
    await cancel.click()
    dialog = page.get_by_role("dialog", name="Cancel this job?")
    await expect(dialog).to_be_visible()
    await screenshot(page, "confirm")
    await dialog.get_by_role("button", name="Cancel", exact=True).click()
    await expect(dialog).to_be_hidden()
    assert (await qf.job(job["id"]))["state"] in ("queued", "waiting")
    await cancel.click()
    await page.get_by_role("dialog").get_by_role("button", name="Cancel job").click()
    await expect(row).to_be_hidden()
    assert (await qf.job(job["id"]))["state"] == "cancelled"
    await page.get_by_role("button", name="Finished").click()
    await expect(row.locator('[data-field="state"]')).to_have_text("Cancelled")
    await expect(row.get_by_role("button", name=re.compile("^Retry"))).to_be_visible()
    await screenshot(page, "cancelled")


async def test_a_viewer_sees_no_controls(
    pages: Pages, queue_farm: QueueFarm, screenshot: Screenshot
) -> None:
    qf = queue_farm
    red = await qf.file("red.gcode.3mf", color="#FF0000")
    (job,) = await qf.queue(red)
    page = await _queue_page(pages, qf, VIEWER)
    row = _row(page, job["id"])
    await expect(row.locator('[data-field="state"]')).to_have_text("Waiting")
    await expect(row.locator('[data-field="reason"]')).to_have_text(re.compile("filament"))
    await expect(page.locator("queue-page button[data-action]")).to_have_count(0)
    await expect(page.get_by_role("button", name="Add job")).to_have_count(0)
    assert await row.get_attribute("draggable") == "false"
    await screenshot(page, "viewer")
