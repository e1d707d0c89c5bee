"""Max-activating examples, statistics and neuron ablation on a tiny model."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.neurons import activations, max_activating, neuron_ablation
from neuroscope.interventions import Ablate

TEXTS = ["The year 1984 was cold.", "I have 3 cats.", "hello world", "abc"]


def test_top_example_is_the_cached_maximum(tiny_llama, tmp_path):
    m = tiny_llama
    r = max_activating(m, TEXTS, "blocks.1.mlp.hook_post", neuron=5, k=3, window=4)
    acts = [a for a in activations(m, TEXTS, "blocks.1.mlp.hook_post", neuron=5)]
    best = max(float(a.max()) for a in acts)
    assert abs(r.examples[0].activation - best) < 1e-6
    e = r.examples[0]
    _, cache = m.run_with_cache(TEXTS[e.text_index], names=["blocks.1.mlp.hook_post"])
    assert abs(float(cache["post", 1][0, e.position, 5]) - e.activation) < 1e-5
    assert "[[" in e.highlighted()
    assert r.stats["count"] == sum(len(m.to_tokens(t)[0]) for t in TEXTS)
    assert r.examples[0].activation >= r.examples[1].activation >= r.examples[2].activation
    figures.write(r.figure(), tmp_path / "neuron.html")


def test_direction_reader(tiny_llama):
    d = torch.zeros(64)
    d[7] = 1.0
    r = max_activating(tiny_llama, TEXTS, "blocks.0.hook_resid_post", direction=d, k=1)
    _, cache = tiny_llama.run_with_cache(TEXTS[r.examples[0].text_index], names=["blocks.0.hook_resid_post"])
    assert abs(float(cache["resid_post", 0][0, r.examples[0].position, 7]) - r.examples[0].activation) < 1e-5


def test_neuron_ablation_matches_intervention(tiny_llama, tmp_path):
    r = neuron_ablation(tiny_llama, TEXTS[:2], [(0, 3), (1, 9)])
    with torch.no_grad():
        manual = float(
            tiny_llama.loss(TEXTS[0], interventions=[Ablate(neurons=[(0, 3), (1, 9)])])
            - tiny_llama.loss(TEXTS[0])
        )
    assert abs(r.per_text[0] - manual) < 1e-6
    assert r.ci[0] <= r.delta <= r.ci[1]
    figures.write(r.figure(), tmp_path / "ablation.html")
