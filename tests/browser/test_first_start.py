"""The first start in Chromium: the server starts from an empty prepare cache (tiny:llama, 1,024 tokens), the
Features view shows the preparation's progress, then the prepared SAE's features, with no restart or reload;
the Provenance view then has its suite."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture
def fresh_server(real_corpus, tmp_path):
    import torch

    from neuroscope.models.loading import load_model
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    torch.set_num_threads(1)
    settings = Settings(
        model="tiny:llama",
        workspace=str(tmp_path / "ws"),
        max_prompt_tokens=64,
        prepare=True,
        prepare_dir=str(tmp_path / "prepared"),
        prepare_tokens=1024,
        prepare_data=str(real_corpus),
    )
    app = create_app(settings, model=load_model("tiny:llama", device="cpu"))
    with serve_in_thread(app) as base:
        yield base, app


def test_progress_then_features_with_no_restart(fresh_server, browser):
    base, app = fresh_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{base}/?prompt=When%20Mary%20and%20John#/features")
        page.wait_for_selector("[data-testid=prepare-progress]")
        assert "%" in page.inner_text("[data-testid=prepare-stage]")
        page.screenshot(path=str(ARTIFACTS / "prepare-progress.png"))
        # the same page, never reloaded: the prepared SAE's table appears when the suite is ready
        page.wait_for_selector("[data-testid=feature-row]")
        assert page.query_selector("[data-testid=prepare-progress]") is None
        assert "prepared-l1-k64" in page.inner_text("[data-testid=sae-select]")
        width = app.state.lab.get("prepared-l1-k64").sae.d_sae
        assert int(page.inner_text("[data-testid=feature-total]").split()[0]) == width
        page.screenshot(path=str(ARTIFACTS / "prepare-ready.png"))
        page.goto(f"{base}/?prompt=When%20Mary%20and%20John#/provenance")
        page.wait_for_selector("[data-testid=provenance-controls]")
        assert page.query_selector("[data-testid=provenance-no-suite]") is None
    finally:
        context.close()
    assert not errors, errors
