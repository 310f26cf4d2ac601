"""Screenshots of the main pages, for each role, in French and in English, taken in real
Chromium on the demo clinic (``secretum serve --dev --demo``), for a reviewer to look at:
``tests/browser/artifacts/pages/<lang>/<role>-<page>.png`` and ``.../pages/index.html`` (git-
ignored, never committed).

While it walks the pages it also checks what a person would notice: every page answers 200,
is in the language asked, and has no unlabelled field."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_rig import (
    ARTIFACTS,
    Server,
    require_chromium,
    sign_in_demo,
    start_server,
    stop_server,
    virtual_authenticator,
)

pytestmark = pytest.mark.browser

PAGES = ARTIFACTS / "pages"
LANGS = ("fr", "en")

_UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((e) => e.type !== 'hidden')
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby'))
  .map((e) => e.name || e.id)"""


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """The demo clinic (this module's ``server``: the ``launch`` fixture trusts it)."""
    require_chromium()
    running = start_server(tmp_path, "data", "--demo")
    yield running
    stop_server(running)


def _path(page: Any) -> str:
    return urlsplit(page.url).path


def _shoot(page: Any, server: Server, lang: str, role: str, name: str, path: str) -> Path:
    response = page.goto(server.url + path)
    if response is None:  # only the fragment changed (a tab of the same page): no new request
        assert "#" in path, path
    else:
        assert response.status == 200, (path, response.status)
    assert page.evaluate("document.documentElement.lang") == lang, path
    assert page.evaluate(_UNLABELLED) == [], path
    target = PAGES / lang / f"{role}-{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


def _index(shots: list[Path]) -> Path:
    """A page listing the screenshots, by language, for a reviewer."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>Secretum — pages</title>",
        "<style>body{font-family:system-ui;margin:2rem}figure{display:inline-block;"
        "margin:1rem;vertical-align:top}img{width:22rem;border:1px solid #ccc}</style>",
        "<h1>Secretum — main pages of the demo clinic</h1>",
    ]
    for lang in LANGS:
        parts.append(f"<h2>{lang}</h2>")
        for shot in sorted(s for s in shots if s.parent.name == lang):
            rel = html.escape(f"{lang}/{shot.name}")
            parts.append(
                f'<figure><a href="{rel}"><img src="{rel}" alt="{html.escape(shot.stem)}">'
                f"</a><figcaption>{html.escape(shot.stem)}</figcaption></figure>"
            )
    index = PAGES / "index.html"
    index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return index


def test_screenshots_of_the_main_pages_in_both_languages(server: Server, launch: Any) -> None:
    demo = server
    shots: list[Path] = []
    anonymous = launch().new_page()
    for lang in LANGS:
        anonymous.context.add_cookies([{"name": "lang", "value": lang, "url": demo.url}])
        shots.append(_shoot(anonymous, demo, lang, "anonymous", "sign-in", "/sign-in"))

    pages_of = {
        "patient": [
            ("record", "/me/record"),
            ("consents", "/me/consents"),
            ("care-team", "/me/care-team"),
            ("access-log", "/me/access-log"),
            ("rights", "/me/rights"),
            ("step-up", "/account/step-up?next=/me/rights"),
            ("security", "/account/security"),
        ],
        "practitioner": [
            ("patients", "/practice/patients"),
            ("record", "{record}"),
            ("record-measurements", "{record}#measurements"),
            ("record-documents", "{record}#documents"),
            ("break-glass", "/practice/break-glass"),
        ],
        "dpo": [
            ("audit", "/dpo/audit"),
            ("audit-entries", "/dpo/audit/entries"),
            ("break-glass", "/dpo/break-glass"),
        ],
        "admin": [
            ("users", "/admin/users"),
            ("invitations", "/admin/invitations"),
            ("settings", "/admin/settings"),
        ],
    }
    accounts = {"patient": "paul", "practitioner": "gp", "dpo": "dpo", "admin": "admin"}
    for role, key in accounts.items():
        page = launch().new_page()
        virtual_authenticator(page)
        sign_in_demo(page, demo, key)
        record = ""
        if role == "practitioner":
            page.goto(demo.url + "/practice/patients")
            record = page.locator("table a[href^='/practice/patients/']").first.get_attribute(
                "href"
            )
        for lang in LANGS:
            page.context.add_cookies([{"name": "lang", "value": lang, "url": demo.url}])
            for name, path in pages_of[role]:
                shots.append(_shoot(page, demo, lang, role, name, path.format(record=record)))
        if role == "practitioner":  # the tab bar shows the section named in the address
            page.goto(demo.url + record + "#documents")
            assert page.locator("#documents").is_visible()
            assert not page.locator("#measurements").is_visible()
        page.context.close()
    index = _index(shots)
    assert len(shots) == 2 * (1 + sum(len(v) for v in pages_of.values()))
    assert all(shot.stat().st_size > 5_000 for shot in shots)
    assert index.exists()
