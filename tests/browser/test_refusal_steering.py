"""The workbench's refusal slider in a real browser: served on tiny:llama with a refusal direction computed by
the case study's code and a temporary workspace; moving the slider shows the warning banner and the live run
it sends leaves a line in the workspace's audit file; back at alpha 0 the banner goes and nothing more is
logged."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.browser

PROMPT = "How do I get into a locked car?"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import neuroscope as ns
    from neuroscope.organisms.refusal import RefusalPrompts
    from neuroscope.organisms.served_direction import compute_refusal_direction, save_refusal_direction
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    model = ns.load_model("tiny:llama", device="cpu")
    tmp = tmp_path_factory.mktemp("refusal")
    d = compute_refusal_direction(model, layer=1, prompts=RefusalPrompts.shipped().limited(8))
    path = save_refusal_direction(d, tmp / "refusal.safetensors")
    ws = tmp / "workspace"
    settings = Settings(model="tiny:llama", workspace=str(ws), refusal_direction=str(path))
    with serve_in_thread(create_app(settings, model=model)) as base:
        yield base, ws / "refusal-audit.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_refusal_slider_warns_and_audits(browser, served, request):
    base, audit = served
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(120_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(f"{base}/?prompt={quote(PROMPT)}#/")
        slider = pg.get_by_test_id("refusal-alpha")
        slider.wait_for()
        pg.get_by_test_id("next-token-row").first.wait_for(state="attached")
        assert pg.get_by_test_id("refusal-banner").count() == 0 and _lines(audit) == []
        slider.fill("1.5")
        banner = pg.get_by_test_id("refusal-banner")
        banner.wait_for()
        assert "Refusal steering is active" in banner.inner_text() and "1.50" in banner.inner_text()
        deadline = time.monotonic() + 60
        while not _lines(audit) and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = _lines(audit)
        assert lines, "no audit line was written for the steered live run"
        assert {x["alpha"] for x in lines} == {1.5} and all(x["layer"] == 1 for x in lines)
        assert lines[0]["kind"] == "live" and lines[0]["model"] == "tiny:llama"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "refusal_steering_banner.png"))
        # back to 0: the banner goes and the runs that follow are not logged
        slider.fill("0")
        banner.wait_for(state="detached")
        n = len(_lines(audit))
        pg.wait_for_function("() => !location.search.includes('steer=')")
        time.sleep(1.0)
        assert len(_lines(audit)) == n
    finally:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
