"""QK attribution: the node pairs sum to the head's own pre-softmax score, on every adapter's tiny model."""

from __future__ import annotations

import pytest
import torch
from transcoders_testutil import PROMPT, random_transcoders

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError
from neuroscope.transcoders.qk import qk_attribution, residual_parts


def test_pairs_sum_to_the_score_on_every_adapter(any_tiny):
    tcs = random_transcoders(any_tiny)
    layer, head = 1, any_tiny.cfg.n_heads - 1
    for q, k in ((-1, 2), (5, 5), (3, 0)):
        r = qk_attribution(any_tiny, tcs, PROMPT, layer, head, q, k)
        assert r.pair_sum == pytest.approx(r.score, rel=1e-4, abs=1e-5)
        # the per-side totals are the pairs summed over the other side
        assert float(r.query_totals.sum()) == pytest.approx(r.score, rel=1e-4, abs=1e-5)
        kinds = {n.kind for n in r.query_nodes}
        assert {"token", "attn", "feature", "error", "bias"} <= kinds
    # GQA: the key side is the kv head this query head shares
    assert r.kv_head == head // (any_tiny.cfg.n_heads // any_tiny.cfg.n_kv_heads)


def test_residual_parts_sum_to_resid_pre(tiny_gpt2):
    tcs = random_transcoders(tiny_gpt2, layers=[0])  # layer 1's MLP has no transcoder: one ``mlp`` node
    _, cache = tiny_gpt2.run_with_cache(PROMPT)
    parts = residual_parts(tiny_gpt2, tcs, cache, 2, 4)
    total = parts.vecs.sum(0) + sum(parts.skips.values())
    assert torch.allclose(total, cache["blocks.1.hook_resid_post"][0, 4], atol=1e-5)
    assert parts.skips[0].abs().max() > 1e-2  # the skip term is there, credited upstream by QK
    nodes = parts.nodes
    assert [n.id for n in nodes if n.kind in ("pos_embed", "mlp")] == ["p_4", "m_1_4"]
    acts = tcs[0].encode(cache["blocks.0.ln2.hook_normalized"][0, 4])
    feats = [n for n in nodes if n.kind == "feature"]
    assert [n.feature for n in feats] == acts.nonzero().flatten().tolist()
    assert feats[0].id == f"f_0_4_{feats[0].feature}"
    # entry: the first MLP whose input holds the node (GPT-2 is sequential: attn 0 feeds MLP 0)
    entry = dict(zip([n.id for n in nodes], parts.entry, strict=True))
    assert entry["t_4"] == 0 and entry["a_0_4"] == 0 and entry[feats[0].id] == 1 and entry["m_1_4"] == 2


def test_report_and_bad_positions(tiny_llama):
    tcs = random_transcoders(tiny_llama)
    r = qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, -1, 1, top=5)
    d = r.to_dict()
    assert len(d["top_pairs"]) == 5 and len(d["query_nodes"]) == 5
    assert abs(d["top_pairs"][0]["value"]) == pytest.approx(float(r.pairs.abs().max()))
    z = r.figure(k=3).data[0].z  # the 3 x 3 block of pairs among each side's largest nodes
    rows, cols = r.query_totals.abs().topk(3).indices, r.key_totals.abs().topk(3).indices
    assert torch.tensor(z, dtype=r.pairs.dtype).allclose(r.pairs[rows][:, cols])
    assert d["query_pos"] == len(d["tokens"]) - 1 and 0 < d["pattern"] < 1
    with pytest.raises(InvalidConfigError, match="after query position"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, 2, 5)
    with pytest.raises(IndexOutOfRangeError, match="query position"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 0, 99, 0)
    with pytest.raises(IndexOutOfRangeError, match="head"):
        qk_attribution(tiny_llama, tcs, PROMPT, 1, 9, -1, 0)


def test_cli_writes_the_library_result(tmp_path, capsys):
    """`neuroscope qk-attribution` on a saved transcoder folder prints and writes what the library returns."""
    import json

    from tinymodels import tiny

    from neuroscope.cli import main
    from neuroscope.transcoders.io import save_transcoder, write_manifest

    model = tiny("llama")
    tcs = random_transcoders(model)
    for tc in tcs.transcoders.values():
        save_transcoder(tc, tmp_path / "tcs")
    write_manifest(tmp_path / "tcs", tcs[0].cfg, tcs.layers)
    args = ["--model", "tiny:llama", "--transcoders", str(tmp_path / "tcs"), "--prompt", PROMPT]
    args += ["--layer", "1", "--head", "3", "--query", "-1", "--key", "2", "--top", "4"]
    assert (
        main(
            [
                "qk-attribution",
                *args,
                "--json",
                str(tmp_path / "qk.json"),
                "--html",
                str(tmp_path / "qk.html"),
            ]
        )
        == 0
    )
    assert (tmp_path / "qk.html").stat().st_size > 1000
    out = json.loads((tmp_path / "qk.json").read_text())
    ref = qk_attribution(model, tcs, PROMPT, 1, 3, -1, 2, top=4).to_dict()
    assert out["score"] == pytest.approx(ref["score"], rel=1e-5)
    assert [(p["query"], p["key"]) for p in out["top_pairs"]] == [
        (p["query"], p["key"]) for p in ref["top_pairs"]
    ]
    assert "top pairs:" in capsys.readouterr().out
