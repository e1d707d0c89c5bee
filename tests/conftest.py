"""Shared fixtures: tiny random models (fast tier) and the bundled smollm2-135m (integration tier)."""

from __future__ import annotations

import functools
import os

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
