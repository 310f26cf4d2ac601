"""Fixtures of the browser tests (helpers in :mod:`browser_rig`): a running server, and
Chromium contexts that trust it. Tests skip, with the reason, without ``/usr/bin/chromium``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_rig import CHROMIUM, CHROMIUM_ARGS, Server, require_chromium, start_server, stop_server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the system Chromium through Playwright")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    require_chromium()
    running = start_server(tmp_path, "data")
    yield running
    stop_server(running)


@pytest.fixture
def launch(server: Server) -> Iterator[Any]:
    """``launch(*servers)`` → a Playwright browser context trusting those servers."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    sync_playwright = sync_api.sync_playwright

    with sync_playwright() as p:
        browsers: list[Any] = []

        def new_context(*servers: Server) -> Any:
            spki = ",".join(s.spki_hash() for s in (server, *servers))
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"],
            )
            browsers.append(browser)
            context = browser.new_context(locale="fr-FR")
            context.set_default_timeout(15_000)
            return context

        yield new_context
        for browser in browsers:
            browser.close()
