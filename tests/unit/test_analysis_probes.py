"""Linear probes with a shuffled-label control."""

from __future__ import annotations

import torch

from neuroscope.analysis import figures
from neuroscope.analysis.probes import is_digit_label, probe_hook, token_dataset, train_probe


def test_probe_beats_control_on_separable_data(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 32, generator=gen)
    y = (x[:, 3] + 0.5 * x[:, 7] > 0).long()
    r = train_probe(x, y, seed=0)
    assert r.test_accuracy >= 0.9
    assert r.control_test_accuracy <= 0.7
    assert r.selectivity >= 0.3
    figures.write(r.figure(), tmp_path / "probe.html")


def test_digit_labels_and_token_dataset(tiny_llama):
    assert is_digit_label("7") == 1 and is_digit_label(" 42") == 1
    assert is_digit_label("a") == 0 and is_digit_label(",") is None
    texts = ["I have 3 cats and 12 dogs.", "Call 555 now", "In 1969 they flew."]
    x, y = token_dataset(tiny_llama, texts, "blocks.1.hook_resid_pre", is_digit_label)
    assert x.shape == (len(y), 64)
    assert int((y == 1).sum()) == int((y == 0).sum())  # balanced
    r = probe_hook(tiny_llama, texts * 2, "blocks.0.hook_resid_post")
    assert r.n_classes == 2 and 0 <= r.test_accuracy <= 1
