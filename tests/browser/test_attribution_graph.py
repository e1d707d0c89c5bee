"""The Circuits view's attribution graphs in a real browser on smollm2-135m, with small transcoders
fitted here to the prompt (every layer, 32 features, top-8): open a graph, change the pruning (the drawn nodes are the
library's re-pruned graph), group two features into a supernode and rename it, open a head's QK attribution
(the score the library computes), ablate a node and see the logits change (as the library's intervention
says). Without transcoders the view says how to get them. Screenshots in test-artifacts/browser/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import torch

from neuroscope.transcoders.model import Transcoder, TranscoderConfig, TranscoderSet

pytestmark = pytest.mark.browser

# starts with the special token the graph would prepend (circuit-tracer's convention), so the transcoders fitted
# on the model's own tokenisation see exactly the graph's tokens
PROMPT = "<|im_start|>The capital of France is"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
NODES = "() => [...document.querySelectorAll('.graph-svg .graph-node')].map(g => g.dataset.id)"


@torch.no_grad()
def fitted_transcoders(model, prompt: str, d_tc: int = 32, k: int = 8) -> TranscoderSet:
    """TopK transcoders on every layer with random encoders and decoders fitted (least squares) to the MLP
    outputs on ``prompt`` itself: exact there, so the features, not the error nodes, carry the graph."""
    names = [
        f"blocks.{l}.{h}" for l in range(model.cfg.n_layers) for h in ("ln2.hook_normalized", "hook_mlp_out")
    ]
    _, cache = model.run_with_cache(prompt, names=names)
    tcs = {}
    for layer in range(model.cfg.n_layers):
        cfg = TranscoderConfig(model.cfg.d_model, d_tc, layer, "topk", k=k, model_name=model.cfg.name)
        tc = Transcoder(cfg, seed=layer)
        x = cache[f"blocks.{layer}.ln2.hook_normalized"][0].float()
        y = cache[f"blocks.{layer}.hook_mlp_out"][0].float()
        tc.b_enc.fill_(1.0)  # every top-k feature fires
        tc.W_dec.copy_(torch.linalg.pinv(tc.encode(x)) @ y)
        tcs[layer] = tc
    return TranscoderSet(model.cfg.name, tcs)


@pytest.fixture(scope="module")
def attr_server(smollm):
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    app = create_app(Settings(model="smollm2-135m", max_prompt_tokens=64), model=smollm)
    tcs = fitted_transcoders(smollm, PROMPT)
    app.state.attribution.attach(tcs, "random (test)")
    with serve_in_thread(app) as base:
        yield base, app.state.attribution, tcs


@pytest.fixture
def apage(browser, attr_server, request):
    base = attr_server[0]
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page fetched from outside the server: {outside}"


def test_attribution_graph_workbench(apage, attr_server, smollm):
    from neuroscope.transcoders.intervene import NodeIntervention, intervene
    from neuroscope.transcoders.qk import qk_attribution

    base, service, tcs = attr_server
    pg = apage
    pg.goto(f"{base}/?prompt={quote(PROMPT)}#/circuit/attribution")
    assert pg.get_by_test_id("attr-prompt").input_value() == PROMPT
    pg.get_by_test_id("attr-max-nodes").fill("60")
    with pg.expect_response(lambda r: r.url.endswith("/api/attribution-graph/build")) as built:
        pg.get_by_test_id("attr-build").click()
    gid = built.value.json()["graph_id"]
    pg.locator("[data-testid=attr-graph][aria-busy=false] svg .graph-node").first.wait_for()
    # open: the drawn nodes are the library's graph at the default pruning (node 0.8, edge 0.98)
    first = set(pg.evaluate(NODES))
    assert first == {n["id"] for n in service.prune(gid, 0.8, 0.98)["graph"]["nodes"]}
    assert "replacement score" in pg.get_by_test_id("attr-summary").inner_text()

    # change the pruning: fewer nodes, exactly the library's re-pruned set
    pg.get_by_test_id("prune-node").fill("0.6")
    pg.wait_for_function(f"() => document.querySelectorAll('.graph-svg .graph-node').length < {len(first)}")
    pg.locator("[data-testid=attr-graph][aria-busy=false]").wait_for()
    pruned = service.prune(gid, 0.6, 0.98)["graph"]
    assert set(pg.evaluate(NODES)) == {n["id"] for n in pruned["nodes"]}
    assert f"{len(pruned['nodes'])} nodes" in pg.get_by_test_id("prune-shown").inner_text()

    # group a supernode: shift-click two features, group, rename; the two are drawn as one
    feats = [n for n in pruned["nodes"] if n["type"] == "feature"]
    assert len(feats) >= 3
    pair = sorted(feats, key=lambda n: -abs(n["attribution"]))[1:3]
    for n in pair:
        pg.locator(f".graph-node[data-id='{n['id']}']").dispatch_event("click", {"shiftKey": True})
    pg.get_by_test_id("supernode-group").click()
    sn = pg.locator(".graph-node[data-type=supernode]")
    sn.wait_for()
    drawn = set(pg.evaluate(NODES))
    assert len(drawn) == len(pruned["nodes"]) - 1 and not {n["id"] for n in pair} & drawn
    pg.get_by_test_id("supernode-name").fill("capital features")
    pg.wait_for_function(
        "() => document.querySelector('.graph-node[data-type=supernode]').__data__.data.label === 'capital features'"
    )

    # a head's QK attribution: the score the library computes
    pg.get_by_test_id("qk-layer").select_option("3")
    pg.get_by_test_id("qk-head").select_option("2")
    pg.get_by_test_id("qk-key").select_option("1")
    pg.get_by_test_id("qk-go").click()
    pg.get_by_test_id("qk-result").wait_for()
    qk = qk_attribution(smollm, tcs, PROMPT, 3, 2, -1, 1)  # key: the graph's position 1
    assert pg.get_by_test_id("qk-score").inner_text() == f"{qk.score:.4f}"
    assert pg.get_by_test_id("qk-pair").count() >= 5

    # ablate the most influential feature: the logits change as the library's intervention says
    top = max(feats, key=lambda n: abs(n["attribution"]))
    pg.locator(f".graph-node[data-id='{top['id']}']").dispatch_event("click")
    # its detail: the logit effects of its decoder row (the library's, through the feature route)
    # and its activation at each position of the prompt
    detail = service.feature(top["layer"], top["feature"], gid)
    promoted = [t["token"] for t in detail["promoted"][:8]]
    pg.get_by_test_id("feature-logits").wait_for()
    assert (
        " ".join(t.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣") or "∅" for t in promoted)
        in pg.get_by_test_id("feature-logits").inner_text()
    )
    shown = pg.evaluate(
        "() => [...document.querySelectorAll('[data-testid=feature-activations] span')].map(s => Number(s.title))"
    )
    assert shown == pytest.approx(detail["activations"], abs=1e-3) and shown[top["pos"]] > 0
    pg.get_by_test_id("intervene-ablate").click()
    pg.locator(
        "[data-testid=intervene-result][aria-busy=false] [data-testid=intervene-logit-node]"
    ).first.wait_for()
    shown = pg.evaluate(
        "() => [...document.querySelectorAll('[data-testid=intervene-logit-node]')]"
        ".map(r => [r.dataset.id, Number(r.dataset.before), Number(r.dataset.after)])"
    )
    held = service.held(gid)  # the graph's own tokens and every node of the unpruned graph
    ref = intervene(smollm, tcs, held.graph.tokens, [NodeIntervention(top["id"])], held.nodes)
    want = {r["id"]: (r["before"], r["after"]) for r in ref.logit_nodes}
    assert {i for i, _, _ in shown} == set(want)
    for i, before, after in shown:
        assert before == pytest.approx(want[i][0], abs=1e-4) and after == pytest.approx(want[i][1], abs=1e-4)
    assert max(abs(a - b) for _, b, a in shown) > 1e-3  # the logits moved
    assert pg.locator(".graph-node.ablated").count() == 1

    # automatic supernodes (the library's grouping of what the view shows); ablate one as well: its members go
    auto = service.supernodes(gid, 0.6, 0.98, 0.6, 0.5)["spec"]["groups"]  # the route's defaults
    assert auto
    pg.get_by_test_id("supernode-auto").click()
    pg.wait_for_function(
        f"() => document.querySelectorAll('.graph-node[data-type=supernode]').length === {len(auto)}"
    )
    rows = pg.get_by_test_id("supernode-row")
    assert [rows.nth(i).get_attribute("data-id") for i in range(rows.count())] == [g["id"] for g in auto]
    pg.locator(f".graph-node[data-id='{auto[0]['id']}']").dispatch_event("click")
    pg.get_by_test_id("intervene-ablate").click()
    both = service.intervene(gid, [{"node": top["id"]}, {"node": auto[0]["id"]}], {"groups": [auto[0]]})
    first_logit = both["logit_nodes"][0]
    pg.wait_for_function(
        "([id, want]) => { const r = document.querySelector(`[data-testid=intervene-logit-node][data-id='${id}']`);"
        " return r && Math.abs(Number(r.dataset.after) - want) < 1e-4; }",
        arg=[first_logit["id"], first_logit["after"]],
    )
    assert pg.locator(f".graph-node.ablated[data-id='{auto[0]['id']}']").count() == 1
    pg.screenshot(path=str(ARTIFACTS / "attribution_graph.png"), full_page=True)


def test_no_transcoders_state(page):
    page.goto(f"{page.base}/#/circuit/attribution")
    box = page.get_by_test_id("attr-no-transcoders")
    box.wait_for()
    assert "--transcoders" in box.inner_text()
    page.get_by_test_id("circuit-tab-task").click()
    page.get_by_test_id("circuit-controls").wait_for()
