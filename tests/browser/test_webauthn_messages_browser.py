"""The browser's WebAuthn errors in the page's words, in real Chromium.

Chromium says "This is an invalid domain" (in English, whatever the page's language) when a
page at ``https://127.0.0.1`` asks for a passkey of ``localhost``. The page must say, in its own
language, what to do instead: open the public address.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser_rig import Server, screenshot

pytestmark = pytest.mark.browser


def test_a_passkey_at_the_ip_address_says_which_address_works(server: Server, launch: Any) -> None:
    page = launch().new_page()
    at_ip = server.url.replace("://localhost:", "://127.0.0.1:")
    page.goto(at_ip + "/sign-in")
    page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
    status = page.locator("#passkey-status")
    status.filter(has_text="refuse les clés d'accès").wait_for()
    assert f"Ouvrez {server.url}" in status.inner_text()
    assert "invalid domain" not in status.inner_text()
    screenshot(page, "passkey-at-ip-address")
