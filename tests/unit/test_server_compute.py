"""The worker's partial recomputation against full library runs, on every tiny architecture."""

from __future__ import annotations

import pytest
import torch

from neuroscope.interventions import Ablate, Steer
from neuroscope.server.compute import Spec, SteeringVectorEntry, build_interventions, plain_run, rerun
from neuroscope.server.worker import ModelWorker

PROMPT = "Partial recomputation must not change a thing"


@torch.no_grad()
def test_rerun_from_every_layer_equals_the_full_run(any_tiny):
    model = any_tiny
    run = plain_run(model, PROMPT)
    assert torch.allclose(run.next_logits, model(PROMPT)[0, -1].float(), atol=1e-5)
    n = model.cfg.n_layers
    vec = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    vectors = {"v": SteeringVectorEntry("v", n - 1, vec, "test")}
    names = model.resid_stream_names() + [f"blocks.{i}.hook_attn_out" for i in range(n)] + ["hook_embed"]
    for layer in range(n):
        spec = Spec(heads=((layer, 1),), neurons=((n - 1, 3),), steer=("v", None, 2.0))
        ivs, first = build_interventions(model, spec, vectors)
        assert first == layer
        expect = [Ablate(heads=[(layer, 1)]), Ablate(neurons=[(n - 1, 3)]), Steer(n - 1, vec, alpha=2.0)]
        ref_logits, ref_cache = model.run_with_cache(PROMPT, interventions=expect)
        got = rerun(model, run, ivs, first, names)
        assert got.interventions == tuple(ivs)
        assert torch.allclose(got.next_logits, ref_logits[0, -1].float(), atol=1e-4), (model.cfg.name, layer)
        for name in names:  # lower layers from the plain run, the rest recomputed: all as a full forward
            assert torch.allclose(got.cache[name], ref_cache[name], atol=1e-4), (model.cfg.name, layer, name)


def test_worker_cache_is_bounded_and_reused(tiny_llama):
    worker = ModelWorker(tiny_llama, cache_size=2)
    try:
        for p in ["one", "two", "three", "two"]:
            worker.run_sync(worker.next_token, p, Spec(), 3)
        assert list(worker._runs) == ["three", "two"]
        assert worker.stats["cache_hits"] == 1 and worker.stats["cache_misses"] == 3
        out = worker.run_sync(worker.next_token, "two", Spec(mlps=(1,)), 3)
        assert out.cached_baseline and out.first_layer == 1 and out.recomputed_layers == 1
    finally:
        worker.close()


def test_logit_lens_matches_the_analysis_library(tiny_llama):
    from neuroscope.analysis.lens import logit_lens

    worker = ModelWorker(tiny_llama)
    try:
        mine = worker.run_sync(worker.lens, PROMPT, Spec()).value
    finally:
        worker.close()
    ref = logit_lens(tiny_llama, PROMPT, k=1)
    assert mine["top_ids"] == [[pos[0] for pos in layer] for layer in ref.top_ids]
    assert torch.allclose(
        torch.tensor(mine["probs"]),
        torch.tensor([[pos[0] for pos in layer] for layer in ref.top_probs]),
        atol=1e-4,
    )


def test_steer_layer_override_and_unknown_vector(tiny_llama):
    vec = torch.ones(tiny_llama.cfg.d_model)
    vectors = {"v": SteeringVectorEntry("v", 1, vec, "test")}
    ivs, first = build_interventions(tiny_llama, Spec(steer=("v", 0, 1.0)), vectors)
    assert first == 0 and ivs[0].layer == 0
    from neuroscope.errors import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError, match="known: v"):
        build_interventions(tiny_llama, Spec(steer=("w", None, 1.0)), vectors)


@torch.no_grad()
def test_batched_rerun_equals_each_library_run(any_tiny):
    """Several prompts of different lengths, each with its own interventions, in one padded forward."""
    from neuroscope.server.compute import rerun_batch

    model = any_tiny
    n = model.cfg.n_layers
    vec = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    vectors = {"v": SteeringVectorEntry("v", n - 1, vec, "test")}
    cases = [
        ("a short one", Spec(heads=((n - 1, 0),))),
        ("a somewhat longer prompt than the others", Spec(heads=((0, 2), (n - 1, 1)), neurons=((0, 5),))),
        ("middle length prompt", Spec(mlps=(n - 1,), steer=("v", None, 3.0))),
        ("a short one", Spec(neurons=((n - 1, 7),))),
    ]
    runs = [plain_run(model, p) for p, _ in cases]
    got = rerun_batch(model, runs, [s for _, s in cases], vectors)
    for (prompt, spec), logits in zip(cases, got, strict=True):
        ivs, _ = build_interventions(model, spec, vectors)
        ref = model.run_with_hooks(prompt, interventions=ivs)[0, -1].float()
        assert torch.allclose(logits, ref, atol=1e-4), (model.cfg.name, prompt, (logits - ref).abs().max())
