"""The printer page in Chromium: the temperature chart, the camera, controls, files, history.

Behind it: the real server with the demo's simulated printers (a P1S with its JPEG camera on
TLS 6000, an X1C whose camera is RTSPS), so frames, temperatures and files are real.

Every test asks for `demo` before `pages`: fixtures end in reverse, so the pages (and their
camera streams) close before the server stops, rather than the server waiting out its
graceful shutdown for a stream a page still holds.
"""

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import ADMIN, OPERATOR, PHONE, VIEWER, DemoFarm, Pages, Screenshot
from tests.support.api import PASSWORD

P1S, X1C = "P1S", "X1C"


def serial_of_model(demo: DemoFarm, model: str) -> str:
    return next(
        n.spec.identity.serial for n in demo.fleet.nodes if n.spec.identity.model.name == model
    )


async def printer_page(pages: Pages, demo: DemoFarm, serial: str, username: str) -> Page:
    page = await pages.open(demo.api.url, f"/printers/{serial}", sign_in=(username, PASSWORD))
    await expect(page.locator(".facts [data-field='state']")).not_to_have_text("UNKNOWN")
    return page


async def test_the_chart_draws_the_last_hour_and_keeps_it_over_a_reload(
    demo: DemoFarm, pages: Pages, screenshot: Screenshot
) -> None:
    serial = serial_of_model(demo, P1S)
    page = await printer_page(pages, demo, serial, VIEWER)
    chart = page.locator("temperature-chart svg.chart-svg")
    await expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    await expect(chart.locator('path[data-channel="bed"]')).to_have_count(1)
    await expect(chart.locator('path[data-channel="nozzle"]')).to_have_attribute(
        "d", re.compile(r"^M[\d.]+,[\d.]+")
    )
    legend = page.get_by_role("group", name="Curves shown")
    await expect(legend.get_by_role("button")).to_have_count(2)  # a P1S: nozzle and bed
    # A reload shows the hour from the server before any live reading arrives.
    history = demo.api.services.temperatures
    assert history.series(serial).times, "the server sampled nothing"
    await page.route(re.compile(r"/api/v1/ws$"), lambda route: route.abort())
    await page.reload()
    await expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    # Hiding a curve is a pressed button, by keyboard too.
    bed = legend.get_by_role("button", name="Bed")
    await bed.focus()
    await page.keyboard.press("Enter")
    await expect(bed).to_have_attribute("aria-pressed", "false")
    await expect(chart.locator('path[data-channel="bed"]')).to_have_count(0)
    await screenshot(page, "chart")


async def test_the_camera_plays_frames_and_an_rtsps_printer_says_why_not(
    demo: DemoFarm, pages: Pages, screenshot: Screenshot
) -> None:
    serial = serial_of_model(demo, P1S)
    page = await printer_page(pages, demo, serial, VIEWER)
    camera = page.locator("camera-view")
    await expect(camera).to_have_attribute("data-state", "live")
    image = camera.get_by_role("img", name=re.compile("^Live camera of"))
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.naturalWidth") == 640
    assert demo.api.services.camera.viewers(serial) == 1
    await screenshot(page, "p1s-camera")
    await camera.get_by_role("button", name="Stop camera").click()
    await expect(camera).to_have_attribute("data-state", "stopped")
    await expect(image).to_be_hidden()

    x1c = await printer_page(pages, demo, serial_of_model(demo, X1C), VIEWER)
    refused = x1c.locator("camera-view")
    await expect(refused).to_have_attribute("data-state", "unavailable")
    await expect(refused.get_by_role("status")).to_contain_text("RTSPS")
    await expect(refused.locator("img")).to_be_hidden()
    await screenshot(x1c, "x1c-camera")


async def test_an_operator_sets_the_bed_temperature_and_sees_the_target_change(
    demo: DemoFarm, pages: Pages, screenshot: Screenshot
) -> None:
    serial = serial_of_model(demo, P1S)
    page = await printer_page(pages, demo, serial, OPERATOR)
    controls = page.get_by_role("region", name="Controls")
    await controls.get_by_label("Bed target °C").fill("57")
    await controls.get_by_label("Bed target °C").press("Tab")
    await controls.get_by_role("button", name="Set bed target").click()
    temps = page.get_by_role("region", name="Temperatures")
    await expect(temps.locator("dl.temps")).to_contain_text("/57°")
    await expect(temps.locator(".chart-summary")).to_contain_text("of 57°")
    # The chart draws the new target; the server has it for a reload.
    await expect(page.locator('temperature-chart path[data-channel="bed_target"]')).to_have_count(1)
    history = demo.api.services.temperatures
    assert 57.0 in history.series(serial).columns["bed_target"]
    # Raw G-code is an admin's: an operator has no such field.
    await expect(controls.get_by_label("G-code line")).to_have_count(0)
    await screenshot(page, "bed-target")


async def test_files_on_the_printer_are_listed_and_deleted_after_confirming(
    demo: DemoFarm, pages: Pages, screenshot: Screenshot
) -> None:
    serial = serial_of_model(demo, P1S)
    node = demo.fleet.node(serial)
    (node.storage.root / "cache" / "bracket.gcode.3mf").write_bytes(b"PK\x05\x06" + bytes(18))
    page = await printer_page(pages, demo, serial, ADMIN)
    files = page.get_by_role("region", name="Files on the printer")
    await expect(files.get_by_role("button", name="cache/")).to_be_visible()
    await files.get_by_role("button", name="cache/").click()
    row = files.locator('tr[data-path="/cache/bracket.gcode.3mf"]')
    await expect(row).to_contain_text("22 B")
    await expect(row.get_by_role("link", name="Download bracket.gcode.3mf")).to_have_attribute(
        "href", re.compile(r"/files/download\?path=%2Fcache%2Fbracket\.gcode\.3mf$")
    )
    await screenshot(page, "files")
    await row.get_by_role("button", name="Delete bracket.gcode.3mf").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Delete file").click()
    await expect(row).to_have_count(0)
    await expect(files.get_by_role("status")).to_contain_text("bracket.gcode.3mf deleted")
    assert not (node.storage.root / "cache" / "bracket.gcode.3mf").exists()
    # Admins have the G-code line.
    await expect(page.get_by_label("G-code line")).to_be_visible()
    await page.set_viewport_size(PHONE)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "phone")


async def test_a_viewer_sees_no_controls(
    demo: DemoFarm, pages: Pages, screenshot: Screenshot
) -> None:
    serial = demo.serial_of(demo.printing[0])
    page = await printer_page(pages, demo, serial, VIEWER)
    files = page.get_by_role("region", name="Files on the printer")
    await expect(files.get_by_role("button", name="cache/")).to_be_visible()
    await expect(page.get_by_role("region", name="Controls")).to_have_count(0)
    for name in ("Pause", "Resume", "Set", "Send G-code", re.compile("^Chamber light")):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    await expect(page.locator("input[type=number]")).to_have_count(0)
    # What a viewer may do is there: the history and the recent prints.
    await expect(page.get_by_role("region", name="Recent prints")).to_be_visible()
    await expect(page.get_by_role("region", name="Health messages (HMS)")).to_contain_text(
        "History"
    )
    await screenshot(page, "viewer")
