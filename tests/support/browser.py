"""What the dashboard's browser tests share: Debian's chromium driven by Playwright, and
the folder their screenshots go to.

The browser is the system's (``make test`` installs Debian's ``chromium``); Playwright
downloads none. Without it, or without the ``playwright`` package, a browser test
skips, except under ``CI=true``, where what the project's own files install must be
there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = Path("/usr/bin/chromium")

WAIT_MS = 8_000
"""How long a browser test waits for what it expects: the page polls every 2 s, so a
few polls' worth, for what the controller does first."""


def missing_browser() -> str | None:
    """Why no browser can be driven here, or None when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[browser]')"
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (make test installs Debian's chromium package)"
    return None


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Headless chromium, or a skip (a failure under ``CI=true``) when it cannot run."""
    reason = missing_browser()
    if reason is not None:
        # CI runs `make test`, which installs both: missing there is a broken install.
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # Tests run as root, where chromium refuses to start with its sandbox.
            args=["--no-sandbox"],
        )
        try:
            yield launched
        finally:
            launched.close()


def artifacts_folder(tmp_path: Path) -> Path:
    """Where screenshots go: ``$ROLLWISE_TEST_ARTIFACTS`` (a folder CI keeps), or the
    test's own tmp_path."""
    configured = os.environ.get("ROLLWISE_TEST_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Page, token: str) -> None:
    """Sign in on the page's form with ``token``."""
    from playwright.sync_api import expect

    expect(page.locator("#sign-in")).to_be_visible()
    page.locator("#token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def model_card(page: Page, model: str) -> Locator:
    """The overview's card of ``model``."""
    return page.locator("#models article.card").filter(
        has=page.get_by_role("heading", name=model, exact=True)
    )
