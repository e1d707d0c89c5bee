"""Prepared live edits: LoRA and hooked edits as request state, least recently used LoRA edits detached."""

from __future__ import annotations

import pytest
import torch
from edits_testutil import fresh, random_sae

from neuroscope.edits import ClampFeature, EditHost, ablation_edit
from neuroscope.errors import ResourceNotFoundError
from neuroscope.lab.live import LiveEdits, run_with_edits


def test_least_recently_used_lora_edits_are_detached():
    torch.set_num_threads(1)
    model = fresh("llama")
    sae = random_sae(model)
    live = LiveEdits.of(model)
    live.max_lora = 2
    for f in (1, 2):
        live.add_lora(f"e{f}", ablation_edit(model, sae, [f], rank=4))
    live.get(["e1"])  # e1 used: e2 is now the oldest
    live.add_lora("e3", ablation_edit(model, sae, [3], rank=4))
    assert sorted(live.edits) == ["e1", "e3"] and sorted(EditHost.of(model).names()) == ["e1", "e3"]
    with pytest.raises(ResourceNotFoundError, match="No prepared edit named 'e2'.*detached after 2 newer"):
        live.get(["e2"])
    hooked = live.add_hooked("c", [ClampFeature(sae, [5], value=3.0)], 1, {"method": "clamp"})
    assert hooked.kind == "hooked" and len(live.edits) == 3  # hooked edits hold no adapter: not counted
    t = model.to_tokens("features of the residual stream")
    with torch.no_grad():
        both = run_with_edits(model, t, ["e1", "c"])
        with EditHost.of(model).use(["e1"]):
            ref = model(t, interventions=[ClampFeature(sae, [5], value=3.0)])
    assert torch.allclose(both, ref, atol=1e-5)
