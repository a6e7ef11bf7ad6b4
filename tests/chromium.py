"""Debian's Chromium, headless, driven by Playwright's sync API (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def headless_chromium(*extra_args: str) -> Iterator[Any]:
    """A launched Playwright ``Browser`` on /usr/bin/chromium with ``CHROMIUM_ARGS`` and ``extra_args``,
    closed on exit.

    Skips the test when the binary is missing, or fails it under CI (where .ci/run installs it). Playwright's
    sync API keeps an event loop running in the main thread while it is open: hold it no longer than a module.
    """
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                "/usr/bin/chromium missing: .ci/run should have installed it (apt-get install chromium)"
            )
        pytest.skip("/usr/bin/chromium missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], headless=True
        )
        yield browser
        browser.close()
