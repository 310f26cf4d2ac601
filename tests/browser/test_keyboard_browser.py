"""Keyboard use in real Chromium: every form field has a label, focus is visible, and a person
signs in and enrols a second factor with the keyboard alone (Tab, typing, Enter)."""

from __future__ import annotations

from typing import Any

import pytest
from browser_rig import Server, screenshot
from test_webauthn_browser import EMAIL, PASSWORD, _set_up_admin, _wait_path

pytestmark = pytest.mark.browser

_FOCUSED = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  const label = e.labels && e.labels.length ? e.labels[0].innerText
      : (e.getAttribute('aria-label') || e.innerText || '');
  return {tag: e.tagName.toLowerCase(), type: e.type || '', name: label.trim(),
          visible: style.outlineStyle !== 'none' || style.boxShadow !== 'none'};
}"""

_UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((e) => e.type !== 'hidden')
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby'))
  .map((e) => e.name || e.id)"""


def _tab_to(page: Any, tag: str, type_: str = "", limit: int = 25) -> dict[str, Any]:
    """Press Tab until an element of ``tag`` (and ``type_``) has the focus; every element
    passed on the way must show that it has it."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused: dict[str, Any] = page.evaluate(_FOCUSED)
        assert focused["visible"], f"focus not visible on {focused}"
        if focused["tag"] == tag and (not type_ or focused["type"] == type_):
            return focused
    raise AssertionError(f"no {tag} {type_} reachable with Tab")


def test_forms_are_labelled_and_sign_in_works_with_the_keyboard(
    server: Server, launch: Any
) -> None:
    page = launch().new_page()
    _set_up_admin(page, server)
    for path in ("/sign-in", "/register", "/sign-in/second-factor"):
        page.goto(server.url + path)
        assert page.evaluate(_UNLABELLED) == [], path

    page.goto(server.url + "/sign-in")
    email = _tab_to(page, "input", "email")
    assert email["name"] == "Adresse e-mail"
    page.keyboard.type(EMAIL)
    password = _tab_to(page, "input", "password")
    assert password["name"] == "Mot de passe"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")  # submits the form
    _wait_path(page, "/account/mfa")  # an administrator enrols a second factor first
    assert page.evaluate(_UNLABELLED) == []
    button = _tab_to(page, "button")
    assert button["name"]  # every button says what it does
    screenshot(page, "keyboard-mfa")
