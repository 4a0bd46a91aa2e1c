"""Bulk pause, resume and stop from the fleet dashboard, in Chromium with simulated printers:
operators pick printers (one by one or all shown), the bar offers what applies, the
confirmation names the printers and the ones skipped, the result is shown per printer; a
cancelled stop sends nothing; viewers get no selection at all.
"""

import re

from playwright.async_api import Locator, Page, Request, Route, expect

from tests.browser.conftest import (
    ADMIN,
    DEMO_MODELS,
    DUAL_NOZZLE,
    OPERATOR,
    PHONE,
    SECURED,
    VIEWER,
    DemoFarm,
    Pages,
    Screenshot,
)
from tests.support.api import PASSWORD

PERCENT = re.compile(r"^\d+%$")


def _card(page: Page, serial: str) -> Locator:
    return page.locator(f'printer-card[data-serial="{serial}"]')


def _bar(page: Page) -> Locator:
    return page.get_by_role("region", name="Selected printers")


async def _dashboard(pages: Pages, demo: DemoFarm, username: str) -> Page:
    page = await pages.open(demo.api.url, "/", sign_in=(username, PASSWORD))
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    await expect(page.locator("printer-card")).to_have_count(len(DEMO_MODELS))
    await expect(page.locator(".live-state")).to_have_text("Live")
    return page


async def _wait_printing(card: Locator) -> None:
    # The demo's prints heat and level first; pause is offered once the print runs.
    await expect(card.locator(".pill")).to_have_text("Printing")
    await expect(card.locator('[data-field="progress"]')).to_have_text(PERCENT)


async def _api_states(demo: DemoFarm, serials: list[str]) -> list[str]:
    admin = await demo.api.sign_in(ADMIN)
    states = []
    for serial in serials:
        response = await admin.client.get(f"/api/v1/printers/{serial}/status")
        assert response.status_code == 200, response.text
        states.append(response.json()["job"]["gcode_state"])
    return states


async def test_bulk_pause_then_resume_two_printers(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, OPERATOR)
    names = demo.printing[:2]
    serials = [demo.serial_of(name) for name in names]
    cards = [_card(page, serial) for serial in serials]
    for card in cards:
        await _wait_printing(card)
    bar = _bar(page)
    await expect(bar).to_be_hidden()
    for name in names:
        await page.get_by_label(f"Select {name}", exact=True).check()
    await expect(bar).to_be_visible()
    await expect(bar.locator(".bulk-count")).to_have_text("2 printers selected")
    pause = bar.get_by_role("button", name=re.compile(r"^Pause"))
    resume = bar.get_by_role("button", name=re.compile(r"^Resume"))
    await expect(pause).to_be_enabled()
    await expect(resume).to_be_disabled()  # nothing selected is paused yet
    await expect(cards[0]).to_have_class(re.compile("is-selected"))

    await pause.click()
    dialog = page.get_by_role("dialog", name="Pause 2 printers?")
    await expect(dialog).to_be_visible()
    for name in names:
        await expect(dialog).to_contain_text(name)
    await expect(dialog).not_to_contain_text("Skipped")
    await screenshot(page, "confirm-pause")
    await dialog.get_by_role("button", name="Pause 2 printers").click()

    for card in cards:
        await expect(card.locator(".pill")).to_have_text("Paused")
    results = page.locator(".bulk-results")
    await expect(results.get_by_role("status")).to_contain_text("Pause: 2 paused")
    await expect(results.locator('li[data-outcome="done"]')).to_have_count(2)
    assert await _api_states(demo, serials) == ["PAUSE", "PAUSE"]
    # The selection stays for the next step; the bar now offers Resume, not Pause.
    for name in names:
        await expect(page.get_by_label(f"Select {name}", exact=True)).to_be_checked()
    await expect(resume).to_be_enabled()
    await expect(pause).to_be_disabled()
    await screenshot(page, "paused")

    await resume.click()
    await (
        page.get_by_role("dialog", name="Resume 2 printers?")
        .get_by_role("button", name="Resume 2 printers")
        .click()
    )
    for card in cards:
        await expect(card.locator(".pill")).to_have_text("Printing")
    await expect(results.get_by_role("status")).to_contain_text("Resume: 2 resumed")
    assert await _api_states(demo, serials) == ["RUNNING", "RUNNING"]
    await screenshot(page, "resumed")


async def test_a_refused_printer_is_reported_and_can_be_retried(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, ADMIN)
    names = demo.printing[:2]
    serials = [demo.serial_of(name) for name in names]
    for serial in serials:
        await _wait_printing(_card(page, serial))
    refused = serials[1]
    detail = "the printer is busy with another command; try again in a moment"

    async def refuse_once(route: Route) -> None:
        # The server's problem answer, stood in for once: a real refusal needs a printer that
        # changes its mind between the confirmation and the command.
        await route.fulfill(
            status=409,
            content_type="application/problem+json",
            body=(
                '{"type": "urn:bambufarm:problem:command-refused", "title": "Command refused",'
                f' "status": 409, "detail": "{detail}"}}'
            ),
        )

    await page.route(f"**/api/v1/printers/{refused}/pause", refuse_once, times=1)
    for name in names:
        await page.get_by_label(f"Select {name}", exact=True).check()
    bar = _bar(page)
    await bar.get_by_role("button", name=re.compile(r"^Pause")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Pause 2 printers").click()

    results = page.locator(".bulk-results")
    await expect(results.get_by_role("status")).to_contain_text("Pause: 1 paused, 1 not paused")
    failed = results.locator('li[data-outcome="refused"]')
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text(names[1])
    await expect(failed).to_contain_text(f"refused: {detail}")
    await expect(_card(page, refused).locator(".action-error")).to_contain_text(detail)
    await expect(_card(page, serials[0]).locator(".pill")).to_have_text("Paused")
    await screenshot(page, "refused")

    # Still selected: Pause now applies to the one left printing, and goes through this time.
    pause = bar.get_by_role("button", name=re.compile(r"^Pause"))
    await expect(pause).to_have_text("Pause (1)")
    await pause.click()
    dialog = page.get_by_role("dialog", name="Pause 1 printer?")
    await expect(dialog).to_contain_text(f"{names[0]} (paused)")
    await dialog.get_by_role("button", name="Pause 1 printer").click()
    await expect(_card(page, refused).locator(".pill")).to_have_text("Paused")
    await expect(_card(page, refused).locator(".action-error")).to_be_hidden()
    assert await _api_states(demo, serials) == ["PAUSE", "PAUSE"]


async def test_stop_names_what_is_skipped_and_cancel_sends_nothing(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, OPERATOR)
    for name in demo.printing:
        await _wait_printing(_card(page, demo.serial_of(name)))
    commands: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and "/api/v1/printers/" in request.url:
            commands.append(request.url)

    page.on("request", record)
    # "Select all shown" takes only what the filters show.
    await page.get_by_label("State", exact=True).select_option("printing")
    select_all = page.get_by_label(re.compile(r"^Select all shown"))
    await expect(select_all).to_be_enabled()
    await select_all.check()
    bar = _bar(page)
    await expect(bar.locator(".bulk-count")).to_have_text(f"{len(demo.printing)} printers selected")
    await page.get_by_label("State", exact=True).select_option("")
    # Some of the shown printers are selected: the box says "mixed".
    assert await select_all.evaluate("box => box.indeterminate && !box.checked")
    idle = demo.fleet.nodes[DUAL_NOZZLE].spec.identity.name
    read_only = demo.fleet.nodes[SECURED].spec.identity.name
    for name in (idle, read_only):
        await page.get_by_label(f"Select {name}", exact=True).check()
    selected = len(demo.printing) + 2
    await expect(bar.locator(".bulk-count")).to_have_text(f"{selected} printers selected")
    await expect(page.locator("printer-card.is-selected")).to_have_count(selected)

    stop = bar.get_by_role("button", name=re.compile(r"^Stop"))
    await expect(stop).to_have_text(f"Stop ({len(demo.printing)})")
    await stop.click()
    dialog = page.get_by_role("dialog", name=f"Stop {len(demo.printing)} printers?")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("cannot be resumed")
    await expect(dialog).to_contain_text("Skipped, as stop does not apply to them")
    await expect(dialog).to_contain_text(f"{idle} (idle)")
    await expect(dialog).to_contain_text(f"{read_only} (read-only)")
    for name in demo.printing:
        await expect(dialog).to_contain_text(name)
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await screenshot(page, "confirm-stop")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(stop).to_be_focused()

    assert commands == []
    for name in demo.printing:
        await expect(_card(page, demo.serial_of(name)).locator(".pill")).to_have_text("Printing")
    assert await _api_states(demo, [demo.serial_of(n) for n in demo.printing]) == ["RUNNING"] * len(
        demo.printing
    )

    # On a phone the bar spans the screen without pushing the page sideways.
    await page.set_viewport_size(PHONE)
    await expect(bar).to_be_visible()
    box = await bar.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    assert box["y"] + box["height"] <= PHONE["height"]
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "phone")

    # Escape clears the selection, and the focus stays on the page.
    await page.keyboard.press("Escape")
    await expect(bar).to_be_hidden()
    await expect(page.locator("printer-card.is-selected")).to_have_count(0)
    await expect(page.get_by_role("status").filter(has_text="Selection cleared")).to_have_count(1)
    await expect(select_all).to_be_focused()

    # The compact list has the same boxes, reachable and labelled on a phone too.
    await page.get_by_role("button", name="List").click()
    box_in_list = page.get_by_label(f"Select {idle}", exact=True)
    await expect(box_in_list).to_be_visible()
    await box_in_list.focus()
    await page.keyboard.press("Space")
    await expect(bar.locator(".bulk-count")).to_have_text("1 printer selected")
    await expect(bar.get_by_role("button", name=re.compile(r"^Pause"))).to_be_disabled()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "list-phone")
    assert commands == []


async def test_a_viewer_gets_no_selection_and_no_bulk_bar(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, VIEWER)
    await _wait_printing(_card(page, demo.serial_of(demo.printing[0])))
    grid = page.get_by_role("list", name="Printers", exact=True)
    assert await grid.locator('input[type="checkbox"]').count() == 0
    assert await page.get_by_label(re.compile(r"^Select ")).count() == 0
    assert await page.locator("bulk-actions").count() == 0
    assert await _bar(page).count() == 0
    await page.keyboard.press("Escape")  # nothing to clear, and nothing breaks
    await screenshot(page, "viewer")
