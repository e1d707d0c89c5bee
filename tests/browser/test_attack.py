"""The attack panel in Chromium on smollm2-135m: start a search, watch the loss curve grow one point per step,
click heads in the workbench while it runs, stop it, apply the suffix, export the run."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import torch

from neuroscope.attacks.cli import example

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CURVE = "document.querySelector('[data-testid=attack-loss-curve]')"


def curve_points(page) -> int:
    return page.evaluate(f"() => {{ const g = {CURVE}; return g && g.data ? g.data[0].y.length : 0; }}")


# every distinct point count the curve shows, polled each animation frame
RECORD = f"""() => {{
  window.__curveCounts = [0];
  const tick = () => {{
    const g = {CURVE};
    const n = g && g.data ? g.data[0].y.length : null;
    const c = window.__curveCounts;
    if (n !== null && n !== c[c.length - 1]) c.push(n);
    requestAnimationFrame(tick);
  }};
  tick();
}}"""


def wait_points(page, n: int) -> int:
    """Wait until the curve has at least ``n`` points and exactly as many as the steps reported; return them."""
    return page.wait_for_function(
        f"""n => {{
          const g = {CURVE}, s = document.querySelector('[data-testid=attack-status]');
          if (!g || !g.data || !s) return false;
          const k = g.data[0].y.length;
          return k >= n && k === Number(s.dataset.steps) ? k : false;
        }}""",
        arg=n,
    ).json_value()


def status(page) -> dict:
    with urllib.request.urlopen(page.base + "/api/attack/status") as r:
        return json.loads(r.read())


def test_search_streams_stops_applies_and_exports(page, smollm, tmp_path):
    prompt, target = example()["prompt"], example()["target"]
    page.goto(page.base)
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=next-token-row]").first.wait_for(state="attached")
    page.get_by_test_id("nav-attack").click()
    warning = page.get_by_test_id("attack-warning")
    assert "red-teaming" in warning.inner_text() and "re-tokenised" in warning.inner_text()
    assert prompt in page.get_by_test_id("attack-prompt").inner_text()

    # a small search: 12 candidates per step, a 10-token suffix, more steps than the test waits for
    page.get_by_test_id("attack-width").fill("12")
    page.get_by_test_id("attack-suffix-len").fill("10")
    page.get_by_test_id("attack-steps").fill("200")
    page.get_by_test_id("attack-start").click()

    # the curve grows one point per step message. Points and the step counter are read in one evaluation once
    # they agree (the curve is redrawn in an effect just after the counter renders), and every point count the
    # page ever shows is recorded, so a redraw that skipped or repeated steps would show.
    page.evaluate(RECORD)
    seen = [wait_points(page, n) for n in (1, 2, 3)]
    assert seen == sorted(seen) and seen[-1] >= 3
    shown = page.evaluate("() => window.__curveCounts")
    assert shown[0] == 0 and all(a < b for a, b in zip(shown, shown[1:], strict=False)), shown
    assert page.get_by_test_id("attack-best-suffix").inner_text()

    # while it runs, live clicks in the workbench still answer
    assert status(page)["running"]
    page.get_by_test_id("nav-workbench").click()
    row = page.locator("[data-testid=next-token-row]").first
    row.wait_for(state="attached")
    before = row.get_attribute("data-prob")
    page.locator("[data-testid=head-cell][data-layer='9'][data-head='4']").click(button="right")
    page.wait_for_function(
        "prev => { const r = document.querySelector('[data-testid=next-token-row]');"
        " return r && r.dataset.prob !== prev; }",
        arg=before,
    )
    assert status(page)["running"]  # the search was still going while the click was answered
    page.locator("[data-testid=intervention-chip]").first.click()  # restore the head

    # back to the panel: the search kept going in the background; stop it
    page.get_by_test_id("nav-attack").click()
    # (the panel mounts again: its curve may not exist for a moment)
    page.wait_for_function(
        f"n => {{ const g = {CURVE}; return g && g.data && g.data[0].y.length > n; }}", arg=seen[-1]
    )
    page.get_by_test_id("attack-stop").click()
    page.wait_for_selector("[data-testid=attack-status][data-phase=done]")
    assert not status(page)["running"]
    text = page.get_by_test_id("attack-status").inner_text()
    assert text.startswith("Stopped") or text.startswith("Verified success")
    suffix = page.get_by_test_id("attack-best-suffix").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "attack-panel.png"), full_page=True)

    # export the run as JSON
    with page.expect_download() as dl:
        page.get_by_test_id("attack-export").click()
    path = tmp_path / "attack.json"
    dl.value.save_as(path)
    run = json.loads(path.read_text())
    assert {"best_suffix", "verified_output", "success", "steps", "losses", "seconds"} <= set(run)
    assert run["steps"] == len(run["losses"]) == curve_points(page) and run["target"] == target
    assert run["best_suffix"].strip() == suffix.strip()

    # apply: the prompt becomes the rendered prompt with the suffix, and every view reads it
    page.get_by_test_id("attack-apply").click()
    page.wait_for_selector("[data-testid=nav-workbench][aria-current=page]")
    assert page.get_by_test_id("prompt-input").input_value() == run["rendered_prompt"]
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=token-strip] [data-testid=token]').length === n",
        arg=smollm.to_tokens(run["rendered_prompt"]).shape[1],
    )
    page.wait_for_selector("[data-testid=next-token-panel][aria-busy=false]")
    top = int(page.locator("[data-testid=next-token-row]").first.get_attribute("data-token-id"))
    with torch.no_grad():
        assert top == int(smollm(run["rendered_prompt"])[0, -1].argmax())
    # the exported greedy answer begins with the token the next-token panel now shows first
    assert top == smollm.tokenizer.eos_token_id or run["verified_output"].startswith(smollm.to_string([top]))
