"""One truth on the bundled smollm2-135m: direct logit attribution adds up (heads -> attention term, neurons ->
MLP term, components -> logit difference) through the library and through ``/api/attribution``, and the route
returns the library's numbers."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from neuroscope.analysis._util import load_data
from neuroscope.analysis.attribution import gradient_x_input
from neuroscope.analysis.residual import direct_logit_attribution
from neuroscope.analysis.run import Run
from neuroscope.interventions import Ablate
from neuroscope.server.app import create_app
from neuroscope.server.settings import Settings

pytestmark = pytest.mark.integration

IOI = load_data("ioi")["prompts"][0]


@torch.no_grad()
def test_dla_sums_library_and_route(smollm):
    for ivs in ([], [Ablate(heads=[(9, 0), (20, 3)]), Ablate(neurons=[(5, 100)])]):
        r = direct_logit_attribution(Run.of(smollm, IOI["clean"], interventions=ivs), answer=IOI["answer"])
        err = r.additivity_error()
        print(f"library, {len(ivs)} interventions: {err}")
        assert err["heads"] <= 1e-4 and err["neurons"] <= 1e-4 and err["components"] <= 1e-4
        logits = smollm(IOI["clean"], interventions=ivs)[0, -1].float()
        assert abs(r.total - float(logits[r.answer_id])) <= 1e-4 * abs(r.total)

    spec = {"heads": [[9, 0], [20, 3]], "neurons": [[5, 100]]}
    ivs = [Ablate(heads=[(9, 0), (20, 3)]), Ablate(neurons=[(5, 100)])]
    app = create_app(Settings(model="smollm2-135m"), model=smollm)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        got = client.post(
            "/api/attribution",
            json={
                "prompt": IOI["clean"],
                "interventions": spec,
                "target": IOI["answer"],
                "all_neurons": True,
            },
        ).json()
    run = Run.of(smollm, IOI["clean"], interventions=ivs)
    lib = direct_logit_attribution(run, answer=IOI["answer"])
    comps = {c["label"]: c["value"] for c in got["components"]}
    n = smollm.cfg.n_layers
    assert got["target"] == IOI["answer"] and got["target_id"] == lib.answer_id
    assert abs(sum(comps.values()) - got["actual"]) <= 1e-4 * abs(got["actual"])
    worst = 0.0
    for li in range(n):
        for parts, bias, term in (
            (got["heads"][li], got["attn_bias"][li], comps[f"attn{li}"]),
            (got["neuron_map"][li], got["mlp_bias"][li], comps[f"mlp{li}"]),
        ):
            worst = max(worst, abs(sum(parts) + bias - term) / (sum(map(abs, parts)) + abs(bias)))
    print(f"route: worst relative gap {worst:.2e}")
    assert worst <= 1e-4
    as_t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    assert torch.allclose(as_t(got["heads"]), as_t(lib.head_map), atol=1e-4, rtol=1e-4)
    assert torch.allclose(as_t(got["neuron_map"]), as_t(lib.neuron_map), atol=1e-4, rtol=1e-4)
    assert torch.allclose(as_t([comps[f"mlp{li}"] for li in range(n)]), as_t(lib.mlp), atol=1e-4, rtol=1e-4)
    assert got["actual"] == pytest.approx(lib.actual, abs=1e-3)
    grads = gradient_x_input(run, answer=lib.answer_id)
    assert torch.allclose(as_t(got["token_scores"]), as_t(grads.attributions), atol=1e-4, rtol=1e-3)
