"""Circuits on tiny models: the assembled forward equals the model, per-reader gradients from one row equal
those of the assembled rows, edge IG converges to the exact edge effect, mean ablation agrees with a plain
hooked forward, the faithfulness curve's ends, the task errors and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from graphs_testutil import tiny64, tiny_task

from neuroscope.cli import main
from neuroscope.errors import InvalidConfigError, TaskFileError
from neuroscope.graphs.assembled import Assembler
from neuroscope.graphs.circuits import (
    CircuitConfig,
    _pair_means,
    circuit_metric,
    edge_ig,
    edge_scores,
    find_circuit,
    load_task,
    task_means,
)
from neuroscope.graphs.schema import json_schema, validate_graph
from neuroscope.models.tiny import TINY_TYPES


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_assembled_forward_and_gradients(model_type):
    model = tiny64(model_type)
    task = load_task(model, tiny_task())
    pair = task.pairs[0]
    asm = Assembler(model)
    logits = model(pair.clean_ids[None])[0, -1]
    ref = float(logits[pair.answer] - logits[pair.wrong])
    rows = asm.run(pair.clean_ids, pair.answer, pair.wrong, grad=True)
    one = asm.outputs(pair.clean_ids, pair.answer, pair.wrong)
    # Gemma's norms compute in float32 even in a float64 model: 1e-6
    assert float(rows.metric.detach()) == pytest.approx(ref, rel=1e-6, abs=1e-7)
    assert float(one.metric) == pytest.approx(ref, rel=1e-6, abs=1e-7)
    torch.testing.assert_close(rows.outs.detach(), one.outs, rtol=1e-5, atol=1e-6)
    # the writers' outputs add up to the final residual (plus the attention output biases)
    _, cache = model.run_with_cache(pair.clean_ids[None], names=[model.final_resid_name])
    b_O = sum(model.b_O(l) for l in range(model.cfg.n_layers))
    torch.testing.assert_close(one.outs.sum(0) + b_O, cache[model.final_resid_name][0], rtol=1e-5, atol=1e-5)
    g_rows = asm.reader_grads(rows)
    _, g_one = asm.input_grads(pair.clean_ids, pair.answer, pair.wrong)
    torch.testing.assert_close(g_rows, g_one, rtol=1e-5, atol=1e-6)


def test_edge_ig_converges_to_the_exact_edge_effect():
    model = tiny64("llama")
    task = load_task(model, tiny_task())
    asm = Assembler(model)
    scores = edge_scores(model, task, steps=4)
    c = asm.c
    # the three largest-|score| edges
    flat = scores.abs().reshape(-1).topk(3).indices.tolist()
    for idx in flat:
        v, u = divmod(idx, c.n_up)
        errs = []
        for steps in (1, 4, 32):
            est, exact = edge_ig(model, task.pairs[0], u, v, steps, asm)
            errs.append(abs(est - exact) / max(abs(exact), 1e-9))
        assert errs[-1] <= 1e-3, (c.up_name(u), c.down_name(v), errs)
        assert errs[2] <= errs[1] + 1e-12 and errs[1] <= errs[0] + 1e-12


def test_eap_ig_scores_converge_as_steps_grow():
    model = tiny64("gpt2")
    task = load_task(model, tiny_task())
    s4, s16, s64 = (edge_scores(model, task, steps=k) for k in (4, 16, 64))
    d1 = float((s4 - s64).abs().max())
    d2 = float((s16 - s64).abs().max())
    assert d2 < d1 / 8  # midpoint rule: error ~ 1/steps²
    assert d2 <= 1e-2 * float(s64.abs().max())


def test_mean_ablation_matches_a_plain_hooked_forward():
    """Removing every out-edge of one writer = replacing its output by its mean in an ordinary forward."""
    model = tiny64("llama")
    task = load_task(model, tiny_task())
    asm = Assembler(model)
    c = asm.c
    means = task_means(asm, task)
    pair = task.pairs[0]
    pm = _pair_means(means, pair.clean_ids.shape[0])
    head_out = asm.outputs(pair.clean_ids, pair.answer, pair.wrong).outs[c.up_head(1, 2)]
    for u, hook, fn in (
        (c.up_mlp(0), "blocks.0.hook_mlp_out", lambda t, h: pm[c.up_mlp(0)][None]),
        (
            c.up_head(1, 2),
            "blocks.1.hook_attn_out",
            lambda t, h: t - head_out + pm[c.up_head(1, 2)],
        ),
    ):
        mask = c.edge_mask().clone()
        mask[:, u] = False
        ours = asm.run(pair.clean_ids, pair.answer, pair.wrong, mask=mask, means=pm).metric
        logits = model.run_with_hooks(pair.clean_ids[None], fwd_hooks=[(hook, fn)])[0, -1]
        assert float(ours) == pytest.approx(
            float(logits[pair.answer] - logits[pair.wrong]), rel=1e-6, abs=1e-8
        )


def test_faithfulness_curve_ends_and_cli(tmp_path, capsys):
    model = tiny64("llama")
    task = load_task(model, tiny_task())
    asm = Assembler(model)
    means = task_means(asm, task)
    valid = asm.c.edge_mask()
    assert circuit_metric(asm, task, valid, means) == pytest.approx(circuit_metric(asm, task, None, means))
    n_total = int(valid.sum())
    r = find_circuit(model, task, CircuitConfig(edges=10, steps=3, sizes=(5, 10, n_total), random_draws=2))
    assert r.faithfulness_at(n_total) == pytest.approx(1.0)
    # scores against the task means (the state the ablation puts removed edges in)
    m = find_circuit(
        model, task, CircuitConfig(edges=10, steps=3, sizes=(10, n_total), random_draws=0, baseline="mean")
    )
    assert m.faithfulness_at(n_total) == pytest.approx(1.0) and m.meta["baseline"] == "mean"
    with pytest.raises(InvalidConfigError, match="baseline"):
        CircuitConfig(baseline="zero")
    assert [row["n_requested"] for row in r.curve] == [5, 10, n_total]
    assert all(row["n_edges"] >= row["n_requested"] for row in r.curve)
    assert len(r.edges) >= 10
    assert abs(r.edges[0][2]) >= abs(r.edges[-1][2])
    doc = r.to_dict()
    validate_graph(doc)
    import jsonschema

    jsonschema.validate(doc, json_schema())
    names = {n["id"] for n in doc["nodes"]}
    assert names <= {"embed", "logits"} | {f"L{l}H{h}" for l in range(2) for h in range(4)} | {"MLP0", "MLP1"}
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(tiny_task()))
    out = tmp_path / "c.json"
    rc = main(
        [
            "circuit",
            "--model",
            "tiny:llama",
            "--task",
            str(task_file),
            "--edges",
            "8",
            "--steps",
            "2",
            "--sizes",
            "4,8",
            "--random-draws",
            "1",
            "--json",
            str(out),
            "--html",
            str(tmp_path / "c.html"),
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert len(doc["edges"]) >= 8 and doc["kind"] == "circuit"
    assert [row["n_requested"] for row in doc["meta"]["faithfulness_curve"]] == [4, 8]
    assert "faithful" in capsys.readouterr().out


def test_task_errors(tmp_path):
    model = tiny64("llama")
    bad = tiny_task()
    bad["prompts"][1]["corrupted"] += "x"
    with pytest.raises(TaskFileError, match="pair 1.*must match"):
        load_task(model, bad)
    bad = tiny_task()
    bad["prompts"][0]["answer"] = "two tokens"
    with pytest.raises(TaskFileError, match="pair 0"):
        load_task(model, bad)
    with pytest.raises(TaskFileError, match="prompts"):
        load_task(model, {"prompts": []})
    bad = tiny_task()
    del bad["prompts"][2]["wrong"]
    with pytest.raises(TaskFileError, match="wrong"):
        load_task(model, bad)
    with pytest.raises(TaskFileError, match="cannot read"):
        load_task(model, str(tmp_path / "missing.json"))
    # the CLI: one line on stderr, exit code 2
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"prompts": [{"clean": "ab", "corrupted": "abc", "answer": "a", "wrong": "b"}]}))
    assert main(["circuit", "--model", "tiny:llama", "--task", str(f)]) == 2


def test_connected_circuits_are_complete_paths():
    """Every edge of a connected top-N circuit lies on a path embeddings -> logits (checked by a plain graph
    search over component names), and it is the shortest prefix of the ranking with at least N such edges."""
    from neuroscope.graphs.assembled import Components
    from neuroscope.graphs.circuits import connected_top_mask

    c = Components(3, 4, False)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(c.n_down, c.n_up, generator=gen) * c.edge_mask()
    for n in (3, 10, 30):
        mask = connected_top_mask(scores, c, n)
        edges = [(c.up_name(u), c.down_name(v)) for v, u in mask.nonzero().tolist()]
        assert len(edges) >= n
        fwd = {"embed"}
        for _ in range(len(edges)):
            fwd |= {d for s, d in edges if s in fwd}
        back = {"logits"}
        for _ in range(len(edges)):
            back |= {s for s, d in edges if d in back}
        assert all(s in fwd and d in back for s, d in edges)
        assert torch.equal(c.on_paths(mask), mask)
