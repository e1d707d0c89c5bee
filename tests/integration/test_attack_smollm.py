"""`neuroscope attack --method gcg` on the bundled smollm2-135m: the shipped example, within the documented
budget, checked by an independent greedy decode of the re-tokenised prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neuroscope.attacks.cli import example
from neuroscope.cli import main

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# The documented CI budget (README "Adversarial suffixes"): 60 steps of 64 candidates; seed 0 succeeds well
# inside it here, and the budget leaves room for another CPU's rounding to take a different path.
BUDGET = ["--width", "64", "--steps", "60", "--seed", "0"]


@torch.no_grad()
def greedy(model, text: str, n: int) -> str:
    ids = model.to_tokens(text)
    new: list[int] = []
    for _ in range(n):
        nxt = int(model(ids)[0, -1].argmax())
        if nxt == model.tokenizer.eos_token_id:
            break
        new.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return model.tokenizer.decode(new)


def test_gcg_makes_the_model_start_with_the_target(smollm, capsys):
    out = ARTIFACTS / "attack_smollm.json"  # kept for a look at the run
    assert main(["attack", "--method", "gcg", *BUDGET, "--no-progress", "--json", str(out)]) == 0
    run = json.loads(out.read_text())
    ex = example()
    assert run["prompt"] == ex["prompt"] and run["target"] == ex["target"] == "Sure, I can help with that"
    assert run["success"] and run["steps"] <= 60 and run["verified_output"].startswith(ex["target"])
    assert run["losses"][-1] < run["init_loss"]
    # rendered as a user would send it, tokenised afresh, decoded by a loop without the KV cache
    text = smollm.format_chat([{"role": "user", "content": ex["prompt"] + run["best_suffix"]}])
    assert text == run["rendered_prompt"]
    assert greedy(smollm, text, 10).startswith(ex["target"])
    assert "success at step" in capsys.readouterr().out
