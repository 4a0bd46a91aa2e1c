"""The fleet dashboard and printer page in Chromium, with simulated printers behind the server."""

import re

from playwright.async_api import Locator, Page, Request, WebSocketRoute, expect

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


async def _dashboard(pages: Pages, demo: DemoFarm, username: str) -> Page:
    page = await pages.open(demo.api.url, "/", sign_in=(username, PASSWORD))
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    await expect(page.locator("printer-card")).to_have_count(len(DEMO_MODELS))
    return page


async def _wait_printing(card: Locator) -> None:
    # The demo's prints heat and level first; commands are for a print that runs.
    await expect(card.locator(".pill")).to_have_text("Printing")
    await expect(card.locator('[data-field="progress"]')).to_have_text(PERCENT)


async def test_the_demo_fleet_updates_live(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await pages.open(demo.api.url, "/", sign_in=(ADMIN, PASSWORD))
    list_loads: list[str] = []

    def count(request: Request) -> None:
        if request.url.split("?")[0].endswith("/api/v1/printers"):
            list_loads.append(request.url)

    page.on("request", count)
    await expect(page.locator("printer-card")).to_have_count(len(DEMO_MODELS))
    await expect(page.locator(".live-state")).to_have_text("Live")
    counters = page.get_by_role("list", name="Printers by state")
    await expect(counters.locator('[data-kind="printing"] strong')).to_have_text(
        str(len(demo.printing))
    )
    await expect(counters.locator('[data-kind="idle"] strong')).to_have_text(
        str(len(DEMO_MODELS) - len(demo.printing))
    )
    await expect(counters.locator('[data-kind="offline"] strong')).to_have_text("0")

    card = _card(page, demo.serial_of(demo.printing[0]))
    await _wait_printing(card)
    await expect(card.locator(".job-name")).to_have_text(re.compile(r"\S"))
    progress = card.locator('[data-field="progress"]')
    first = await progress.text_content()
    # The simulated print moves on and the page follows without reloading anything.
    await expect(progress).not_to_have_text(first or "")
    await expect(card.locator('[data-field="layer"]')).to_have_text(re.compile(r"^\d+/\d+$"))
    await expect(card.locator('[data-field="remaining"]')).to_have_text(re.compile(r"min"))
    await expect(card.locator('[data-field="eta"]')).to_have_text(re.compile(r"\d\d:\d\d"))
    await expect(card.locator('[data-field="nozzle"]')).to_have_text(re.compile(r"^\d+°"))
    await expect(card.locator('[data-field="bed"]')).to_have_text(re.compile(r"^\d+°"))
    assert list_loads == [], "progress came from a reload instead of the WebSocket"

    # AMS trays: a swatch per loaded slot with what is left.
    trays = card.get_by_role("list", name=re.compile("Filament of"))
    await expect(trays.locator(".tray")).to_have_count(5)  # four AMS slots and the external spool
    await expect(trays.locator(".tray").first).to_have_attribute(
        "aria-label", "AMS 1 slot 1: PLA, 82% left"
    )
    # The printer with the demo's HMS warning shows it decoded, with its code.
    warned = _card(page, demo.fleet.nodes[4].spec.identity.serial)
    badge = warned.locator(".badge[data-hms]")
    await expect(badge).to_contain_text("AMS 1 slot 2")
    await expect(badge).to_have_attribute("data-hms", "0700_0100_0003_0001")
    await expect(badge).to_contain_text("0700_0100_0003_0001")
    # Developer Mode off: marked read-only, and no controls offered for it.
    secured = _card(page, demo.fleet.nodes[SECURED].spec.identity.serial)
    await expect(secured.locator(".badge-readonly")).to_have_text("Read-only")
    await screenshot(page, "desktop")

    await page.set_viewport_size(PHONE)
    await expect(card).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = await card.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    await screenshot(page, "phone")


async def test_pause_and_resume_a_print_from_its_card(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, OPERATOR)
    name = demo.printing[0]
    serial = demo.serial_of(name)
    node = next(n for n in demo.fleet.nodes if n.spec.identity.serial == serial)
    card = _card(page, serial)
    await _wait_printing(card)
    pause = card.get_by_role("button", name=f"Pause {name}")
    resume = card.get_by_role("button", name=f"Resume {name}")
    await expect(resume).to_be_hidden()
    await pause.click()
    await expect(card.locator(".pill")).to_have_text("Paused")
    await expect(resume).to_be_visible()
    await expect(pause).to_be_hidden()
    assert node.printer.gcode_state == "PAUSE"
    # Paused prints still count as printing jobs at the top.
    counters = page.get_by_role("list", name="Printers by state")
    await expect(counters.locator('[data-kind="printing"] strong')).to_have_text(
        str(len(demo.printing))
    )
    await screenshot(page, "paused")
    await resume.click()
    await expect(card.locator(".pill")).to_have_text("Printing")
    await expect(pause).to_be_visible()
    assert node.printer.gcode_state == "RUNNING"


async def test_stop_asks_first_and_cancel_keeps_printing(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, OPERATOR)
    name = demo.printing[1]
    serial = demo.serial_of(name)
    card = _card(page, serial)
    await _wait_printing(card)
    stop = card.get_by_role("button", name=f"Stop {name}")
    await stop.click()
    dialog = page.get_by_role("dialog", name=f"Stop {name}?")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("cannot be resumed")
    # Focus starts on Cancel: a stray Enter must not end a print.
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await screenshot(page, "confirm")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(stop).to_be_focused()
    await expect(card.locator(".pill")).to_have_text("Printing")

    await stop.click()
    await dialog.get_by_role("button", name="Stop print").click()
    await expect(card.locator(".pill")).to_have_text("Stopped")
    await expect(stop).to_be_hidden()
    await expect(card.get_by_role("button", name=f"Pause {name}")).to_be_hidden()


async def test_a_viewer_sees_no_control_buttons(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, VIEWER)
    card = _card(page, demo.serial_of(demo.printing[0]))
    await _wait_printing(card)
    grid = page.get_by_role("list", name="Printers", exact=True)
    assert await grid.locator("button").count() == 0
    assert await page.locator("[data-action]").count() == 0
    assert await page.get_by_role("button", name=re.compile(r"^(Pause|Resume|Stop)\b")).count() == 0
    await screenshot(page, "dashboard")
    await card.get_by_role("link", name=demo.printing[0]).click()
    await expect(page).to_have_url(re.compile(r"/printers/"))
    await expect(page.get_by_role("heading", name="Status")).to_be_visible()
    await expect(page.get_by_role("heading", name="Controls")).to_have_count(0)
    # The page keeps its viewing buttons (camera, chart curves, folders); no control is drawn.
    assert await page.locator("main [data-action]").count() == 0
    controls = re.compile(r"^(Pause|Resume|Stop)$|^(Set|Send G-code|Delete)\b|^Chamber light")
    assert await page.get_by_role("button", name=controls).count() == 0
    await screenshot(page, "detail")


async def test_filters_search_sort_and_the_compact_list(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, ADMIN)
    visible = page.locator("printer-card:visible")
    for name in demo.printing:
        await _wait_printing(_card(page, demo.serial_of(name)))

    await page.get_by_label("Search").fill("a1 mini")
    await expect(visible).to_have_count(1)
    await expect(visible.locator("h2")).to_have_text("A1 mini #1")
    await expect(page.locator(".fleet-summary")).to_have_text(
        f"Showing 1 of {len(DEMO_MODELS)} printers"
    )
    await page.get_by_label("Search").fill("")
    await expect(visible).to_have_count(len(DEMO_MODELS))

    await page.get_by_label("State", exact=True).select_option("printing")
    await expect(visible).to_have_count(len(demo.printing))
    await page.get_by_label("State", exact=True).select_option("")
    # A counter is a quick filter, and pressing it again clears it.
    idle = page.locator('.counter[data-kind="idle"]')
    await idle.click()
    await expect(idle).to_have_attribute("aria-pressed", "true")
    await expect(visible).to_have_count(len(DEMO_MODELS) - len(demo.printing))
    await idle.click()
    await expect(visible).to_have_count(len(DEMO_MODELS))

    await page.get_by_label("With errors only").check()
    await expect(visible).to_have_count(1)
    await expect(visible).to_have_attribute("data-serial", demo.fleet.nodes[4].spec.identity.serial)
    await page.get_by_label("With errors only").uncheck()

    await page.get_by_label("Model").select_option("P1S")
    await expect(visible).to_have_count(1)
    await page.get_by_label("Model").select_option("")

    await page.get_by_label("Sort by").select_option("name")
    names = await page.locator("printer-card h2").all_text_contents()
    assert names == sorted(names, key=str.casefold)
    await page.get_by_label("Sort by").select_option("state")
    first_three = await page.locator("printer-card").evaluate_all(
        "cards => cards.slice(0, 3).map(c => c.dataset.category)"
    )
    assert first_three == ["printing"] * 3

    await page.get_by_role("button", name="List").click()
    await expect(page.get_by_role("list", name="Printers", exact=True)).to_have_class(
        re.compile("is-list")
    )
    await screenshot(page, "list")
    # The choice is remembered for the next visit.
    await page.reload()
    await expect(page.get_by_role("button", name="List")).to_have_attribute("aria-pressed", "true")
    await page.set_viewport_size(PHONE)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "list-phone")


async def test_the_printer_page_shows_status_trays_and_controls(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    serial = demo.serial_of(demo.printing[0])
    page = await pages.open(demo.api.url, f"/printers/{serial}", sign_in=(OPERATOR, PASSWORD))
    await expect(page.get_by_role("heading", level=1)).to_have_text(demo.printing[0])
    await expect(page.locator(".pill")).to_have_text("Printing")
    facts = page.locator(".facts")
    await expect(facts.locator('[data-field="state"]')).to_have_text("RUNNING")
    progress = facts.locator('[data-field="progress"]')
    first = await progress.text_content()
    await expect(progress).not_to_have_text(first or "")
    trays = page.locator(".tray-table tbody tr")
    await expect(trays).to_have_count(5)  # four AMS slots and the external spool
    await expect(trays.first).to_contain_text("PLA")
    await expect(trays.first).to_contain_text("82%")
    controls = page.get_by_role("region", name="Controls")
    await expect(controls.get_by_role("button", name="Pause")).to_be_visible()
    # The simulated printers start with the light on; the button says what it is now.
    light = controls.get_by_role("button", name=re.compile(r"^Chamber light"))
    await expect(light).to_have_text("Chamber light: on")
    await expect(light).to_have_attribute("aria-pressed", "true")
    await light.click()
    await expect(light).to_have_text("Chamber light: off")
    await expect(light).to_have_attribute("aria-pressed", "false")
    await expect(page.get_by_role("region", name="Health messages (HMS)")).to_contain_text(
        "No active messages"
    )
    await screenshot(page, "desktop")
    await page.set_viewport_size(PHONE)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "phone")


async def test_the_dark_theme_is_chosen_and_remembered(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, ADMIN)
    toggle = page.get_by_role("button", name="Dark theme")
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await toggle.click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 21, 26)"
    await page.reload()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await expect(page.get_by_role("button", name="Dark theme")).to_have_attribute(
        "aria-pressed", "true"
    )
    await _wait_printing(_card(page, demo.serial_of(demo.printing[0])))
    await screenshot(page, "dark")


async def test_a_printer_that_drops_off_shows_offline_with_the_reason(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    page = await _dashboard(pages, demo, OPERATOR)
    node = demo.fleet.nodes[SECURED]
    card = _card(page, node.spec.identity.serial)
    await expect(card.locator(".pill")).to_have_text("Idle")
    await node.close()
    await expect(card.locator(".pill")).to_have_text(re.compile("Offline|Connecting"))
    await expect(card).to_have_attribute("data-category", "offline")
    await expect(card.locator(".conn-reason")).to_be_visible()
    await expect(card.locator(".conn-reason")).to_have_text(re.compile(r"\S"))
    counters = page.get_by_role("list", name="Printers by state")
    await expect(counters.locator('[data-kind="offline"] strong')).to_have_text("1")
    await page.locator('.counter[data-kind="offline"]').click()
    await expect(page.locator("printer-card:visible")).to_have_count(1)
    await screenshot(page, "offline")


async def test_a_dropped_live_connection_comes_back_and_catches_up(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    sockets: list[WebSocketRoute] = []
    list_loads: list[str] = []

    def proxy(socket: WebSocketRoute) -> None:
        # Playwright stands between page and server, so the test can cut the line.
        socket.connect_to_server()
        sockets.append(socket)

    async def prepare(page: Page) -> None:
        await page.route_web_socket(re.compile(r"/api/v1/ws$"), proxy)
        page.on(
            "request",
            lambda r: list_loads.append(r.url) if "/api/v1/printers?" in r.url else None,
        )

    page = await pages.open(demo.api.url, "/", sign_in=(OPERATOR, PASSWORD), prepare=prepare)
    live = page.locator(".live-state")
    await expect(live).to_have_text("Live")
    assert len(sockets) == 1
    assert len(list_loads) == 1
    card = _card(page, demo.serial_of(demo.printing[0]))
    await _wait_printing(card)

    # Back within the first backoff step (0.5-1 s), with the list loaded again for what it
    # may have missed, and updates flowing on the new socket.
    async with page.expect_request(lambda r: "/api/v1/printers?" in r.url):
        await sockets[0].close(code=1001, reason="test drops the line")
    await expect(live).to_have_text("Live")
    assert len(sockets) == 2
    assert len(list_loads) == 2
    progress = card.locator('[data-field="progress"]')
    before = await progress.text_content()
    await expect(progress).not_to_have_text(before or "")
    await screenshot(page, "reconnected")


async def test_a_dual_nozzle_printer_shows_both_nozzles_and_its_ams_ht(
    pages: Pages, demo: DemoFarm, screenshot: Screenshot
) -> None:
    serial = demo.fleet.nodes[DUAL_NOZZLE].spec.identity.serial
    page = await pages.open(demo.api.url, f"/printers/{serial}", sign_in=(VIEWER, PASSWORD))
    temps = page.get_by_role("region", name="Temperatures")
    await expect(temps).to_contain_text("Right nozzle")
    await expect(temps).to_contain_text("Left nozzle")
    filament = page.get_by_role("region", name="Filament")
    await expect(filament.get_by_role("heading", name=re.compile(r"^AMS HT 1"))).to_be_visible()
    await expect(filament.get_by_role("heading", name=re.compile(r"^AMS 1"))).to_be_visible()
    # No tray is in use on an idle printer (tray_now 255 means none).
    await expect(filament.locator('tr[data-active="true"]')).to_have_count(0)
    await screenshot(page, "h2d")
