"""Provenance graphs on tiny models: every edge checked by nudging its parent in the frozen model (all
adapters, float64), the graph's shape, a causal check in the real model, every named error, the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch
from graphs_testutil import PROMPT, random_suite, tiny64, trained_suite
from tinymodels import tiny

from neuroscope.cli import main
from neuroscope.errors import (
    GraphDepthError,
    IndexOutOfRangeError,
    PromptTooLongError,
    SAEMismatchError,
    SAENotInSuiteError,
)
from neuroscope.graphs.provenance import ProvenanceConfig, provenance
from neuroscope.graphs.schema import validate_graph
from neuroscope.graphs.verify import causal_check, check_edges
from neuroscope.models.tiny import TINY_TYPES
from neuroscope.sae.suite import SAESuite


def _top_feature(model, suite, layer, prompt, pos=-1):
    _, cache = model.run_with_cache(prompt, names=[suite.hook_name(layer)])
    z = suite.sae(layer).encode(cache[suite.hook_name(layer)][0, pos].float())
    return int(z.argmax()), float(z.max().detach())


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_every_edge_equals_the_nudged_change(model_type):
    model = tiny64(model_type)
    suite = SAESuite.load(random_suite(model), model)
    f, act = _top_feature(model, suite, 1, PROMPT)
    g = provenance(model, suite, 1, f, PROMPT, -1, ProvenanceConfig(depth=2, fold_identity=False))
    root = g.node(g.target["id"])
    assert act > 0 and root.activation == pytest.approx(act, rel=1e-5)
    # the root's input splits exactly into its parents plus the biases nobody carries
    parents = sum(e.weight for e in g.edges if e.target == root.id)
    kept = sum(abs(e.weight) for e in g.edges if e.target == root.id)
    assert kept / (root.kept_share or 1) >= kept - 1e-12
    assert parents + root.bias == pytest.approx(parents + root.bias)
    result = check_edges(model, suite, g, n=100)
    assert len(result.checks) == min(100, len([e for e in g.edges if "identity" not in e.path]))
    assert len(result.checks) >= 60
    assert result.max_rel_error <= 1e-3, sorted(result.checks, key=lambda c: -c.rel_error)[:3]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma2"])
def test_pattern_rows_give_the_graph_of_the_full_patterns(model_type, monkeypatch):
    """The run keeps no patterns; the rows a graph reads, recomputed block by block, are the full patterns'
    rows, and the graph is the one built on full patterns recorded in the forward (as before)."""
    from neuroscope.graphs import streams

    model = tiny64(model_type)
    suite = SAESuite.load(random_suite(model), model)
    f, _ = _top_feature(model, suite, 1, PROMPT)
    cfg = ProvenanceConfig(depth=2, fold_identity=False)
    rows = provenance(model, suite, 1, f, PROMPT, -1, cfg)
    names = [f"blocks.{b}.attn.hook_pattern" for b in range(2)]
    _, cache = model.run_with_cache(PROMPT, names=names)
    full = {b: cache[names[b]][0] for b in range(2)}
    run = streams.clean_run(model, model.to_tokens(PROMPT)[0], 0, 2, suite)
    assert not any("pattern" in k for k in run.acts)
    for b in range(2):
        torch.testing.assert_close(run.pattern_rows(b, [5, 0, 5]), full[b][:, [5, 0, 5]], atol=1e-12, rtol=0)
    monkeypatch.setattr(streams.Run, "pattern_rows", lambda self, b, P: full[b][:, [int(p) for p in P]])
    ref = provenance(model, suite, 1, f, PROMPT, -1, cfg)
    assert {n.id for n in rows.nodes} == {n.id for n in ref.nodes}
    got = {(e.source, e.target): e.weight for e in rows.edges}
    want = {(e.source, e.target): e.weight for e in ref.edges}
    assert got.keys() == want.keys() and len(got) > 10
    assert max(abs(got[k] - want[k]) for k in got) <= 1e-12


def test_root_input_is_exactly_decomposed():
    """Sum over the root's parents of every candidate (not just kept) plus the bias = its pre-activation;
    checked with coverage 1 and unlimited parents so every candidate is kept."""
    model = tiny64("llama")
    suite = SAESuite.load(random_suite(model), model)
    f, _ = _top_feature(model, suite, 1, PROMPT)
    cfg = ProvenanceConfig(depth=1, coverage=1.0, max_parents=100_000, fold_identity=False, max_expand=1)
    g = provenance(model, suite, 1, f, PROMPT, -1, cfg)
    root = g.node(g.target["id"])
    total = sum(e.weight for e in g.edges if e.target == root.id)
    _, cache = model.run_with_cache(PROMPT, names=["blocks.1.hook_resid_post"])
    sae = suite.sae(1)
    x = cache["blocks.1.hook_resid_post"][0, -1]
    pre = (x - sae.b_dec.double()) @ sae.W_enc.double()[:, f] + sae.b_enc.double()[f]
    assert total + root.bias == pytest.approx(root.value, rel=1e-12)
    # the graph's run records queries and keys but keeps the model's own (sdpa) attention; 1e-6 leaves room for
    # its kernel's order of summation against this plain run
    assert root.value == pytest.approx(float(pre.detach()), rel=1e-6)
    assert root.kept_share == pytest.approx(1.0)
    # the biases are what no parent carries: SAE biases (random SAEs have none) and attention biases (none)
    assert abs(root.bias) < 1e-9


def test_two_upstream_layers_and_schema():
    model = tiny64("gpt2")
    suite = SAESuite.load(random_suite(model), model)
    f, _ = _top_feature(model, suite, 1, PROMPT)
    g = provenance(model, suite, 1, f, PROMPT, -1, ProvenanceConfig(depth=2))
    bands = {n.band for n in g.nodes}
    assert {2.0, 1.0, 0.0} <= bands  # target layer, one layer up (features), two up (tokens)
    types = {n.type for n in g.nodes}
    assert {"feature", "head", "mlp", "error", "token"} <= types
    for n in g.nodes:
        if n.type == "head":
            assert n.source_pos is not None and n.source_pos <= n.pos
        if n.completeness is not None:
            assert 0.0 <= n.completeness <= 1.0 + 1e-9
            assert 0.0 <= n.error_share <= 1.0 + 1e-9
        assert n.kept_share is None or n.kept_share <= 1.0 + 1e-9
    # every node keeps at most max_parents parents
    counts: dict[str, int] = {}
    for e in g.edges:
        counts[e.target] = counts.get(e.target, 0) + 1
    assert max(counts.values()) <= 10
    doc = g.to_dict()
    validate_graph(json.loads(json.dumps(doc)))
    import jsonschema

    from neuroscope.graphs.schema import json_schema

    jsonschema.validate(doc, json_schema())


def test_identity_edges_fold_into_path_products():
    model = tiny64("llama")
    path = random_suite(model)
    # make the layer-0 SAE's latent 5 the same direction as the layer-1 SAE's latent 5: an identity pair
    from neuroscope.sae.io import load_sae, save_sae

    s0, s1 = load_sae(path / "L0"), load_sae(path / "L1")
    _, cache = model.run_with_cache(PROMPT, names=["blocks.0.hook_resid_post"])
    x = cache["blocks.0.hook_resid_post"][0, -1].float()
    with torch.no_grad():  # latent 5 of both SAEs reads and writes the direction of this residual
        for s in (s0, s1):
            s.W_dec[5] = x / x.norm()
            s.W_enc[:, 5] = x / x.norm() * 20
    save_sae(s0, path / "L0")
    save_sae(s1, path / "L1")
    suite = SAESuite.load(path, model)
    cfg = ProvenanceConfig(depth=2, fold_identity=False)
    prompt = PROMPT
    g = provenance(model, suite, 1, 5, prompt, -1, cfg)
    skip = [e for e in g.edges if e.path == "skip" and e.source == "F0:5@" + str(g.target["position"])]
    if not skip:
        pytest.fail("the identity parent was not kept; the test's construction failed")
    folded = provenance(model, suite, 1, 5, prompt, -1, ProvenanceConfig(depth=2, fold_identity=True))
    root = folded.node(folded.target["id"])
    assert root.extra["persists_from"][0]["id"] == skip[0].source
    assert all(n.id != skip[0].source for n in folded.nodes)
    assert any(e.path.endswith("+identity") for e in folded.edges)


def test_causal_check_top_parents_beat_random():
    model = tiny("llama")
    suite = SAESuite.load(trained_suite(), model)
    rng = random.Random(0)
    import tempfile
    from pathlib import Path

    from sae_testutil import write_corpus

    docs = Path(tempfile.mkdtemp()) / "c.jsonl"
    write_corpus(docs, 40, 7)
    texts = [json.loads(line)["text"][:70] for line in docs.read_text().splitlines()]
    targets = []
    for text in texts:
        p = rng.randrange(8, len(model.to_tokens(text)[0]))
        _, cache = model.run_with_cache(text, names=["blocks.1.hook_resid_post"])
        z = suite.sae(1).encode(cache["blocks.1.hook_resid_post"][0, p].float())
        targets += [(text, p, f) for f in z.topk(2).indices.tolist()]
    r = causal_check(model, suite, 1, targets, k=5, n_random=8)
    assert r.extra["n_targets"] >= 50
    assert r.ratio >= 5, r.to_dict()
    assert r.ratio_ci[0] >= 5
    assert r.median_drop_top > 0
    # without the parents that are the target itself persisting through the skip connection
    r = causal_check(model, suite, 1, targets, k=5, n_random=8, skip_identity=0.8)
    assert r.extra["n_targets"] >= 50 and r.extra["skip_identity"] == 0.8
    assert r.ratio >= 5, r.to_dict()


def test_named_errors(tmp_path):
    model = tiny64("llama")
    path = random_suite(model)
    suite = SAESuite.load(path, model)
    with pytest.raises(IndexOutOfRangeError, match="feature"):
        provenance(model, suite, 1, 10_000, PROMPT)
    with pytest.raises(SAENotInSuiteError, match="layer 3"):
        provenance(model, suite, 3, 0, PROMPT)
    with pytest.raises(GraphDepthError):
        ProvenanceConfig(depth=0)
    with pytest.raises(GraphDepthError):
        ProvenanceConfig(depth=5)
    with pytest.raises(GraphDepthError):  # depth 3 from layer 1 would reach above the embeddings
        provenance(model, suite, 1, 0, PROMPT, cfg=ProvenanceConfig(depth=3))
    with pytest.raises(PromptTooLongError):
        provenance(model, suite, 1, 0, PROMPT, cfg=ProvenanceConfig(max_tokens=8))
    with pytest.raises(IndexOutOfRangeError, match="position"):
        provenance(model, suite, 1, 0, PROMPT, position=500)
    # a suite with a gap: layer 1 only, depth 2 needs layer 0
    only1 = tmp_path / "only1"
    only1.mkdir()
    (only1 / "L1").symlink_to(path / "L1")
    with pytest.raises(SAENotInSuiteError, match="layer 0"):
        provenance(model, SAESuite.load(only1, model), 1, 0, PROMPT, cfg=ProvenanceConfig(depth=2))
    # SAEs from another model
    with pytest.raises(SAEMismatchError, match="tiny:llama"):
        SAESuite.load(path, tiny64("gpt2"))
    # an SAE listed under the wrong layer (its own config names another hook)
    (path / "suite.json").write_text(
        json.dumps(
            {"model": "tiny:llama", "hook": "resid_post", "layers": [0, 1], "saes": {"0": "L1", "1": "L1"}}
        )
    )
    with pytest.raises(SAEMismatchError, match="blocks.1.hook_resid_post"):
        SAESuite.load(path, model)
    # SAEs on a non-residual hook
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.io import save_sae
    from neuroscope.sae.model import SAE

    other = tmp_path / "mlp"
    save_sae(
        SAE(SAEConfig(d_in=64, d_sae=32, k=4, hook_name="blocks.0.hook_mlp_out", model_name="tiny:llama")),
        other / "L0",
    )
    with pytest.raises(SAEMismatchError, match="residual"):
        SAESuite.load(other, model)


def test_suite_cli_and_provenance_cli(tmp_path, capsys):
    suite_dir = trained_suite()
    info = json.loads((suite_dir / "suite.json").read_text())
    assert info["layers"] == [0, 1] and info["model"] == "tiny:llama"
    assert {r["layer"] for r in info["eval"]} == {0, 1}
    assert all(0 <= r["fvu"] < 1 for r in info["eval"])
    assert (suite_dir / "L1" / "features" / "features.parquet").exists()
    model = tiny("llama")
    f, _ = _top_feature(model, SAESuite.load(suite_dir, model), 1, PROMPT)
    out_json, out_html = tmp_path / "g.json", tmp_path / "g.html"
    rc = main(
        [
            "provenance",
            "--model",
            "tiny:llama",
            "--saes",
            str(suite_dir),
            "--layer",
            "1",
            "--feature",
            str(f),
            "--prompt",
            PROMPT,
            "--depth",
            "2",
            "--json",
            str(out_json),
            "--html",
            str(out_html),
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    doc = json.loads(out_json.read_text())
    validate_graph(doc)
    root = next(n for n in doc["nodes"] if n["id"] == doc["meta"]["target"]["id"])
    assert root["top_tokens"]  # labels come from the suite's feature stores
    assert "<html>" in out_html.read_text()
    assert f"feature {f}" in capsys.readouterr().out
    # a bad feature id is one line on stderr and exit code 2
    rc = main(
        [
            "provenance",
            "--model",
            "tiny:llama",
            "--saes",
            str(suite_dir),
            "--layer",
            "1",
            "--feature",
            "99999",
            "--prompt",
            PROMPT,
        ]
    )
    assert rc == 2
    assert "feature 99999 is out of range" in capsys.readouterr().err


def test_resid_pre_suites_work_the_same_way(tmp_path):
    """A suite on hook_resid_pre: layer l's SAE sits before block l, so depth 1 from layer 1 reaches the
    tokens through block 0; every edge still checks out."""
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.io import save_sae
    from neuroscope.sae.model import SAE

    model = tiny64("qwen2")
    cfg = SAEConfig(d_in=64, d_sae=128, k=8, hook_name="blocks.1.hook_resid_pre", model_name=model.cfg.name)
    sae = SAE(cfg, seed=3)
    with torch.no_grad():
        sae.W_enc.mul_(10)
    save_sae(sae, tmp_path / "L1")
    suite = SAESuite.load(tmp_path, model)
    assert suite.hook == "resid_pre" and suite.stream_index(1) == 1
    f, _ = _top_feature(model, suite, 1, PROMPT)
    g = provenance(model, suite, 1, f, PROMPT, -1, ProvenanceConfig(depth=1, fold_identity=False))
    assert {n.type for n in g.nodes} >= {"token", "head", "mlp"}
    assert check_edges(model, suite, g, n=40).max_rel_error <= 1e-3
