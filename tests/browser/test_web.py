"""NeuroScope-Web in Chromium: both ONNX parts run in the page (onnxruntime-web, wasm) with nothing fetched from
outside; its numbers equal onnxruntime-python's; the steering slider changes the text; bad files show an error."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope.export.onnx_split import ExportConfig, export_split
from neuroscope.export.runtime import SplitRunner
from neuroscope.export.vectors import read_export_vectors, save_vector, select_vectors

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PROMPT = "I think the movie was"


@contextmanager
def serve_app(onnx_dir: Path, model):
    from neuroscope.server.app import create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    app = create_app(Settings(model=model.cfg.name, onnx_dir=str(onnx_dir)), model=model)
    with serve_in_thread(app) as base:
        yield base


@contextmanager
def serve_static(folder: Path):
    """The export folder as plain static files (what `python -m http.server` does): no workbench at all."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def open_page(browser, base: str, path: str, name: str):
    """A page whose requests must all go to ``base``; JavaScript errors fail; a screenshot is kept."""
    context = browser.new_context(viewport={"width": 1300, "height": 950})
    pg = context.new_page()
    pg.set_default_timeout(300_000)
    outside: list[str] = []
    errors: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(base + path)
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"web_{name}.png"), full_page=True)
        context.close()
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def rows(pg) -> list[tuple[int, float]]:
    return [
        (int(r.get_attribute("data-token-id")), float(r.get_attribute("data-prob")))
        for r in pg.locator("[data-testid=web-next-row]").all()
    ]


def run_prompt(pg, prompt: str, n_tokens: int) -> list[tuple[int, float]]:
    pg.wait_for_selector("[data-testid=web-next-row]")  # the first run after loading
    pg.get_by_test_id("web-prompt").fill(prompt)
    pg.get_by_test_id("web-run").click()
    pg.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=web-norm-row]')].length === n"
        " && document.querySelector('[data-testid=web-next]').getAttribute('aria-busy') === 'false'",
        arg=n_tokens,
    )
    return rows(pg)


def generate(pg, alpha: float) -> str:
    pg.get_by_test_id("web-alpha").fill(str(alpha))
    pg.wait_for_function(
        f"() => document.querySelector('[data-testid=web-alpha-value]').textContent === '{alpha:.2f}'"
    )
    pg.get_by_test_id("web-generate").click()
    pg.wait_for_selector("[data-testid=web-generated][aria-busy=true]", state="attached")
    pg.wait_for_selector("[data-testid=web-generated][aria-busy=false]")
    return pg.get_by_test_id("web-generated").inner_text()


def python_top(runner: SplitRunner, prompt: str, k: int = 5, vector=None, alpha: float = 0.0):
    logits, _ = runner.logits(runner.encode(prompt), vector=vector, alpha=alpha)
    p = torch.softmax(torch.from_numpy(logits[0, -1]).double(), -1)
    top = torch.topk(p, k)
    return [(int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)]


# --- smollm2-135m ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm_web(smollm, smollm_onnx):
    with serve_app(smollm_onnx, smollm) as base:
        yield base


def test_workbench_links_to_the_served_export(browser, smollm_web):
    """The workbench's nav shows NeuroScope-Web when ``--onnx`` serves an export, and the link opens it."""
    with open_page(browser, smollm_web, "/", "workbench_nav_web") as pg:
        link = pg.get_by_test_id("nav-web")
        link.wait_for()
        assert link.get_attribute("href") == "/web/"
        link.click()
        pg.wait_for_selector("[data-testid=web-status][aria-busy=false]")
        assert pg.url.rstrip("/").endswith("/web")


def test_web_next_token_equals_onnxruntime_python(browser, smollm_web, smollm_onnx):
    runner = SplitRunner(smollm_onnx, verify=False)
    ids = runner.encode(PROMPT)[0].tolist()
    with open_page(browser, smollm_web, "/web", "smollm2_next_token") as pg:
        status = pg.get_by_test_id("web-status")
        pg.wait_for_selector("[data-testid=web-status][aria-busy=false]")
        assert "smollm2-135m" in status.inner_text() and "blocks.16.hook_resid_pre" in status.inner_text()
        # served by the workbench with COOP/COEP: onnxruntime-web may use wasm threads
        assert "cross-origin isolated" in status.inner_text()
        got = run_prompt(pg, PROMPT, len(ids))[:5]
        # the page tokenised in the browser exactly as the exported tokenizer does in Python
        norm_rows = pg.locator("[data-testid=web-norm-row]")
        assert [int(r.get_attribute("data-token-id")) for r in norm_rows.all()] == ids
        want = python_top(runner, PROMPT)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert max(abs(a - b) for (_, a), (_, b) in zip(got, want, strict=True)) <= 1e-3
        # the residual-norm view shows the boundary's norms (part A's output) per token
        _, resid = runner.logits(np.asarray([ids]))
        page_norms = [float(r.get_attribute("data-norm-plain")) for r in norm_rows.all()]
        assert np.allclose(page_norms, np.linalg.norm(resid[0], axis=-1), rtol=1e-4)


def test_web_slider_changes_the_generated_text(browser, smollm_web, smollm_onnx):
    runner = SplitRunner(smollm_onnx, verify=False)
    v = read_export_vectors(smollm_onnx)["sentiment"].numpy()
    with open_page(browser, smollm_web, "/web", "smollm2_steering") as pg:
        run_prompt(pg, PROMPT, runner.encode(PROMPT).shape[1])
        assert pg.get_by_test_id("web-vector").input_value() == "sentiment"
        pg.locator("input[type=number]").fill("8")
        plain = generate(pg, 0.0)
        steered = generate(pg, 4.0)
        negative = generate(pg, -4.0)
        assert plain.startswith(PROMPT) and steered.startswith(PROMPT)
        assert len({plain, steered, negative}) == 3, (plain, steered, negative)
        # the page's greedy text is onnxruntime-python's with the same vector between the parts
        assert plain[len(PROMPT) :] == runner.generate(PROMPT, 8)
        assert steered[len(PROMPT) :] == runner.generate(PROMPT, 8, vector=v, alpha=4.0)
        # the page generates with the KV cache across the split; the text is the uncached path's
        assert "KV cache" in pg.get_by_test_id("web-kv").inner_text()
        assert steered[len(PROMPT) :] == runner.generate(PROMPT, 8, vector=v, alpha=4.0, cache=False)
        # and the next-token view follows the slider
        pg.wait_for_function(
            "() => document.querySelector('[data-testid=web-next]').getAttribute('aria-busy') === 'false'"
        )
        want = python_top(runner, PROMPT, vector=v, alpha=-4.0)
        got = rows(pg)[:5]
        assert [t for t, _ in got] == [t for t, _ in want]


# --- tiny model: static folder, bad files, long prompts --------------------------------------------
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    from neuroscope.models.loading import load_model

    model = load_model("tiny:llama", device="cpu")
    root = tmp_path_factory.mktemp("onnx-web-tiny")
    save_vector(
        root / "store",
        "push",
        1,
        torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(3)) * 5,
    )
    out = root / "export"
    # external data on, so the page's externalData path is exercised too
    config = ExportConfig(split=0, max_length=24, external_data_bytes=0)
    export_split(model, config, out, select_vectors(root / "store", ["push"]))
    return model, out


def test_web_works_as_static_files_from_the_export_folder(browser, tiny_export):
    model, folder = tiny_export
    runner = SplitRunner(folder)
    with serve_static(folder) as base, open_page(browser, base, "/index.html", "tiny_static") as pg:
        pg.wait_for_selector("[data-testid=web-next-row]")
        prompt = pg.get_by_test_id("web-prompt").input_value()
        want = python_top(runner, prompt, vector=None)
        got = rows(pg)[:5]
        assert [t for t, _ in got] == [t for t, _ in want]
        assert max(abs(a - b) for (_, a), (_, b) in zip(got, want, strict=True)) <= 1e-3
        # no COOP/COEP here: the page still runs, on one thread
        assert pg.get_by_test_id("web-threads").inner_text() == "1"
        # greedy steps in the page: one position per step with the KV cache == the whole sequence each step
        # == the library's generation
        short = "The cat"  # prompt + 6 new tokens within the export's 24
        ids = runner.encode(short)[0].tolist()
        bench = "([ids, c]) => window.nsweb.client.genBench(ids, 6, c)"
        cached = pg.evaluate(bench, [ids, True])
        uncached = pg.evaluate(bench, [ids, False])
        assert cached["cache"] and not uncached["cache"] and len(cached["stepsMs"]) == 6
        assert cached["ids"] == uncached["ids"]
        text = runner.tokenizer.decode(cached["ids"], skip_special_tokens=True)
        assert text == model.generate(short, 6, stop_at_eos=False)


def test_web_refuses_a_prompt_over_the_exported_length(browser, tiny_export):
    model, folder = tiny_export
    with serve_app(folder, model) as base, open_page(browser, base, "/web/", "tiny_too_long") as pg:
        pg.wait_for_selector("[data-testid=web-next-row]")
        pg.get_by_test_id("web-prompt").fill("x" * 40)
        pg.get_by_test_id("web-run").click()
        error = pg.get_by_test_id("web-error")
        error.wait_for()
        assert "at most 24" in error.inner_text() and error.is_visible()


def test_web_shows_an_error_for_a_corrupted_part(browser, tiny_export, tmp_path):
    model, folder = tiny_export
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    part = bad / "part_b_kv.onnx.data"  # the page loads the KV-cached parts
    data = bytearray(part.read_bytes())
    data[100] ^= 0x01
    part.write_bytes(bytes(data))
    with serve_app(bad, model) as base, open_page(browser, base, "/web/", "tiny_corrupted") as pg:
        error = pg.get_by_test_id("web-error")
        error.wait_for()
        text = error.inner_text()
        assert "part_b_kv.onnx.data" in text and "does not match manifest.json" in text and error.is_visible()
        assert pg.locator("[data-testid=web-next-row]").count() == 0
