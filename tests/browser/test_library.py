"""The library page in Chromium: upload by file picker and by drop with progress, refused files
with the server's reason, file cards with thumbnail and metadata, and "Print" through the job
dialog to a job that starts on a simulated printer. Viewers get no upload or print controls.
"""

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from bambufarm.simulator.sample_files import build_gcode_3mf
from tests.browser.conftest import OPERATOR, PHONE, VIEWER, Pages, Screenshot
from tests.browser.print_farm import PrintFarm, print_farm
from tests.support.api import PASSWORD
from tests.support.queue_api import sliced

# 600 s of slicer time at 30x is a 20 s print: long enough to be seen printing.
TIME_SCALE = 30.0
# ~1.5 MB of varied G-code moves: enough bytes for the upload to report progress.
PADDING = 4_000_000
REFUSED = re.compile(r"status of 422")


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[PrintFarm]:
    """One idle simulated P1S in the server."""
    async with print_farm(tmp_path, time_scale=TIME_SCALE) as running:
        yield running


async def _drop(page: Page, name: str, data: bytes) -> None:
    """Drop a file on the upload zone as a browser would (a synthetic drag and drop)."""
    await page.evaluate(
        """([name, encoded]) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name));
            const zone = document.querySelector(".dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [name, base64.b64encode(data).decode()],
    )


async def test_upload_see_the_file_and_print_it_on_a_printer(
    pages: Pages, farm: PrintFarm, screenshot: Screenshot
) -> None:
    page = await pages.open(farm.api.url, "/library", sign_in=(OPERATOR, PASSWORD))
    await expect(page.get_by_role("heading", name="Library")).to_be_visible()
    await expect(page.locator(".library-summary")).to_have_text("No files yet.")

    # Upload through the file picker; the row shows its progress bar and ends stored.
    data = sliced(color="#FFFFFF", grams=12.0, prediction_s=600, padding=PADDING)
    assert len(data) > 1_000_000
    await page.locator("#library-file-input").set_input_files(
        {"name": "bracket.gcode.3mf", "mimeType": "application/octet-stream", "buffer": data}
    )
    row = page.locator('.upload[data-name="bracket.gcode.3mf"]')
    await expect(row.locator("progress")).to_be_visible()
    await expect(row).to_have_attribute("data-state", "done")
    await expect(row.locator(".upload-status")).to_have_text("Stored in the library")
    await expect(row.locator("progress")).to_have_attribute("value", "100")

    # The file's card: thumbnail, printer model, plates, time and filament with its swatch.
    card = page.locator(".library-file").filter(has_text="bracket.gcode.3mf")
    await expect(card).to_have_count(1)
    thumb = card.locator("img.thumb")
    await expect(thumb).to_be_visible()
    # The PNG really loaded (a broken image has no natural width).
    await thumb.evaluate(
        "img => img.complete && img.naturalWidth > 0 || new Promise((ok, fail) => {"
        " img.addEventListener('load', ok); img.addEventListener('error', fail); })"
    )
    assert await thumb.evaluate("img => img.naturalWidth") > 0
    await expect(card.locator('[data-fact="printer"] dd')).to_have_text("P1S")
    await expect(card.locator('[data-fact="nozzle"] dd')).to_have_text("0.4 mm")
    await expect(card.locator('[data-fact="plates"] dd')).to_have_text("1")
    await expect(card.locator('[data-fact="time"] dd')).to_have_text("10 min")
    filament = card.locator(".filament")
    await expect(filament).to_have_count(1)
    await expect(filament).to_contain_text("PLA")
    await expect(filament).to_contain_text("12.0 g")
    swatch = filament.locator(".swatch")
    await expect(swatch).to_have_attribute("aria-label", "PLA #FFFFFF")
    colour = await swatch.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(255, 255, 255)"
    await expect(page.locator(".library-summary")).to_have_text("1 file")

    # Print → the dialog with the plate, its time and swatches → queue one copy.
    await card.get_by_role("button", name="Print bracket.gcode.3mf").click()
    dialog = page.get_by_role("dialog", name="Print bracket.gcode.3mf")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".plate-option img.thumb")).to_be_visible()
    await expect(dialog.locator(".plate-time")).to_have_text("10 min")
    await expect(dialog.locator(".filament .swatch")).to_have_count(1)
    await expect(dialog.get_by_label("Copies")).to_have_value("1")
    await dialog.get_by_label("One printer").check()
    printer = dialog.get_by_label("Printer", exact=True)
    await expect(printer.locator("option")).to_have_count(2)
    await printer.select_option(farm.serial())
    await screenshot(page, "dialog")
    await dialog.get_by_role("button", name="Queue 1 copy").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator(".notice-info")).to_contain_text("Queued 1 copy of bracket.gcode.3mf")

    # The job is in the queue for that printer and starts printing on the simulated printer.
    jobs = (await farm.get("/api/v1/jobs"))["items"]
    assert len(jobs) == 1
    (job,) = jobs
    assert (job["name"], job["plate"], job["copies"]) == ("bracket.gcode.3mf", 1, 1)
    assert job["target"]["printer"] == farm.serial()
    printing = await farm.until(
        lambda: farm.get(f"/api/v1/jobs/{job['id']}"),
        lambda j: j["state"] == "printing",
        "the job printing",
    )
    assert printing["printer"] == farm.serial()
    node = farm.sim.nodes[0]
    # The simulated printer took the job: heating and levelling first, then printing.
    assert node.printer.gcode_state in {"PREPARE", "RUNNING"}
    await screenshot(page, "queued")


async def test_refused_files_say_why(pages: Pages, farm: PrintFarm, screenshot: Screenshot) -> None:
    page = await pages.open(farm.api.url, "/library", sign_in=(OPERATOR, PASSWORD))
    await expect(page.locator(".library-summary")).to_have_text("No files yet.")
    await _drop(page, "broken.gcode.3mf", b"PK\x03\x04 this is not an archive")
    await _drop(page, "project.3mf", build_gcode_3mf(sliced=False))
    broken = page.locator('.upload[data-name="broken.gcode.3mf"]')
    await expect(broken).to_have_attribute("data-state", "refused")
    await expect(broken.locator(".upload-status")).to_contain_text("Refused — Unusable 3MF file")
    unsliced = page.locator('.upload[data-name="project.3mf"]')
    await expect(unsliced).to_have_attribute("data-state", "refused")
    await expect(unsliced.locator(".upload-status")).to_contain_text("not sliced")
    # Nothing of them was kept.
    await expect(page.locator(".library-summary")).to_have_text("No files yet.")
    assert (await farm.get("/api/v1/library/files"))["total"] == 0
    await screenshot(page, "refused")

    # A dropped sliced file goes in as well; the refusals can be dismissed.
    await _drop(page, "good.gcode.3mf", sliced())
    await expect(page.locator('.upload[data-name="good.gcode.3mf"]')).to_have_attribute(
        "data-state", "done"
    )
    await expect(page.locator(".library-file")).to_have_count(1)
    await broken.get_by_role("button", name="Dismiss broken.gcode.3mf").click()
    await expect(broken).to_have_count(0)
    # Chromium logs each refused upload (422) as a console error: those two are expected.
    expected = [p for p in pages.problems if REFUSED.search(p)]
    assert len(expected) == 2, pages.problems
    for problem in expected:
        pages.problems.remove(problem)


async def test_rename_and_delete_a_file(
    pages: Pages, farm: PrintFarm, screenshot: Screenshot
) -> None:
    await farm.upload(sliced(), "old-name.gcode.3mf")
    page = await pages.open(farm.api.url, "/library", sign_in=(OPERATOR, PASSWORD))
    card = page.locator(".library-file")
    await expect(card).to_have_count(1)
    await card.get_by_role("button", name="Edit old-name.gcode.3mf").click()
    dialog = page.get_by_role("dialog", name="Edit old-name.gcode.3mf")
    await dialog.get_by_label("Name").fill("new-name.gcode.3mf")
    await dialog.get_by_label("Folder").fill("customers/acme")
    await dialog.get_by_label("Tags").fill("bracket, urgent")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    await expect(card.locator(".file-name")).to_have_text("new-name.gcode.3mf")
    await expect(card.locator(".file-folder")).to_have_text("in customers/acme")
    await expect(card.locator(".tag")).to_have_text(["bracket", "urgent"])
    await expect(page.get_by_label("Folder")).to_contain_text("customers/acme")
    await screenshot(page, "edited")

    # Delete asks first; cancelling keeps the file.
    delete = card.get_by_role("button", name="Delete new-name.gcode.3mf")
    await delete.click()
    confirm = page.get_by_role("dialog", name="Delete new-name.gcode.3mf?")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(card).to_have_count(1)
    await delete.click()
    await confirm.get_by_role("button", name="Delete").click()
    await expect(page.locator(".library-file")).to_have_count(0)
    await expect(page.locator(".library-summary")).to_have_text("No files yet.")
    assert (await farm.get("/api/v1/library/files"))["total"] == 0


async def test_a_viewer_sees_files_but_no_upload_or_print(
    pages: Pages, farm: PrintFarm, screenshot: Screenshot
) -> None:
    await farm.upload(sliced(), "bracket.gcode.3mf")
    page = await pages.open(farm.api.url, "/library", sign_in=(VIEWER, PASSWORD), viewport=PHONE)
    card = page.locator(".library-file")
    await expect(card).to_have_count(1)
    await expect(card.locator('[data-fact="printer"] dd')).to_have_text("P1S")
    await expect(page.locator("library-upload")).to_have_count(0)
    await expect(page.locator('input[type="file"]')).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("^(Print|Delete|Edit)"))).to_have_count(
        0
    )
    # The page's own content fits a phone (the shared top bar is the shell's business).
    box = await card.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    assert await page.locator("library-page").evaluate("el => el.scrollWidth <= el.clientWidth")
    await screenshot(page, "viewer-phone")


async def test_the_job_dialog_picks_a_file_when_given_none(
    pages: Pages, farm: PrintFarm, screenshot: Screenshot
) -> None:
    await farm.upload(sliced(), "bracket.gcode.3mf")
    await farm.upload(sliced(plates=2), "two-plates.gcode.3mf")
    page = await pages.open(farm.api.url, "/library", sign_in=(OPERATOR, PASSWORD))
    await expect(page.locator(".library-file")).to_have_count(2)
    # The queue page opens the dialog without a file: do the same through the module.
    await page.evaluate(
        """async () => {
            const app = document.querySelector('script[type="module"]').src;
            const { openJobDialog } = await import(app.replace(/app\\.js$/, "job-dialog.js"));
            window.queued = openJobDialog().then((jobs) => jobs);
        }"""
    )
    dialog = page.get_by_role("dialog", name="Print a library file")
    await expect(dialog.locator(".pick-file")).to_have_count(2)
    await dialog.get_by_label("Search the library").fill("two")
    await expect(dialog.locator(".pick-file")).to_have_count(1)
    await dialog.locator(".pick-file").press("Enter")
    form = page.get_by_role("dialog", name="Print two-plates.gcode.3mf")
    await expect(form.locator(".plate-option")).to_have_count(2)
    # Keyboard only: the second plate, three copies, printers of the chosen model.
    await expect(form.get_by_label("Plate 1")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(form.get_by_label("Plate 2")).to_be_checked()
    await form.get_by_label("Copies").fill("3")
    await form.get_by_label("Any printer of chosen models").check()
    await expect(form.get_by_label("P1S", exact=True)).to_be_checked()
    await screenshot(page, "picked")
    await form.get_by_role("button", name="Queue 3 copies").click()
    jobs = await page.evaluate("window.queued")
    assert [(j["plate"], j["copy_index"]) for j in jobs] == [(2, 1), (2, 2), (2, 3)]
    assert jobs[0]["target"]["model_names"] == ["P1S"]
    assert (await farm.get("/api/v1/jobs"))["total"] == 3
