"""Browser fixtures: the workbench on smollm2-135m served in-process, driven through Debian's Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("NEUROSCOPE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def workbench(smollm):
    from neuroscope.server.app import STATIC, create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    assert (STATIC / "index.html").exists(), (
        "the UI is not built: run `make ui` (cd ui && npm ci && npm run build)"
    )
    app = create_app(Settings(model="smollm2-135m", max_prompt_tokens=64, max_new_tokens=12), model=smollm)
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, workbench, request):
    """A fresh page; its console errors and any request leaving the server fail the test; a screenshot is kept."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(180_000)
    outside: list[str] = []
    errors: list[str] = []
    pg.on(
        "request",
        lambda r: None if r.url.startswith((workbench, "data:", "blob:")) else outside.append(r.url),
    )
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.base = workbench  # type: ignore[attr-defined]
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"
