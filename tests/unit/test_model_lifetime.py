"""A model that nobody references is freed, weights and all: the registries keyed by a model or its modules
(edit hosts, live edits, attention sites) hold no strong reference back to their key."""

from __future__ import annotations

import gc
import weakref

import neuroscope as ns
from neuroscope.edits import EditHost
from neuroscope.lab.live import LiveEdits
from neuroscope.models import attention


def test_a_dropped_model_with_edits_and_attention_hooks_is_freed():
    model = ns.load_model("tiny:llama", device="cpu")
    _, cache = model.run_with_cache("a b c", names=["blocks.0.attn.hook_pattern"])
    assert cache["blocks.0.attn.hook_pattern"].shape[-1] == cache["blocks.0.attn.hook_pattern"].shape[-2]
    host, live = EditHost.of(model), LiveEdits.of(model)
    assert host.model is model and live.model is model
    attn = [m for name, m in model.hf_model.named_modules() if name.endswith("self_attn")]
    refs = [weakref.ref(model), weakref.ref(model.hf_model), weakref.ref(attn[0])]
    sites = len(attention._SITES)
    del model, cache, attn, host, live
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert len(attention._SITES) < sites
