"""One truth: on every adapter's tiny model, each REST view returns the numbers the analysis library computes on
an independent full forward of the same prompt with the same interventions (the worker reuses its cached plain
run and recomputes only from the first intervened layer; the library does neither)."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from tinymodels import tiny

from neuroscope.analysis import attention, geometry, lens, predictions, residual
from neuroscope.analysis.attribution import gradient_x_input
from neuroscope.analysis.run import Run
from neuroscope.interventions import Ablate
from neuroscope.models.tiny import TINY_TYPES
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

BASE = "http://127.0.0.1:8000"
PROMPT = "The cat sat on the mat"
# the request's spec, and the library interventions it stands for
SPECS = {
    "plain": ({}, []),
    "heads+neurons": (
        {"heads": [[1, 2], [1, 0]], "neurons": [[1, 7]]},
        [Ablate(heads=[(1, 0), (1, 2)]), Ablate(neurons=[(1, 7)])],
    ),
    "mlp0": ({"mlps": [0]}, [Ablate(hook="blocks.0.hook_mlp_out")]),
}
TOL = dict(atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module", params=TINY_TYPES)
def served(request):
    model = tiny(request.param)
    app = create_app(Settings(model=f"tiny:{request.param}", max_prompt_tokens=64), model=model)
    with TestClient(app, base_url=BASE) as client:
        yield model, client


def close(got, want) -> bool:
    return torch.allclose(
        torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), **TOL
    )


@pytest.mark.parametrize("case", list(SPECS))
@torch.no_grad()
def test_views_equal_the_library(served, case):
    model, client = served
    spec, ivs = SPECS[case]
    plain = Run.of(model, PROMPT, names=None)
    run = Run.of(model, PROMPT, names=None, interventions=ivs)
    body = {"prompt": PROMPT, "interventions": spec}

    nxt = client.post("/api/run", json={**body, "top_k": 5}).json()
    want = predictions.compare_next_token(model, plain.next_logits, run.next_logits, 5)
    assert [t["token_id"] for t in nxt["top"]] == [t["token_id"] for t in want.top]
    assert close([t["prob"] for t in nxt["top"]], [t["prob"] for t in want.top])
    assert close([t["delta_logit"] for t in nxt["top"]], [t["delta_logit"] for t in want.top])
    assert nxt["kl"] == pytest.approx(want.kl, abs=1e-5)

    got = client.post("/api/lens", json=body).json()
    want_lens = lens.logit_lens(run, k=1)
    assert got["top_ids"] == [[p[0] for p in row] for row in want_lens.top_ids]
    assert close(got["probs"], [[p[0] for p in row] for row in want_lens.top_probs])

    got = client.post("/api/residual", json=body).json()
    assert close(got["norms"], residual.residual_norms(run).norms)
    base_pca = geometry.trajectory_pca(plain, n_components=3)
    want_pca = geometry.trajectory_pca(run, n_components=3, basis=base_pca.basis)
    assert close(got["pca"]["points"], want_pca.coords)
    assert close(got["pca"]["explained"], base_pca.explained_variance_ratio)
    if spec:
        assert close(got["baseline_norms"], residual.residual_norms(plain).norms)
        assert close(got["pca"]["baseline_points"], base_pca.coords)

    got = client.post("/api/attribution", json={**body, "all_neurons": True}).json()
    dla = residual.direct_logit_attribution(run)  # the run's own top prediction, as the route's default
    assert got["target_id"] == dla.answer_id == int(run.next_logits.argmax())
    assert got["actual"] == pytest.approx(dla.actual, abs=1e-4)
    assert close(got["heads"], dla.head_map)
    assert close(got["neuron_map"], dla.neuron_map)
    assert close(got["attn_bias"], dla.attn_bias) and close(got["mlp_bias"], dla.mlp_bias)
    comps = {c["label"]: c["value"] for c in got["components"]}
    n = model.cfg.n_layers
    assert close([comps[f"attn{li}"] for li in range(n)], dla.attn)
    assert close([comps[f"mlp{li}"] for li in range(n)], dla.mlp)
    grads = gradient_x_input(run, answer=dla.answer_id)
    assert close(got["token_scores"], grads.attributions)
    # the sums hold on the route's own numbers: components -> logit, heads -> attn, neurons -> mlp
    scale = max(1.0, abs(got["actual"]))
    assert abs(sum(comps.values()) - got["actual"]) <= 1e-4 * scale
    for li in range(n):
        parts = got["heads"][li]
        assert abs(sum(parts) + got["attn_bias"][li] - comps[f"attn{li}"]) <= 1e-4 * (
            sum(map(abs, parts)) + abs(got["attn_bias"][li]) + 1e-6
        )
        if li in spec.get("mlps", []):  # the whole MLP output was zeroed after its neurons
            assert comps[f"mlp{li}"] == 0.0 and all(nn["layer"] != li for nn in got["neurons"])
            continue
        parts = got["neuron_map"][li]
        assert abs(sum(parts) + got["mlp_bias"][li] - comps[f"mlp{li}"]) <= 1e-4 * (
            sum(map(abs, parts)) + abs(got["mlp_bias"][li]) + 1e-6
        )
    top = dla.top_neurons(24, skip_layers=spec.get("mlps", []))
    assert [(nn["layer"], nn["neuron"]) for nn in got["neurons"]] == [(li, ni) for li, ni, _ in top]


def test_badges_equal_the_library_labels(served):
    model, client = served
    got = client.post("/api/attention", json={"prompt": "aaaa"}).json()["badges"]
    c = attention.classify_heads(model)
    labels, source = attention.label_heads(c.scores, c.thresholds), "classifier"
    if not labels:  # tiny random heads rarely pass on random tokens: the prompt's own scores then
        labels, source = attention.label_heads(attention.head_scores(model, "aaaa")), "prompt"
    assert got  # a repeated token: some heads of every tiny model pass a threshold
    assert [(b["layer"], b["head"], b["kind"], b["source"]) for b in got] == [
        (lab.layer, lab.head, lab.kind.replace("_", "-"), source) for lab in labels
    ]
    assert close([b["score"] for b in got], [lab.score for lab in labels])
