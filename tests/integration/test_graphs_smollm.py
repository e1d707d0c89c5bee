"""Graphs on smollm2-135m: a small SAE suite (layers 3-5, trained here in about a minute), every sampled
provenance edge checked by nudging in a float64 copy, identity folding and the IOI circuit's faithfulness
ends against random circuits. The full-size numbers (suite 11-15, 100 edges, 60 causal targets, the whole
IOI task) are in docs/graphs/README.md, from benchmarks/graphs_bench.py."""

from __future__ import annotations

import pytest
import torch

import neuroscope as ns
from neuroscope.graphs.circuits import CircuitConfig, Task, find_circuit, load_task
from neuroscope.graphs.provenance import ProvenanceConfig, provenance
from neuroscope.graphs.verify import check_edges
from neuroscope.sae.suite import SAESuite

pytestmark = pytest.mark.integration

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def small_suite(smollm_suite):
    out, rows = smollm_suite  # trained once per session (tests/conftest.py), shared with the browser tier
    assert [r["layer"] for r in rows] == [3, 4, 5]
    assert all(r["fvu"] < 0.5 and r["l0"] <= 32 for r in rows), rows
    return out


def test_provenance_edges_are_exact_on_smollm(small_suite):
    model = ns.load_model("smollm2-135m", device="cpu", dtype=torch.float64)
    suite = SAESuite.load(small_suite, model)
    _, cache = model.run_with_cache(PROMPT, names=["blocks.5.hook_resid_post"], stop_at_layer=6)
    f = int(suite.sae(5).encode(cache["blocks.5.hook_resid_post"][0, -1].float()).argmax())
    g = provenance(model, suite, 5, f, PROMPT, -1, ProvenanceConfig(depth=2, fold_identity=False))
    assert {n.band for n in g.nodes} >= {6.0, 5.0, 4.0}
    r = check_edges(model, suite, g, n=60)
    assert len(r.checks) == 60
    assert r.max_rel_error <= 1e-3, sorted(r.checks, key=lambda c: -c.rel_error)[:3]
    root = g.node(g.target["id"])
    assert root.activation > 0 and 0 <= root.error_share <= 1 and 0 <= root.completeness <= 1
    folded = provenance(model, suite, 5, f, PROMPT, -1, ProvenanceConfig(depth=2))
    assert len(folded.nodes) <= len(g.nodes)


def test_ioi_circuit_beats_random_circuits(smollm):
    task = load_task(smollm, "ioi")
    task = Task(task.name, task.description, task.pairs[:2])
    n_total = 44_371
    r = find_circuit(smollm, task, CircuitConfig(edges=200, steps=2, sizes=(200, n_total), random_draws=2))
    assert r.n_edges_total == n_total
    assert r.faithfulness_at(n_total) == pytest.approx(1.0, abs=1e-4)
    row = next(c for c in r.curve if c["n_requested"] == 200)
    assert row["faithfulness"] > row["random_max"] + 0.1
    assert r.clean_metric > 2 and r.empty_metric < r.clean_metric
