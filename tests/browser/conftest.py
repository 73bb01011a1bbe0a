"""Headless Chromium for the browser tests: one browser per session, a fresh context per use."""

import os

import pytest

from tests.browser.support import CHROMIUM
from tests.browser.support import DESKTOP
from tests.browser.support import LAUNCH_ARGS


def pytest_collection_modifyitems(config, items):
    """Skip browser tests only when Chromium itself is missing."""
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (CI installs it in .ci/test)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run (launching costs about a second)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True,
        )
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile at desktop size, with the pages' real CSP enforced.

    Chromium cannot be told to trust the TLS rig's test CA, so it accepts any certificate;
    the HTTP clients of the same tests verify it.
    """
    ctx = browser.new_context(viewport=DESKTOP, ignore_https_errors=True)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()
