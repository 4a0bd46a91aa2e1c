"""The settings page in Chromium: printers added by hand against a simulated printer (tested
by the server first), maintenance mode, API keys shown once and usable, users, and what a
viewer may not touch."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, Route, expect

from bambufarm.auth.roles import Role
from bambufarm.simulator.manifest import ManifestPrinter
from tests.browser.conftest import ADMIN, PHONE, VIEWER, Pages, Screenshot
from tests.support.api import PASSWORD, RunningApi, running_api
from tests.support.sim import running_fleet


@dataclass
class Farm:
    """The server, with an admin and a viewer, and one simulated printer not yet added."""

    api: RunningApi
    printer: ManifestPrinter


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    """A simulated P1S on loopback and the server, the printer left for the test to add."""
    async with (
        running_fleet(tmp_path / "sim", models=("P1S",)) as (_fleet, manifest),
        running_api(f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}", tmp_path / "data") as api,
    ):
        await api.add_user(ADMIN, Role.ADMIN)
        await api.add_user(VIEWER, Role.VIEWER)
        yield Farm(api, manifest.printers[0])


async def _add_by_api(farm: Farm, name: str = "Bench P1S") -> None:
    admin = await farm.api.sign_in(ADMIN)
    p = farm.printer
    added = await admin.client.post(
        "/api/v1/printers",
        json={
            "serial": p.serial,
            "host": p.host,
            "access_code": p.access_code,
            "name": name,
            "mqtt_port": p.ports.mqtt,
            "ftps_port": p.ports.ftps,
        },
        headers=admin.csrf_header,
    )
    assert added.status_code == 201, added.text


async def _settings(pages: Pages, farm: Farm, username: str, tab: str = "", **kw: object) -> Page:
    page = await pages.open(
        farm.api.url, f"/settings{'#' + tab if tab else ''}", sign_in=(username, PASSWORD), **kw
    )
    await expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    return page


def _row(page: Page, serial: str) -> Locator:
    return page.locator(f'.printers-table tr[data-serial="{serial}"]')


async def _fill_printer(page: Page, p: ManifestPrinter, access_code: str) -> None:
    form = page.locator("settings-printers form.printer-form")
    await form.get_by_label("Name", exact=True).fill("Bench P1S")
    await form.get_by_label("IP address or host name").fill(p.host)
    await form.get_by_label("Serial number").fill(p.serial)
    await form.get_by_label("LAN access code").fill(access_code)
    await form.get_by_label("Model").select_option("P1S")
    await form.get_by_text("Ports (optional)").click()
    await form.get_by_label("MQTT port").fill(str(p.ports.mqtt))
    await form.get_by_label("FTPS port").fill(str(p.ports.ftps))


async def _printer_count(farm: Farm) -> int:
    admin = await farm.api.sign_in(ADMIN)
    listed = await admin.client.get("/api/v1/printers")
    assert listed.status_code == 200, listed.text
    return int(listed.json()["total"])


async def test_add_a_simulated_printer_by_hand_and_see_it_online(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    page = await _settings(pages, farm, ADMIN)
    await expect(page.get_by_role("tab", name="Printers")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(page.locator("settings-printers .empty")).to_be_visible()
    p = farm.printer
    await _fill_printer(page, p, p.access_code)
    await page.get_by_role("button", name="Test and add").click()

    await expect(page.locator("settings-printers form .form-status")).to_have_text(
        re.compile("Bench P1S added: the connection test passed")
    )
    row = _row(page, p.serial)
    await expect(row.locator(".conn-state")).to_have_text("Online")
    await expect(row.locator("th")).to_have_text("Bench P1S")
    await expect(row).to_contain_text(p.host)
    await expect(row).to_contain_text("P1S")
    # The access code left the page with the request: the form is empty again.
    await expect(page.get_by_label("LAN access code")).to_have_value("")
    assert await _printer_count(farm) == 1
    await screenshot(page, "added")
    # The same page on a phone in the dark theme: rows fold into labelled cards.
    await page.emulate_media(color_scheme="dark")
    await page.set_viewport_size(PHONE)
    await expect(row.locator('td[data-label="Address"]')).to_be_visible()
    await screenshot(page, "phone-dark")


async def test_a_wrong_access_code_is_refused_with_the_reason_and_nothing_is_saved(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    page = await _settings(pages, farm, ADMIN)
    await _fill_printer(page, farm.printer, "00000000")
    await page.get_by_role("button", name="Test and add").click()

    alert = page.locator("settings-printers form .notice-error")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("Not added. Printer refused the access code")
    await expect(page.locator(".printers-table tbody tr")).to_have_count(0)
    await expect(page.get_by_label("LAN access code")).to_have_value("")
    # What was typed stays, to correct the code and try again.
    await expect(page.get_by_label("Serial number")).to_have_value(farm.printer.serial)
    assert await _printer_count(farm) == 0
    await screenshot(page, "refused")


async def test_edit_and_maintenance_mode(pages: Pages, farm: Farm, screenshot: Screenshot) -> None:
    await _add_by_api(farm)
    serial = farm.printer.serial
    page = await _settings(pages, farm, ADMIN)
    row = _row(page, serial)
    await expect(row.locator(".conn-state")).to_have_text("Online")

    # Edit: the access code is never shown, and left blank it is kept (no new test needed).
    await row.get_by_role("button", name="Edit Bench P1S").click()
    dialog = page.get_by_role("dialog", name="Edit Bench P1S")
    await expect(dialog.get_by_label("LAN access code")).to_have_value("")
    await expect(dialog.get_by_label(re.compile("Auto-clear the plate"))).to_be_enabled()
    await dialog.get_by_label("Name", exact=True).fill("Bench left")
    await dialog.get_by_label(re.compile("Auto-clear the plate")).check()
    await screenshot(page, "edit")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_have_count(0)
    await expect(row.locator("th")).to_have_text("Bench left")
    await expect(row.locator(".conn-state")).to_have_text("Online")
    admin = await farm.api.sign_in(ADMIN)
    plate = await admin.client.get(f"/api/v1/printers/{serial}/plate")
    assert plate.json()["auto_clear"] is True, plate.text

    # Maintenance: confirmed, then the link is closed.
    await row.get_by_role("button", name="Disable (maintenance) Bench left").click()
    confirm = page.get_by_role("dialog", name="Put Bench left in maintenance?")
    await confirm.get_by_role("button", name="Disable").click()
    await expect(row.locator(".conn-state")).to_have_text("Maintenance")
    await expect(page.locator("settings-printers > .form-status")).to_have_text(
        "Bench left is in maintenance."
    )
    stored = await admin.client.get(f"/api/v1/printers/{serial}")
    assert stored.json()["enabled"] is False, stored.text
    await screenshot(page, "maintenance")

    await row.get_by_role("button", name="Enable Bench left").click()
    await expect(row.locator(".conn-state")).to_have_text("Online")


async def test_an_api_key_is_shown_once_and_works(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    page = await _settings(pages, farm, ADMIN, "keys")
    await expect(page.get_by_role("tab", name="API keys")).to_have_attribute(
        "aria-selected", "true"
    )
    form = page.locator("form.key-form")
    await form.get_by_label("Key name").fill("erp-sync")
    await form.get_by_label("queue", exact=True).check()
    await form.get_by_role("button", name="Create key").click()

    panel = page.locator(".secret-panel")
    await expect(panel).to_contain_text("This is the only time the key is shown")
    token = await panel.get_by_label("API key").input_value()
    assert re.fullmatch(r"bf_[0-9a-f]{16}_\S+", token), "not a key token"
    row = page.locator(".keys-table tbody tr", has_text="erp-sync")
    await expect(row).to_contain_text("queue")
    await expect(row).to_contain_text("never")
    await screenshot(page, "shown-once")

    await panel.get_by_role("button", name="Done").click()
    await expect(page.locator(".secret-panel")).to_have_count(0)
    assert token not in await page.content()

    client = farm.api.key_client(token)
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == ADMIN
    assert me.json()["scopes"] == ["queue", "read"]
    listed = await client.get("/api/v1/printers")
    assert listed.status_code == 200, listed.text

    # Revoked (after a confirmation), the key stops working at once.
    await row.get_by_role("button", name="Revoke erp-sync").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    await expect(page.locator(".keys-table tbody tr")).to_have_count(0)
    refused = await client.get("/api/v1/auth/me")
    assert refused.status_code == 401, refused.text


async def test_an_admin_creates_a_viewer_with_a_generated_password(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    page = await _settings(pages, farm, ADMIN, "users")
    form = page.locator("form.user-form")
    await form.get_by_label("User name").fill("wendy")
    await form.get_by_label("Role").select_option("viewer")
    await form.get_by_role("button", name="Create user").click()

    panel = page.locator(".secret-panel")
    await expect(panel).to_contain_text("Shown this once")
    password = await panel.get_by_label("Generated password").input_value()
    assert len(password) >= 10
    row = page.locator('.users-table tr[data-username="wendy"]')
    await expect(row.get_by_label("Role of wendy")).to_have_value("viewer")
    await expect(row).to_contain_text("Must change password")
    await screenshot(page, "created")
    await panel.get_by_role("button", name="Done").click()
    await expect(page.locator(".secret-panel")).to_have_count(0)

    signed_in = await farm.api.client().post(
        "/api/v1/auth/login", json={"username": "wendy", "password": password}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["role"] == "viewer"
    assert signed_in.json()["must_change_password"] is True


async def test_a_viewer_sees_the_settings_read_only(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    await _add_by_api(farm)
    page = await _settings(pages, farm, VIEWER, viewport=PHONE)
    row = _row(page, farm.printer.serial)
    await expect(row.locator(".conn-state")).to_have_text("Online")
    panel = page.locator("settings-printers")
    await expect(panel).to_contain_text("Only an admin can add, change or remove printers.")
    await expect(panel.get_by_role("button")).to_have_count(0)
    await expect(panel.locator("form, input, select")).to_have_count(0)
    await screenshot(page, "printers")

    # The tabs work from the keyboard: arrow right goes to the account tab.
    await page.get_by_role("tab", name="Printers").focus()
    await page.keyboard.press("ArrowRight")
    account = page.get_by_role("tab", name="My account")
    await expect(account).to_be_focused()
    await expect(account).to_have_attribute("aria-selected", "true")
    users = page.locator("settings-users")
    await expect(users.get_by_role("link", name="Change my password")).to_have_attribute(
        "href", "/password"
    )
    await expect(users.locator("table, form, button, select")).to_have_count(0)

    # A viewer's own API keys carry the read scope only: no other scope is offered.
    await page.keyboard.press("ArrowRight")
    keys = page.locator("settings-keys")
    await expect(keys.locator('input[name="scope"]')).to_have_count(1)
    await expect(keys.get_by_label("read", exact=True)).to_be_checked()
    await expect(keys.locator(".row-actions")).to_have_count(0)
    await screenshot(page, "keys")


async def test_an_admin_changes_a_role_resets_a_password_and_disables_an_account(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    page = await _settings(pages, farm, ADMIN, "users")
    row = page.locator(f'.users-table tr[data-username="{VIEWER}"]')
    # Your own row has no controls: the server refuses to let an admin demote themselves.
    own = page.locator(f'.users-table tr[data-username="{ADMIN}"]')
    await expect(own).to_contain_text("(you)")
    await expect(own.locator("select, button")).to_have_count(0)

    await row.get_by_label(f"Role of {VIEWER}").select_option("operator")
    await expect(page.locator("settings-users > .form-status")).to_have_text(
        f"{VIEWER} is now an operator."
    )

    await row.get_by_role("button", name=f"Reset the password of {VIEWER}").click()
    await page.get_by_role("dialog").get_by_role("button", name="Reset password").click()
    password = await page.locator(".secret-panel").get_by_label("Password").input_value()
    signed_in = await farm.api.client().post(
        "/api/v1/auth/login", json={"username": VIEWER, "password": password}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["role"] == "operator"

    # Disabling asks first; "Cancel" keeps the account as it is.
    await row.get_by_role("button", name=f"Disable {VIEWER}").click()
    await page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    await expect(row).to_contain_text("Must change password")
    await row.get_by_role("button", name=f"Disable {VIEWER}").click()
    await page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    await expect(row).to_contain_text("Disabled")
    await expect(row.get_by_role("button", name=f"Enable {VIEWER}")).to_be_visible()
    refused = await farm.api.client().post(
        "/api/v1/auth/login", json={"username": VIEWER, "password": password}
    )
    assert refused.status_code == 401, refused.text
    await screenshot(page, "disabled")


async def test_a_discovered_printer_fills_the_form(
    pages: Pages, farm: Farm, screenshot: Screenshot
) -> None:
    p = farm.printer
    # Which printers the server hears announce depends on the LAN (other simulators on this
    # host announce too), so the discovery answer is fixed here; the rest is the real server.
    listed = {
        "listening": True,
        "error": None,
        "items": [
            {
                "serial": p.serial,
                "model": p.model,
                "model_name": p.model_name,
                "name": "Announced P1S",
                "host": p.host,
                "connect": "lan",
                "bind": "free",
                "firmware": "01.08.00.00",
                "signal": -48,
                "last_seen": "2025-01-01T00:00:00Z",
            }
        ],
    }

    async def discovery(route: Route) -> None:
        await route.fulfill(json=listed)

    async def prepare(page: Page) -> None:
        await page.route("**/api/v1/discovery", discovery)

    page = await pages.open(farm.api.url, "/settings", sign_in=(ADMIN, PASSWORD), prepare=prepare)
    found = page.locator(f'.discovered li[data-serial="{p.serial}"]')
    await expect(found).to_contain_text("Announced P1S")
    await found.get_by_role("button", name="Add Announced P1S").click()
    form = page.locator("settings-printers form.printer-form")
    await expect(form.get_by_label("LAN access code")).to_be_focused()
    await expect(form.get_by_label("Serial number")).to_have_value(p.serial)
    await expect(form.get_by_label("IP address or host name")).to_have_value(p.host)
    await expect(form.get_by_label("Model")).to_have_value("P1S")
    await form.get_by_label("LAN access code").fill(p.access_code)
    await form.get_by_text("Ports (optional)").click()
    await form.get_by_label("MQTT port").fill(str(p.ports.mqtt))
    await form.get_by_label("FTPS port").fill(str(p.ports.ftps))
    await screenshot(page, "prefilled")
    await form.get_by_role("button", name="Test and add").click()
    await expect(_row(page, p.serial).locator(".conn-state")).to_have_text("Online")
    await expect(_row(page, p.serial).locator("th")).to_have_text("Announced P1S")
