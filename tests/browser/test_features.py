"""The Features view in Chromium on smollm2-135m with a small SAE from the documented pipeline: search the
table, open a feature, see its contexts and token cloud (hovering a word highlights it in the contexts and
the prompt), toggle its patch and watch the next-token chart change; export the edit as a bundle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def lab_server(smollm, real_corpus, tmp_path_factory):
    from features_testutil import small_sae

    from neuroscope.sae import save_sae
    from neuroscope.sae.features import FeatureConfig, compute_features
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    root, sae = small_sae(smollm, real_corpus)
    folder = tmp_path_factory.mktemp("lab") / "l15-small"
    save_sae(sae, folder)
    compute_features(
        sae, root / "acts", smollm, folder / "features", FeatureConfig(top_contexts=8, n_examples=32)
    )
    ws = tmp_path_factory.mktemp("workspace")
    settings = Settings(model="smollm2-135m", saes=(str(folder),), workspace=str(ws), max_prompt_tokens=64)
    app = create_app(settings, model=smollm)
    with serve_in_thread(app) as base:
        yield base, folder, ws


def _pick(smollm, folder):
    """A strong feature whose top token is a word, and a prompt that contains that token."""
    from neuroscope.sae.features import FeatureStore

    store = FeatureStore(folder / "features")
    for row in store.table(sort="max_activation", descending=True, limit=200):
        tok = row["top_tokens"][0] if row["top_tokens"] else ""
        if len(tok.strip()) >= 4 and tok.strip().isalpha() and tok.startswith(" "):
            prompt = f"In the documentation, the{tok} is explained next to the"
            if tok in smollm.to_str_tokens(prompt):
                return row["id"], tok, prompt
    raise AssertionError("no feature with a word as its top token")


def test_search_open_hover_patch_and_export(lab_server, browser, smollm):
    from urllib.parse import quote

    base, folder, ws = lab_server
    fid, tok, prompt = _pick(smollm, folder)
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(180_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{base}/?prompt={quote(prompt)}#/features")
        page.wait_for_selector("[data-testid=feature-row]")
        total = int(page.inner_text("[data-testid=feature-total]").split()[0])
        assert total == 1152
        # search: the table filters on the server
        page.fill("[data-testid=feature-search]", tok.strip())
        page.wait_for_function(
            f"() => document.querySelector('[data-testid=feature-total]').innerText.split(' ')[0] !== '{total}'"
        )
        hits = int(page.inner_text("[data-testid=feature-total]").split()[0])
        assert 0 < hits < total
        page.wait_for_selector(f"[data-testid=feature-row][data-feature='{fid}']").click()
        # the detail: contexts coloured by activation, and the token cloud
        page.wait_for_selector("[data-testid=context]")
        assert page.locator("[data-testid=context]").count() > 0
        acts = page.eval_on_selector_all("[data-testid=context-token]", "els => els.map(e => +e.dataset.act)")
        assert max(acts) > 0
        cloud = page.locator(f"[data-testid=cloud-word][data-token='{tok}']")
        assert cloud.count() == 1
        page.wait_for_selector("[data-testid=prompt-token]")
        page.screenshot(path=str(ARTIFACTS / "features-detail.png"), full_page=True)
        cloud.hover()
        lit_ctx = page.locator(f"[data-testid=context-token].hl[data-token='{tok}']").count()
        lit_prompt = page.locator(f"[data-testid=prompt-token].hl[data-token='{tok}']").count()
        assert lit_ctx >= 1 and lit_prompt >= 1
        assert page.locator("[data-testid=context-token].hl").count() == lit_ctx  # only that word
        page.screenshot(path=str(ARTIFACTS / "features-hover.png"), full_page=True)
        page.mouse.move(0, 0)
        # click a prompt token: the features active there, strongest first
        page.locator(f"[data-testid=prompt-token][data-token='{tok}']").first.click()
        page.wait_for_selector("[data-testid=active-feature]")
        strengths = page.eval_on_selector_all(
            "[data-testid=active-features] tbody tr td:nth-child(2)", "els => els.map(e => +e.innerText)"
        )
        assert strengths == sorted(strengths, reverse=True) and fid in [
            int(x)
            for x in page.eval_on_selector_all(
                "[data-testid=active-feature]", "els => els.map(e => e.dataset.feature)"
            )
        ]
        # patch: the next-token chart changes over the WebSocket
        page.wait_for_selector("[data-testid=next-token-row]", state="attached")
        before = page.eval_on_selector_all(
            "[data-testid=next-token-row]", "els => els.map(e => [e.dataset.tokenId, +e.dataset.prob])"
        )
        page.click("[data-testid=patch-toggle]")
        page.wait_for_selector("[data-testid=patch-toggle][aria-pressed=true]")
        page.wait_for_function(
            "(b) => { const rows = [...document.querySelectorAll('[data-testid=next-token-row]')].map(e => [e.dataset.tokenId, +e.dataset.prob]);"
            " return rows.length && JSON.stringify(rows) !== JSON.stringify(b); }",
            arg=before,
        )
        page.wait_for_selector("[data-testid=patch-effect-bars]")
        assert "edits=" in page.url
        page.screenshot(path=str(ARTIFACTS / "features-patched.png"), full_page=True)
        # label it, then export the active edit as a bundle into the workspace
        page.fill("[data-testid=feature-label]", "documentation words")
        page.click("[data-testid=save-label]")
        page.wait_for_selector("text=saved")
        page.fill("[data-testid=export-name]", "from-browser")
        page.click("[data-testid=export-button]")
        page.wait_for_selector("[data-testid=export-download]")
        manifest = json.loads((ws / "bundles" / "from-browser" / "manifest.json").read_text())
        assert manifest["labels"]["l15-small"] == {str(fid): "documentation words"}
        assert [e["features"] for e in manifest["edits"].values()] == [[fid]]
        # untoggle: back to the plain run
        page.click("[data-testid=patch-toggle]")
        page.wait_for_selector("[data-testid=patch-toggle][aria-pressed=false]")
        page.wait_for_function(
            "(b) => JSON.stringify([...document.querySelectorAll('[data-testid=next-token-row]')].map(e => [e.dataset.tokenId, +e.dataset.prob])) === JSON.stringify(b)",
            arg=before,
        )
    finally:
        page.screenshot(path=str(ARTIFACTS / "features-final.png"), full_page=True)
        context.close()
    assert not errors, errors
