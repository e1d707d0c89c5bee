"""no_grad_rows: same values, gradients only for the rows after ``n``, nothing left behind, other threads untouched."""

from __future__ import annotations

import threading

import pytest
import torch

import neuroscope as ns
from neuroscope.errors import InvalidConfigError
from neuroscope.models.rowgrad import no_grad_rows


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_values_equal_and_only_later_rows_get_gradients(name):
    m = ns.load_model(f"tiny:{name}", device="cpu")
    ids = m.to_tokens(["abcab", "abdab"])
    emb = m.W_E[ids].detach()
    with torch.no_grad():
        ref = m.hf_model(inputs_embeds=emb).logits
    x = emb.clone().requires_grad_(True)
    with torch.enable_grad(), no_grad_rows(m, 1):
        out = m.hf_model(inputs_embeds=x).logits
        (g,) = torch.autograd.grad(out[:, -1].sum(), x)
    assert torch.allclose(out, ref, atol=1e-5)
    # row 0 went through every linear layer without autograd: only row 1's input has a gradient
    assert g[0].abs().max() == 0 and g[1].abs().max() > 0


def test_wrappers_are_removed_and_other_threads_unaffected():
    m = ns.load_model("tiny:llama", device="cpu")
    lin = m.hf_model.model.layers[0].mlp.down_proj
    assert "forward" not in lin.__dict__
    ids = m.to_tokens(["abcab", "abdab"])
    seen: list[float] = []
    entered, done = threading.Event(), threading.Event()

    def other():  # runs while the main thread is inside no_grad_rows: must see ordinary autograd
        entered.wait(5)
        x = m.W_E[ids].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(m.hf_model(inputs_embeds=x).logits[:, -1].sum(), x)
        seen.append(float(g[0].abs().max()))
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with no_grad_rows(m, 1):
        assert "forward" in lin.__dict__
        entered.set()
        done.wait(10)
    t.join()
    assert seen and seen[0] > 0
    assert "forward" not in lin.__dict__


def test_negative_rows_refused():
    m = ns.load_model("tiny:llama", device="cpu")
    with pytest.raises(InvalidConfigError, match="n >= 0"), no_grad_rows(m, -1):
        pass
