"""Playwright (async API) driving Debian's Chromium against the real server on loopback.

`browser` launches `/usr/bin/chromium` headless (never a downloaded browser: `playwright
install` is not part of this project); without it the tests are skipped with the apt-get
line, or fail under `CI=true`, where nothing may be skipped. `ui` is the real API with the UI
on a fresh SQLite database (the UI is the same on every dialect). `open_page` gives a page
that records console errors, uncaught exceptions and CSP violations, and fails the test if
any occurred. `screenshot(page, label)` saves a PNG under the session's temporary folder, in
`screenshots/`, named after the test.
"""

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from bambufarm.auth.roles import Role
from bambufarm.simulator.demo import start_demo_jobs
from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest
from tests.support.api import RunningApi, running_api
from tests.support.sim import running_fleet

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
INSTALL_HINT = "sudo apt-get install chromium"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# Page actions wait for what they need; on a loaded 2-core machine a page with its modules can
# take a few seconds, and a simulated printer reports about once a second.
ACTION_TIMEOUT_MS = 15_000

OpenPage = Callable[..., Awaitable[Page]]
Screenshot = Callable[[Page, str], Awaitable[Path]]


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless."""
    _need_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The server (API and UI) on a fresh SQLite database, with the first admin created."""
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}", tmp_path / "data"
    ) as running:
        yield running


class Pages:
    """Opens pages, each in its own browser context, and collects every error they report."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.problems: list[str] = []
        self._contexts: list[BrowserContext] = []

    async def open(
        self,
        base_url: str,
        path: str = "/",
        *,
        viewport: dict[str, int] = DESKTOP,
        sign_in: tuple[str, str] | None = None,
        prepare: Callable[[Page], Awaitable[None]] | None = None,
    ) -> Page:
        """A page at `path`, signed in first as (username, password) when given, after
        `prepare(page)` (e.g. routes) when given."""
        context = await self.browser.new_context(
            base_url=base_url, viewport=viewport, color_scheme="light", locale="en-GB"
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        self._contexts.append(context)
        if sign_in is not None:
            # The context's request client shares the cookie jar with its pages.
            username, password = sign_in
            response = await context.request.post(
                "/api/v1/auth/login", data={"username": username, "password": password}
            )
            assert response.ok, await response.text()
        page = await context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            # A refused request (a wrong login is a 401) is logged by Chromium as a console
            # error; those are expected answers, everything else is a fault of the page.
            if message.type == "error" and not _expected_http_error(message.text):
                self.problems.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        if prepare is not None:
            await prepare(page)
        await page.goto(path)
        return page

    async def close(self) -> None:
        """Close every context."""
        for context in self._contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[Pages]:
    """Pages that fail the test if any of them logged an error, threw, or broke the CSP."""
    opened = Pages(browser)
    yield opened
    await opened.close()
    assert not opened.problems, "the page reported errors:\n" + "\n".join(opened.problems)


@pytest.fixture
def open_page(pages: Pages, ui: RunningApi) -> OpenPage:
    """Open a page of the `ui` server."""

    async def open_one(path: str = "/", *, viewport: dict[str, int] = DESKTOP) -> Page:
        return await pages.open(ui.url, path, viewport=viewport)

    return open_one


_EXPECTED_STATUS = re.compile(
    r"Failed to load resource: the server responded with a status of (401|403|409|429)"
)


def _expected_http_error(text: str) -> bool:
    return bool(_EXPECTED_STATUS.search(text))


@pytest.fixture
def screenshot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Screenshot:
    """Save a full-page PNG of `page` as screenshots/<test>-<label>.png; returns its path."""
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    async def take(page: Page, label: str) -> Path:
        path = folder / f"{test_name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take


@dataclass
class DemoFarm:
    """The server with a simulated fleet imported, some printers printing."""

    api: RunningApi
    fleet: SimFleet
    printing: list[str]  # names of the printers that print

    def serial_of(self, name: str) -> str:
        """The serial of the simulated printer called `name`."""
        return next(
            n.spec.identity.serial for n in self.fleet.nodes if n.spec.identity.name == name
        )


# The demo's first print is an hour of printer time; at 30x it takes two minutes, so progress
# moves about 1 % every 1.2 s: visibly live within a test, far from finished by its end.
DEMO_TIME_SCALE = 30.0
# The demo's mix: an H2D (dual nozzle, AMS HT) too.
DEMO_MODELS = ("X1C", "P1S", "P1P", "A1", "A1 mini", "H2D")
DUAL_NOZZLE = 5
ADMIN, OPERATOR, VIEWER = "ada", "olga", "vera"


async def sign_up_and_import(api: RunningApi, manifest: Manifest) -> dict[str, Any]:
    """A user of each role, then the manifest's printers imported by the admin; the answer."""
    await api.add_user(ADMIN, Role.ADMIN)
    await api.add_user(OPERATOR, Role.OPERATOR)
    await api.add_user(VIEWER, Role.VIEWER)
    admin = await api.sign_in(ADMIN)
    imported = await admin.client.post(
        "/api/v1/printers/import",
        content=manifest.to_json(),
        headers={**admin.csrf_header, "Content-Type": "application/json"},
    )
    assert imported.status_code == 200, imported.text
    body: dict[str, Any] = imported.json()
    return body


# The P1P (idle in the demo) has Developer Mode off: it reports, but refuses LAN commands.
SECURED = 2


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoFarm]:
    """Simulated printers on loopback, imported into the server; the demo prints started."""
    async with (
        running_fleet(
            tmp_path / "sim",
            models=DEMO_MODELS,
            time_scale=DEMO_TIME_SCALE,
            tick_interval=0.5,
            overrides={SECURED: {"quirks": {"secured": True}}},
        ) as (fleet, manifest),
        running_api(f"sqlite+aiosqlite:///{tmp_path / 'bambufarm.db'}", tmp_path / "data") as api,
    ):
        imported = await sign_up_and_import(api, manifest)
        assert imported["added"] == len(DEMO_MODELS), imported
        printing = start_demo_jobs(fleet)
        yield DemoFarm(api, fleet, printing)
