"""Signing in through the UI in Chromium: refusals, the rate limit, the first-run password."""

from playwright.async_api import Page, expect

from bambufarm.auth.ratelimit import MAX_FAILURES
from bambufarm.auth.roles import Role
from tests.browser.conftest import PHONE, OpenPage, Screenshot
from tests.support.api import PASSWORD, RunningApi

NEW_PASSWORD = "a much longer farm password"


async def _sign_in(page: Page, username: str, password: str) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_wrong_login_is_refused_with_a_clear_message(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    await ui.add_user("olga", Role.OPERATOR)
    page = await open_page("/")
    # Not signed in: the dashboard sends the browser to the sign-in page.
    await expect(page).to_have_url(f"{ui.url}/login")
    await _sign_in(page, "olga", "not her password")
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("Wrong username or password.")
    await expect(page).to_have_url(f"{ui.url}/login")
    # The password field is emptied and focused for the next try; the username stays.
    await expect(page.get_by_label("Password")).to_have_value("")
    await expect(page.get_by_label("Password")).to_be_focused()
    await expect(page.get_by_label("Username")).to_have_value("olga")
    await screenshot(page, "refused")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{ui.url}/")
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()


async def test_too_many_wrong_logins_say_when_to_try_again(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    await ui.add_user("olga", Role.OPERATOR)
    page = await open_page("/login")
    alert = page.get_by_role("alert")
    for attempt in range(MAX_FAILURES):
        await _sign_in(page, "olga", f"guess {attempt}")
        await expect(alert).to_have_text("Wrong username or password.")
        # Emptied after each refusal: the next fill starts from a known state.
        await expect(page.get_by_label("Password")).to_have_value("")
    # Even the right password is refused now, and the message says so and when to come back.
    await _sign_in(page, "olga", PASSWORD)
    await expect(alert).to_contain_text("Too many failed attempts")
    await expect(alert).to_contain_text("Try again in 15 minutes")
    await expect(page).to_have_url(f"{ui.url}/login")
    await screenshot(page, "rate-limited")


async def test_empty_fields_are_named_before_anything_is_sent(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    page = await open_page("/login")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Enter your username and password.")
    await expect(page.get_by_label("Username")).to_be_focused()
    await screenshot(page, "empty")


async def test_first_sign_in_forces_the_admin_to_choose_a_password(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    page = await open_page("/login")
    await _sign_in(page, "admin", ui.admin_password)
    await expect(page).to_have_url(f"{ui.url}/password")
    await expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    await screenshot(page, "first-run")
    # Nothing else opens until the password is changed.
    await page.goto("/")
    await expect(page).to_have_url(f"{ui.url}/password")
    # Mistakes are named in place.
    await page.get_by_label("Generated password").fill(ui.admin_password)
    await page.get_by_label("New password", exact=True).fill("short")
    await page.get_by_label("New password again").fill("short")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_contain_text("at least 10 characters")
    await page.get_by_label("Generated password").fill("not the generated one")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_have_text("The current password is wrong.")
    # The real change signs in again with the new password and opens the fleet.
    await page.get_by_label("Generated password").fill(ui.admin_password)
    await page.get_by_role("button", name="Change password").click()
    await expect(page).to_have_url(f"{ui.url}/")
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    me = await page.request.get("/api/v1/auth/me")
    assert me.ok
    assert (await me.json())["must_change_password"] is False
    # The generated password is gone for good.
    refused = await ui.client().post(
        "/api/v1/auth/login", json={"username": "admin", "password": ui.admin_password}
    )
    assert refused.status_code == 401


async def test_sign_out_ends_the_session(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    await ui.add_user("olga", Role.OPERATOR)
    page = await open_page("/login")
    await _sign_in(page, "olga", PASSWORD)
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    # No printers yet: the page says so and how they get there.
    await expect(page.locator(".empty")).to_contain_text("No printers yet")
    await screenshot(page, "empty-fleet")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{ui.url}/login")
    me = await page.request.get("/api/v1/auth/me")
    assert me.status == 401


async def test_the_sign_in_page_fits_a_phone(
    ui: RunningApi, open_page: OpenPage, screenshot: Screenshot
) -> None:
    page = await open_page("/login?next=/printers/X1C00000001", viewport=PHONE)
    form = page.get_by_role("button", name="Sign in")
    await expect(form).to_be_visible()
    box = await form.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    # No sideways scrolling on a phone.
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"]
    await screenshot(page, "phone")
