"""The UI's routes over real HTTP: who gets which page, the security headers, static caching."""

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bambufarm.auth.roles import Role
from bambufarm.web.assets import STATIC_DIR
from bambufarm.web.routes import CONTENT_SECURITY_POLICY
from tests.support.api import RunningApi, running_api

SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
ASSET_URL = re.compile(r'(?:src|href)="(/static/[0-9a-f]+/[A-Za-z0-9_.-]+)"')


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The app on SQLite: the pages do the same on every dialect."""
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data"
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "login"),
    [
        ("/", "/login"),
        ("/printers/01P00A000000001", "/login?next=/printers/01P00A000000001"),
        ("/password", "/login?next=/password"),
    ],
)
async def test_pages_send_strangers_to_sign_in(api: RunningApi, path: str, login: str) -> None:
    response = await api.client().get(path)
    assert response.status_code == 303
    assert response.headers["location"] == login
    assert response.headers["cache-control"] == "no-store"


async def test_a_forged_cookie_is_a_stranger(api: RunningApi) -> None:
    response = await api.client(cookies={"bf_session": "x" * 43}).get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


async def test_the_login_page_is_strictly_locked_down(api: RunningApi) -> None:
    response = await api.client().get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for directive in ("script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # No inline script: every script tag loads a file (the CSP would refuse anything else).
    tags = SCRIPT_TAG.findall(response.text)
    assert len(tags) == 2
    assert all(" src=" in tag for tag in tags)
    assert " style=" not in response.text
    assert '<login-form next="/"></login-form>' in response.text


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/printers/A1", "/printers/A1"),
        ("/printers/A1?tab=ams", "/printers/A1?tab=ams"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/login", "/"),
        ("/api/v1/printers", "/"),
        ("/a\tb", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
async def test_next_never_leaves_the_farm(api: RunningApi, given: str, kept: str) -> None:
    response = await api.client().get("/login", params={"next": given})
    assert response.status_code == 200
    assert f'<login-form next="{kept}"></login-form>' in response.text


async def test_next_is_escaped_into_the_page(api: RunningApi) -> None:
    response = await api.client().get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert "<script>alert" not in response.text
    assert 'next="/x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text


async def test_a_serial_with_odd_characters_is_refused(api: RunningApi) -> None:
    viewer = await api.user_session("vera", Role.VIEWER)
    response = await viewer.client.get("/printers/%3Cscript%3E")
    assert response.status_code == 422


async def test_a_generated_password_opens_only_the_password_page(api: RunningApi) -> None:
    admin = await api.sign_in("admin", api.admin_password)
    for path in ("/", "/printers/X1", "/login"):
        response = await admin.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/password"
    page = await admin.client.get("/password")
    assert page.status_code == 200
    assert '<password-form username="admin" forced></password-form>' in page.text


async def test_signed_in_pages_name_the_user_and_role(api: RunningApi) -> None:
    viewer = await api.user_session("vera", Role.VIEWER)
    fleet = await viewer.client.get("/")
    assert fleet.status_code == 200
    assert 'data-user="vera" data-role="viewer"' in fleet.text
    assert "<fleet-dashboard></fleet-dashboard>" in fleet.text
    detail = await viewer.client.get("/printers/01P00A000000001")
    assert '<printer-detail serial="01P00A000000001"></printer-detail>' in detail.text
    voluntary = await viewer.client.get("/password")
    assert '<password-form username="vera"></password-form>' in voluntary.text
    # Signed in already: the login page moves on.
    again = await viewer.client.get("/login", params={"next": "/printers/A1"})
    assert again.status_code == 303
    assert again.headers["location"] == "/printers/A1"


async def test_static_files_are_cached_by_digest(api: RunningApi) -> None:
    client = api.client()
    page = await client.get("/login")
    urls = ASSET_URL.findall(page.text)
    assert {url.rsplit("/", 1)[1] for url in urls} == {
        "icon.svg",
        "style.css",
        "theme.js",
        "app.js",
    }
    expected_types = {
        "icon.svg": "image/svg+xml",
        "style.css": "text/css; charset=utf-8",
        "theme.js": "text/javascript; charset=utf-8",
        "app.js": "text/javascript; charset=utf-8",
    }
    for url in set(urls):
        response = await client.get(url)
        assert response.status_code == 200, url
        name = url.rsplit("/", 1)[1]
        assert response.headers["content-type"] == expected_types[name]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (STATIC_DIR / name).read_bytes()
        again = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""


async def test_another_digest_gets_todays_file_uncached(api: RunningApi) -> None:
    response = await api.client().get("/static/0000000000000000/app.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/static/x/nothing.js",
        "/static/x/..%2Froutes.py",
        "/static/x/../routes.py",
        "/static/x/%2E%2E%2Froutes.py",
        "/static/x/shell.html",
    ],
)
async def test_only_the_static_files_are_served(api: RunningApi, path: str) -> None:
    response = await api.client().get(path)
    assert response.status_code == 404
    assert b"import" not in response.content


def test_every_module_import_names_a_static_file() -> None:
    # No build step checks the imports, so this does: a typo would break the page at load.
    imports = re.compile(r'^import\s[^;]*?from\s"\./([^"]+)";', re.MULTILINE)
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert len(scripts) >= 10
    seen = 0
    for script in scripts:
        for target in imports.findall(script.read_text(encoding="utf-8")):
            assert (STATIC_DIR / target).is_file(), f"{script.name} imports missing {target}"
            seen += 1
    assert seen >= 20
