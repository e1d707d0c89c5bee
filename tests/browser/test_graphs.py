"""The provenance and circuit views in a real browser on smollm2-135m: a small SAE suite is trained here
(layers 3-5, a few seconds each), a feature's provenance is opened from the top-feature list, at least two
upstream layers are drawn, a feature node opens its detail and a head node its attention pattern (also starting
from the Features view, whose "open provenance" link leads there); the circuit
view draws the IOI circuit. Screenshots in test-artifacts/browser/."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from neuroscope.graphs.provenance import ProvenanceConfig, provenance

pytestmark = pytest.mark.browser

PROMPT = "When Mary and John went to the store, John gave a drink to"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def small_suite(smollm_suite) -> Path:
    return smollm_suite[0]  # shared with the integration tier (tests/conftest.py)


@pytest.fixture(scope="module")
def graph_base(smollm, small_suite):
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    # the suite's layer-5 SAE is also attached to the Features view (--sae), which then links to provenance
    settings = Settings(
        model="smollm2-135m",
        max_prompt_tokens=64,
        sae_suite=str(small_suite),
        saes=(str(small_suite / "L5"),),
    )
    with serve_in_thread(create_app(settings, model=smollm)) as base:
        yield base


@pytest.fixture
def gpage(browser, graph_base, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(300_000)
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on(
        "request",
        lambda r: None if r.url.startswith((graph_base, "data:", "blob:")) else outside.append(r.url),
    )
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page fetched from outside the server: {outside}"


def test_open_provenance_see_two_layers_click_through(gpage, graph_base, smollm, small_suite):
    from neuroscope.sae.suite import SAESuite

    # the view's own list of the most active features at the last position, each with "open provenance"
    gpage.goto(f"{graph_base}/?prompt={quote(PROMPT)}#/provenance/5")
    gpage.get_by_test_id("top-features").wait_for()
    link = gpage.locator("[data-testid^=open-provenance-5-]").first
    feature = int(link.get_attribute("data-testid").rsplit("-", 1)[1])
    link.click()
    gpage.locator("[data-testid=provenance-graph][aria-busy=false] svg .graph-node").first.wait_for()
    bands = gpage.evaluate(
        "() => [...document.querySelectorAll('.graph-node')].map(g => g.__data__.data.band)"
    )
    feature_bands = {
        b
        for b, t in zip(
            bands,
            gpage.evaluate("() => [...document.querySelectorAll('.graph-node')].map(g => g.dataset.type)"),
            strict=True,
        )
        if t in ("feature", "error", "token")
    }
    # target at stream 6 (resid_post 5); at least two upstream residual layers drawn: 5 and 4
    assert {6.0, 5.0, 4.0} <= feature_bands
    suite = SAESuite.load(small_suite, smollm)
    ref = provenance(smollm, suite, 5, feature, PROMPT, -1, ProvenanceConfig(depth=2))
    drawn = set(gpage.evaluate("() => [...document.querySelectorAll('.graph-node')].map(g => g.dataset.id)"))
    assert drawn == {n.id for n in ref.nodes}
    # a feature one layer up: click it, its detail (top tokens from the suite's feature store) appears
    upstream = gpage.locator(".graph-node[data-type=feature]").filter(has=gpage.locator("circle"))
    target_id = ref.target["id"]
    node_id = next(n.id for n in ref.nodes if n.type == "feature" and n.id != target_id and n.band == 5.0)
    gpage.locator(f".graph-node[data-id='{node_id}']").dispatch_event("click")
    gpage.get_by_test_id("feature-top-tokens").wait_for()
    node = ref.node(node_id)
    store = suite.features(node.layer)
    shown = gpage.get_by_test_id("feature-top-tokens").inner_text()
    assert store is not None and all(
        t.replace(" ", "␣").replace("\n", "↵") in shown for t in store.feature(node.feature)["top_tokens"][:3]
    )
    assert upstream.count() >= 3
    gpage.screenshot(path=str(ARTIFACTS / "provenance_feature_detail.png"), full_page=True)
    # a head node: its attention pattern on the prompt
    head_id = next((n.id for n in ref.nodes if n.type == "head"), None)
    assert head_id is not None
    gpage.locator(f".graph-node[data-id='{head_id}']").dispatch_event("click")
    gpage.get_by_test_id("head-heatmap").wait_for()
    # exports: the JSON carries the labels
    with gpage.expect_download() as dl:
        gpage.get_by_test_id("graph-export-json").click()
    doc = json.loads(Path(dl.value.path()).read_text())
    assert {n["id"]: n["label"] for n in doc["nodes"]} == {n.id: n.label for n in ref.nodes}
    with gpage.expect_download() as dl:
        gpage.get_by_test_id("graph-export-svg").click()
    assert Path(dl.value.path()).read_text().startswith("<svg")
    # maximise and back
    gpage.get_by_test_id("graph-maximise").click()
    assert "maximised" in gpage.get_by_test_id("graph-view").get_attribute("class")
    gpage.screenshot(path=str(ARTIFACTS / "provenance_maximised.png"))
    gpage.get_by_test_id("graph-maximise").click()


def test_open_provenance_from_the_features_view(gpage, graph_base, smollm, small_suite):
    """Issue 13's acceptance path: start in the Features view on the suite's SAE, follow its "open provenance"
    link for a feature active on the prompt, see two upstream layers drawn, click a node through to its detail."""
    from neuroscope.sae.suite import SAESuite

    suite = SAESuite.load(small_suite, smollm)
    _, cache = smollm.run_with_cache(PROMPT, names=["blocks.5.hook_resid_post"])
    feature = int(suite.sae(5, smollm).encode(cache["blocks.5.hook_resid_post"][0, -1].float()).argmax())
    gpage.goto(f"{graph_base}/?prompt={quote(PROMPT)}#/features/L5/{feature}")
    gpage.get_by_test_id("feature-provenance").wait_for()
    assert "another file" not in gpage.get_by_test_id("feature-provenance").inner_text()
    gpage.screenshot(path=str(ARTIFACTS / "features_open_provenance.png"))
    gpage.get_by_test_id(f"open-provenance-5-{feature}").click()
    gpage.wait_for_function(f"() => location.hash.startsWith('#/provenance/5/{feature}')")
    gpage.locator("[data-testid=provenance-graph][aria-busy=false] svg .graph-node").first.wait_for()
    ref = provenance(smollm, suite, 5, feature, PROMPT, -1, ProvenanceConfig(depth=2))
    drawn = gpage.evaluate(
        "() => [...document.querySelectorAll('.graph-node')].map(g => [g.dataset.id, g.__data__.data.band])"
    )
    assert {i for i, _ in drawn} == {n.id for n in ref.nodes}
    assert {6.0, 5.0, 4.0} <= {b for _, b in drawn}  # the target's stream and two upstream layers
    node_id = next(n.id for n in ref.nodes if n.type == "feature" and n.id != ref.target["id"])
    gpage.locator(f".graph-node[data-id='{node_id}']").dispatch_event("click")
    gpage.get_by_test_id("feature-top-tokens").wait_for()
    gpage.screenshot(path=str(ARTIFACTS / "features_to_provenance_detail.png"), full_page=True)


def test_circuit_view_draws_the_ioi_circuit(gpage, graph_base):
    # the shipped IOI task, two pairs and one IG step so the browser tier stays short
    gpage.goto(f"{graph_base}/#/circuit/ioi/60/1/2/1/60")
    gpage.locator("[data-testid=circuit-graph][aria-busy=false] svg .graph-node").first.wait_for()
    heads = gpage.locator(".graph-node[data-type=head]").count()
    assert heads >= 3
    assert gpage.locator(".graph-node[data-type=logits]").count() == 1
    edges = gpage.evaluate("() => document.querySelectorAll('.graph-svg .links line').length")
    assert edges >= 60
    assert "of 44371 edges" in gpage.get_by_test_id("circuit-summary").inner_text()
    gpage.get_by_test_id("circuit-curve").locator(".plot").wait_for()
    first_head = gpage.locator(".graph-node[data-type=head]").first
    first_head.dispatch_event("click")
    gpage.get_by_test_id("head-heatmap").wait_for()
