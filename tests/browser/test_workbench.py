"""The workbench in a real browser (Chromium via Playwright) on smollm2-135m, checked against the library."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import torch

from neuroscope.interventions import Ablate, Steer

pytestmark = pytest.mark.browser

PROMPT = "The Eiffel Tower is located in the city of"
HEAD = (9, 4)
# The README's image, written under test-artifacts/ (tests write no tracked file); `make screenshot` runs
# this test and copies it to docs/screenshot.png.
README_PNG = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser" / "readme-workbench.png"


def show(tok: str) -> str:
    """The UI's rendering of a token (ui/src/state.ts showToken)."""
    return tok.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣") or "∅"


def run_prompt(page, prompt: str = PROMPT) -> None:
    page.goto(page.base)
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()


def next_token_rows(page) -> list[tuple[int, float]]:
    rows = page.locator("[data-testid=next-token-row]")
    return [(int(r.get_attribute("data-token-id")), float(r.get_attribute("data-prob"))) for r in rows.all()]


def wait_idle(page, testid: str) -> None:
    page.wait_for_selector(f"[data-testid={testid}][aria-busy=false]")


@torch.no_grad()
def library_probs(model, prompt: str, heads=(), neurons=()) -> torch.Tensor:
    ivs = [Ablate(heads=list(heads))] if heads else []
    ivs += [Ablate(neurons=list(neurons))] if neurons else []
    return torch.softmax(model.run_with_hooks(prompt, interventions=ivs)[0, -1].float(), -1)


def test_grid_has_every_head_and_heatmap_has_the_tokens(page, smollm):
    run_prompt(page)
    cells = page.locator("[data-testid=head-cell]")
    cells.first.wait_for()
    assert cells.count() == smollm.cfg.n_layers * smollm.cfg.n_heads == 270
    page.locator(f"[data-testid=head-cell][data-layer='{HEAD[0]}'][data-head='{HEAD[1]}']").click()
    page.wait_for_selector("[data-testid=head-heatmap] g.xtick text")
    wait_idle(page, "head-panel")
    tokens = [show(t) for t in smollm.to_str_tokens(PROMPT)]
    x = page.locator("[data-testid=head-heatmap] g.xtick text").all_text_contents()
    y = page.locator("[data-testid=head-heatmap] g.ytick text").all_text_contents()
    assert x == tokens and y == tokens
    pattern = page.evaluate("() => document.querySelector('[data-testid=head-heatmap]').data[0].z")
    _, cache = smollm.run_with_cache(PROMPT, names=[f"blocks.{HEAD[0]}.attn.hook_pattern"])
    expect = cache[f"blocks.{HEAD[0]}.attn.hook_pattern"][0, HEAD[1]].float()
    assert torch.allclose(torch.tensor(pattern), expect, atol=1e-4)


def test_ablating_a_head_changes_the_prediction_like_the_library(page, smollm):
    run_prompt(page)
    page.locator("[data-testid=next-token-row]").first.wait_for(state="attached")
    before = next_token_rows(page)
    base = library_probs(smollm, PROMPT)
    assert [i for i, _ in before] == base.topk(len(before)).indices.tolist()
    cell = page.locator(f"[data-testid=head-cell][data-layer='{HEAD[0]}'][data-head='{HEAD[1]}']")
    cell.click(button="right")  # right-click toggles the ablation
    page.wait_for_function(
        "prev => { const r = document.querySelector('[data-testid=next-token-row]');"
        " return r && r.dataset.prob !== String(prev); }",
        arg=before[0][1],
    )
    wait_idle(page, "next-token-panel")
    after = next_token_rows(page)
    assert after != before
    new = library_probs(smollm, PROMPT, [HEAD])
    assert [i for i, _ in after] == new.topk(len(after)).indices.tolist()
    for token_id, prob in after:
        assert prob == pytest.approx(float(new[token_id]), abs=1e-4)
    assert "ablated" in (cell.get_attribute("class") or "")
    assert f"heads={HEAD[0]}.{HEAD[1]}" in page.url
    # the URL restores the view: prompt and intervention come back after a reload
    page.reload()
    page.get_by_test_id("intervention-chip").first.wait_for()
    assert (
        page.get_by_test_id("intervention-chip").first.text_content().startswith(f"head L{HEAD[0]}H{HEAD[1]}")
    )
    page.locator("[data-testid=next-token-row]").first.wait_for(state="attached")
    wait_idle(page, "next-token-panel")
    assert next_token_rows(page) == after


def test_logit_lens_and_pca_render(page, smollm):
    run_prompt(page)
    page.wait_for_selector("[data-testid=lens-table]")
    page.wait_for_selector("[data-testid=pca-chart] .main-svg")
    n = smollm.cfg.n_layers
    tokens = smollm.to_str_tokens(PROMPT)
    rows = page.locator("[data-testid=lens-table] tbody tr")
    assert rows.count() == n + 1
    last = rows.nth(n).locator("td").all_text_contents()
    assert len(last) == len(tokens)
    top = library_probs(smollm, PROMPT).argmax()
    assert last[-1] == show(smollm.tokenizer.decode([int(top)]))
    xs = page.evaluate("() => document.querySelector('[data-testid=pca-chart]').data[0].x")
    assert len(xs) == n + 1 and all(isinstance(v, float | int) for v in xs)
    page.wait_for_selector("[data-testid=residual-norm-chart] .main-svg")
    page.wait_for_selector("[data-testid=dla-chart] .main-svg")
    for panel in ("lens-panel", "pca-panel", "residual-panel", "dla-panel", "attention-panel"):
        wait_idle(page, panel)
    # The README's screenshot: one head inspected and ablated, every view updated for it.
    cell = page.locator(f"[data-testid=head-cell][data-layer='{HEAD[0]}'][data-head='{HEAD[1]}']")
    cell.click()
    page.wait_for_selector("[data-testid=head-heatmap] g.xtick text")
    page.get_by_test_id("ablate-selected").click()
    page.wait_for_selector("[data-testid=next-token-chart] .legend")  # the plain-run bars are drawn
    page.set_viewport_size({"width": 1500, "height": 1380})
    for panel in ("next-token-panel", "lens-panel", "pca-panel", "dla-panel", "neurons-panel", "head-panel"):
        wait_idle(page, panel)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(1000)  # plotly's resize on the new viewport
    README_PNG.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(README_PNG), full_page=False)


def test_clicking_a_neuron_ablates_it_like_the_library(page, smollm):
    run_prompt(page)
    first = page.locator("[data-testid=neuron-row]").first
    first.wait_for()
    wait_idle(page, "next-token-panel")
    layer, neuron = int(first.get_attribute("data-layer")), int(first.get_attribute("data-neuron"))
    before = next_token_rows(page)
    first.click()
    page.wait_for_function(
        "prev => { const r = document.querySelector('[data-testid=next-token-row]');"
        " return r && r.dataset.prob !== String(prev); }",
        arg=before[0][1],
    )
    wait_idle(page, "next-token-panel")
    new = library_probs(smollm, PROMPT, neurons=[(layer, neuron)])
    after = next_token_rows(page)
    assert [i for i, _ in after] == new.topk(len(after)).indices.tolist()
    for token_id, prob in after:
        assert prob == pytest.approx(float(new[token_id]), abs=1e-4)
    assert (
        page.get_by_test_id("intervention-chip").first.text_content().startswith(f"neuron L{layer}N{neuron}")
    )
    assert f"neurons={layer}.{neuron}" in page.url
    # still listed (as ablated) once the views follow the intervention, so a second click restores it
    wait_idle(page, "neurons-panel")
    row = page.locator(f"[data-testid=neuron-row][data-layer='{layer}'][data-neuron='{neuron}']")
    assert "ablated" in (row.get_attribute("class") or "")
    row.click()
    page.wait_for_function("() => !location.search.includes('neurons=')")
    wait_idle(page, "next-token-panel")
    assert next_token_rows(page) == before


def test_steering_and_generation_follow_the_library(page, smollm):
    run_prompt(page)
    wait_idle(page, "next-token-panel")
    page.get_by_test_id("generate-button").click()
    page.wait_for_selector("[data-testid=generation-text]")
    assert page.get_by_test_id("generation-text").locator("b").text_content() == smollm.generate(
        PROMPT, max_new_tokens=12
    )
    # make a steering vector from the form's default contrast prompts; the UI then steers with alpha 4
    page.locator("summary", has_text="new vector from contrasting prompts").click()
    page.get_by_role("button", name="create").click()
    page.get_by_test_id("intervention-chip").first.wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=next-token-table] td') !== null")
    page.wait_for_function("() => location.search.includes('steer=')")
    wait_idle(page, "next-token-panel")
    layer = smollm.cfg.n_layers // 2
    hook = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, pos = smollm.run_with_cache("I love this. Wonderful!", names=[hook])
        _, neg = smollm.run_with_cache("I hate this. Terrible!", names=[hook])
    vec = (pos[hook][0, -1] - neg[hook][0, -1]).float()
    steer = [Steer(layer=layer, vector=vec, alpha=4.0)]
    with torch.no_grad():
        probs = torch.softmax(smollm.run_with_hooks(PROMPT, interventions=steer)[0, -1].float(), -1)
    rows = next_token_rows(page)
    assert [i for i, _ in rows] == probs.topk(len(rows)).indices.tolist()
    for token_id, prob in rows:
        assert prob == pytest.approx(float(probs[token_id]), abs=1e-4)
    page.get_by_test_id("generate-button").click()
    page.wait_for_selector("[data-testid=generate-panel] .baseline")
    steered = smollm.generate(PROMPT, max_new_tokens=12, interventions=steer)
    assert page.get_by_test_id("generation-text").locator("b").text_content() == steered


def test_bad_input_shows_an_error_not_a_blank_page(page):
    page.goto(page.base)
    page.get_by_test_id("prompt-input").fill("   ")
    page.get_by_test_id("run-button").click()
    alert = page.get_by_test_id("error-banner")
    assert "Type a prompt first" in alert.text_content()
    page.get_by_test_id("prompt-input").fill("word " * 200)
    page.get_by_test_id("run-button").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=error-banner]')?.textContent.includes('at most 64')"
    )
    assert page.get_by_test_id("prompt-input").is_visible()
    page.goto(page.base + "?prompt=" + quote(PROMPT) + "&heads=99.0")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=error-banner]')?.textContent.includes('out of range')"
    )
    assert "layer 99 is out of range" in page.get_by_test_id("error-banner").text_content()


def test_clicking_an_mlp_bar_ablates_that_mlp_like_the_library(page, smollm):
    run_prompt(page)
    page.wait_for_selector("[data-testid=dla-chart] .main-svg")
    wait_idle(page, "dla-panel")
    wait_idle(page, "next-token-panel")
    before = next_token_rows(page)
    labels, values = page.evaluate(
        "() => { const d = document.querySelector('[data-testid=dla-chart]').data[0]; return [d.x, d.y]; }"
    )
    # the MLP with the largest attribution has the tallest bar: easy to hit
    i = max((k for k, lab in enumerate(labels) if lab.startswith("mlp")), key=lambda k: abs(values[k]))
    layer = int(labels[i][3:])
    bar = page.locator("[data-testid=dla-chart] g.trace.bars g.point").nth(i)
    box = bar.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_test_id("intervention-chip").first.wait_for()
    assert page.get_by_test_id("intervention-chip").first.text_content().startswith(f"MLP L{layer}")
    page.wait_for_function(
        "prev => { const r = document.querySelector('[data-testid=next-token-row]');"
        " return r && r.dataset.prob !== String(prev); }",
        arg=before[0][1],
    )
    wait_idle(page, "next-token-panel")
    with torch.no_grad():
        ivs = [Ablate(hook=f"blocks.{layer}.hook_mlp_out")]
        probs = torch.softmax(smollm.run_with_hooks(PROMPT, interventions=ivs)[0, -1].float(), -1)
    after = next_token_rows(page)
    assert [t for t, _ in after] == probs.topk(len(after)).indices.tolist()
    for token_id, prob in after:
        assert prob == pytest.approx(float(probs[token_id]), abs=1e-4)
    assert f"mlps={layer}" in page.url


def test_a_view_opened_by_its_address_runs_the_prompt_in_its_box(page, smollm):
    """A link to a view (#/attack, or the workbench itself) shows results for the prompt in the box without a
    click on Run: nothing has run in a fresh page, so the box is the prompt."""
    page.goto(page.base + "#/attack")
    box = page.get_by_test_id("prompt-input").input_value()
    assert box.strip()
    page.get_by_test_id("attack-prompt").wait_for()
    assert box in page.get_by_test_id("attack-prompt").inner_text()
    assert "Run a prompt first" not in page.locator("main").inner_text()
    page.wait_for_function("() => location.search.includes('prompt=')")  # the run is in the URL, as after Run
    assert "#/attack" in page.url

    page.goto(page.base + "#/workbench")
    assert page.get_by_test_id("prompt-input").input_value() == box
    page.locator("[data-testid=next-token-row]").first.wait_for(state="attached")
    wait_idle(page, "next-token-panel")
    rows = next_token_rows(page)
    probs = library_probs(smollm, box)
    assert [i for i, _ in rows] == probs.topk(len(rows)).indices.tolist()
    for token_id, prob in rows:
        assert prob == pytest.approx(float(probs[token_id]), abs=1e-4)
