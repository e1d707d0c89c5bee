"""Shared fixtures: tiny random models (fast tier) and the bundled smollm2-135m (integration tier)."""

from __future__ import annotations

import functools
import gc
import os
from pathlib import Path

# Tests never touch a model hub: everything is tiny, bundled, or already cached.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

import neuroscope as ns
from neuroscope.models.tiny import TINY_TYPES


@pytest.fixture(scope="module", autouse=True)
def _collect_after_module(request):
    """A full garbage collection after each module of the smollm2-135m tiers (integration, browser).

    Exporting a model, serving it or running a CLI command in-process leaves reference cycles (torch.export's
    graphs, the server app) that hold a whole model and its buffers; Python frees cycles only in a full
    collection, which the object-count thresholds make rare in a process this size, so one process running
    every tier kept several dead copies of the 0.5 GB model at once. The unit tier's tiny models are left to
    the collector's own schedule (a collection per module there would cost more than it frees)."""
    yield
    if request.path.parent.name in ("integration", "browser"):
        gc.collect()


@functools.cache
def tiny(model_type: str = "llama") -> ns.HookedModel:
    return ns.load_model(f"tiny:{model_type}", device="cpu")


@pytest.fixture(params=TINY_TYPES)
def any_tiny(request) -> ns.HookedModel:
    return tiny(request.param)


@pytest.fixture
def tiny_llama() -> ns.HookedModel:
    return tiny("llama")


@pytest.fixture
def tiny_gpt2() -> ns.HookedModel:
    return tiny("gpt2")


@functools.cache
def _smollm() -> ns.HookedModel:
    return ns.load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def smollm() -> ns.HookedModel:
    return _smollm()


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory) -> Path:
    """The default English corpus (prose of Debian's python3-doc; `make test` installs and prepares it).

    Uses ./data/corpus when `make corpus` has written it, else prepares a copy for this session; without
    python3-doc this fails with the install command rather than skipping."""
    from neuroscope.record.datasets import CORPUS_FILE, DEFAULT_CORPUS_DIR, prepare_corpus

    here = Path(__file__).resolve().parent.parent / DEFAULT_CORPUS_DIR
    if (here / CORPUS_FILE).exists():
        return here
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus(out)
    return out


@pytest.fixture(scope="session")
def smollm_onnx(tmp_path_factory) -> Path:
    """smollm2-135m exported once per session, split after block 15, with the sentiment steering vector made
    at blocks.16.hook_resid_pre (the boundary); shared by the ONNX integration and browser tests. Exported from
    a model of its own: the shared ``smollm`` may carry other tests' live LoRA edits, which export refuses."""
    import json
    from importlib import resources

    from neuroscope.analysis.steering import steering_vector
    from neuroscope.export.onnx_split import ExportConfig, export_split
    from neuroscope.export.vectors import save_vector, select_vectors

    smollm = ns.load_model("smollm2-135m", device="cpu")
    root = tmp_path_factory.mktemp("onnx-smollm2")
    sets = json.loads(resources.files("neuroscope.data").joinpath("sentiment.json").read_text())
    vector = steering_vector(smollm, sets["positive"], sets["negative"], 16)
    save_vector(root / "vectors", "sentiment", 16, vector)
    out = root / "export"
    export_split(
        smollm, ExportConfig(split=15, max_length=512), out, select_vectors(root / "vectors", ["sentiment"])
    )
    # the export leaves reference cycles that hold this copy and its graphs: free them now, not at some
    # later full collection
    del smollm, vector
    gc.collect()
    return out


@pytest.fixture(scope="session")
def smollm_suite(smollm, real_corpus, tmp_path_factory):
    """A small SAE suite on smollm2-135m (layers 3-5, 16k tokens of the real corpus), trained once per session:
    the graphs' integration and browser tests share it. Returns (folder, the suite's eval rows)."""
    from neuroscope.sae.suite import SuiteConfig, train_suite

    out = tmp_path_factory.mktemp("suite") / "smollm2-l3-5"
    cfg = SuiteConfig(
        layers=(3, 4, 5),
        tokens=16_384,
        heldout_tokens=4096,
        k=32,
        expansion=2,
        epochs=2,
        batch_size=1024,
        ctx_len=128,
        data=str(real_corpus),
        ce_contexts=2,
    )
    result = train_suite(smollm, cfg, out, progress=False)
    return out, result.eval
