"""The page shells: one string template, filled with escaped values per page.

Jinja2 is not a dependency, and a shell needs little: the page's title, who is signed in
(so controls a viewer may not use are never drawn), and the one component that makes up the
page. `string.Template` fills named holes; every value that came from outside (user names,
printer serials, the `next` path) goes through `html.escape`, and the only unescaped holes
take `Html`, which is built here from escaped parts.
"""

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final

from bambufarm.web.assets import AssetTable

TEMPLATE_DIR: Final = Path(__file__).resolve().parent / "templates"


class Html(str):
    """Markup whose every outside value is escaped already."""

    __slots__ = ()


def element(tag: str, attributes: Mapping[str, str | bool] | None = None, *content: str) -> Html:
    """`<tag a="v">content</tag>`: values and plain-str content escaped, `Html` kept as is.

    An attribute given True is written bare (`hidden`), one given False is left out.
    """
    parts = [tag]
    for name, value in (attributes or {}).items():
        if value is True:
            parts.append(name)
        elif value is not False:
            parts.append(f'{name}="{html.escape(value, quote=True)}"')
    inner = "".join(c if isinstance(c, Html) else html.escape(c, quote=False) for c in content)
    return Html(f"<{' '.join(parts)}>{inner}</{tag}>")


def join(*fragments: Html) -> Html:
    """Several fragments as one."""
    return Html("\n".join(fragments))


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who the page is for: name and role (a role name of `bambufarm.auth.roles.Role`)."""

    username: str
    role: str


@dataclass(frozen=True, slots=True)
class Shell:
    """The shell template and the static files it links to."""

    template: Template
    assets: AssetTable

    def render(
        self, *, title: str, page: str, main: Html, user: SignedInUser | None, nav: bool = True
    ) -> str:
        """The whole HTML document of one page (`nav` False hides the links to other pages)."""
        escape = html.escape
        values = {
            "title": escape(title),
            "page": escape(page),
            "username": escape(user.username) if user else "",
            "role": escape(user.role) if user else "",
            "icon_url": self.assets.url("icon.svg"),
            "css_url": self.assets.url("style.css"),
            "theme_url": self.assets.url("theme.js"),
            "app_url": self.assets.url("app.js"),
            "nav": _nav(page) if user and nav else Html(""),
            "account": _account(user) if user else Html(""),
            "main": main,
        }
        return self.template.substitute(values)


def load_shell(assets: AssetTable, directory: Path = TEMPLATE_DIR) -> Shell:
    """The shell template from `directory`, linked to `assets`."""
    return Shell(Template((directory / "shell.html").read_text(encoding="utf-8")), assets)


NAV_LINKS: Final = (
    ("/", "fleet", "Fleet"),
    ("/queue", "queue", "Queue"),
    ("/library", "library", "Library"),
    ("/history", "history", "History"),
    ("/settings", "settings", "Settings"),
)


def _nav(page: str) -> Html:
    links = []
    for href, name, label in NAV_LINKS:
        # A printer's page belongs to the fleet section.
        current = name == page or (name == "fleet" and page == "printer")
        links.append(
            element("a", {"href": href, "aria-current": "page" if current else False}, label)
        )
    return Html(f'<nav class="topnav" aria-label="Main">{join(*links)}</nav>')


def _account(user: SignedInUser) -> Html:
    role = element("span", {"class": "role-badge"}, user.role)
    who = element("span", {"class": "account-name"}, user.username, " ", role)
    sign_out = element(
        "button", {"type": "button", "class": "button", "id": "sign-out"}, "Sign out"
    )
    return join(who, sign_out)
