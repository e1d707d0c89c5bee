"""Shared fixtures: tiny random models (fast tier) and the bundled smollm2-135m (integration tier)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

# Tests never touch a model hub: everything is tiny, bundled, or already cached.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

import neuroscope as ns
from neuroscope.models.tiny import TINY_TYPES


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
