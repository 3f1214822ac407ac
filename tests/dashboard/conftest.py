"""Fixtures of the dashboard tests: one system Chromium per test module, a fresh page per test.

The browser tests fail (they are not skipped) when Chromium is missing: `.ci/run` installs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from dash_support import chromium
from playwright.async_api import Browser, Page, async_playwright


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    try:
        path = chromium()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=path, headless=True,
                                            args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    opened = await context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        await context.close()
