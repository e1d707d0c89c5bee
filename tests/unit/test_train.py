"""neuroscope.train: a small seeded run learns, its checkpoints load, and the analyses measure what they claim."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

import neuroscope
from neuroscope.errors import InvalidConfigError, NeuroscopeError
from neuroscope.train import TrainConfig, train
from neuroscope.train.composition import composition_scores, path_ablation
from neuroscope.train.data import repeated_tokens, training_batch
from neuroscope.train.formation import analyse_checkpoints
from neuroscope.train.metrics import (
    ablated_in_context_loss,
    head_scores,
    in_context_loss,
    scores_from_patterns,
)
from neuroscope.train.model import list_checkpoints

DOCS = Path(__file__).resolve().parents[2] / "docs" / "induction" / "results.json"

# The default recipe at a smaller size: small enough to train in well under two minutes on a busy 2-core CPU,
# big enough for the induction circuit to form within its steps.
SMALL = TrainConfig(
    n_layers=2,
    n_heads=4,
    d_model=64,
    steps=800,
    checkpoint_every=200,
    seed=0,
    threads=1,
    head_lasso=0.0,  # the pruning phase is checked on the committed run; this run checks formation
)
LAST = SMALL.steps


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    t0 = time.perf_counter()
    result = train(SMALL, out, progress=False)
    return out, result, time.perf_counter() - t0


def test_small_run_learns_and_checkpoints_load(small_run):
    out, result, seconds = small_run
    assert seconds < 120
    assert len(result.losses) == SMALL.steps
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert last < first - 0.5, (first, last)
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps == [0, 200, 400, 600, 800]
    final = neuroscope.load_model(str(out), device="cpu")
    last_ckpt = neuroscope.load_model(str(out / "checkpoints" / f"step-{LAST:06d}"), device="cpu")
    tokens = repeated_tokens(4, SMALL.eval_seq_len, SMALL.vocab, final.tokenizer.bos_token_id)
    torch.testing.assert_close(final(tokens), last_ckpt(tokens))
    # the hooked model's loss agrees with the training model's loss on a training batch
    batch = training_batch(SMALL, final.tokenizer.bos_token_id, torch.Generator().manual_seed(99))
    hf_loss = final.hf_model(input_ids=batch, labels=batch).loss
    torch.testing.assert_close(final.loss(batch), hf_loss, rtol=1e-4, atol=1e-4)
    lines = (out / "loss_log.jsonl").read_text().splitlines()
    assert len(lines) == SMALL.steps and json.loads(lines[-1])["step"] == SMALL.steps


def test_attention_only_mlps_stay_zero(small_run):
    out, _, _ = small_run
    model = neuroscope.load_model(str(out), device="cpu")
    for block in model.hf_model.transformer.h:
        assert all(float(p.detach().abs().max()) == 0.0 for p in block.mlp.parameters())


def test_seeded_runs_are_identical(tmp_path):
    cfg = TrainConfig(
        n_layers=1,
        n_heads=2,
        d_model=16,
        n_ctx=24,
        eval_seq_len=8,
        min_repeat=4,
        max_repeat=10,
        batch_size=4,
        steps=5,
        checkpoint_every=5,
        threads=1,
    )
    a, b = train(cfg, tmp_path / "a", progress=False), train(cfg, tmp_path / "b", progress=False)
    assert a.losses == b.losses


def test_formation_on_small_run(small_run):
    # the analysis runs over every checkpoint, agrees with a direct measurement, and sees the circuit form
    out, _, _ = small_run
    res = analyse_checkpoints(out, n_sequences=16)
    assert res.steps == [0, 200, 400, 600, 800]
    assert len(res.induction) == 5 and len(res.induction[0]) == 2 and len(res.induction[0][0]) == 4
    assert res.train_loss[0] is None and all(v is not None for v in res.train_loss[1:])
    # at initialisation nothing is learned in context: both halves cost about ln(vocab size)
    assert res.repeated_half_loss[0] == pytest.approx(res.first_half_loss[0], rel=0.05)
    # by the end the repeat is predicted in context: well below the first half, which stays near ln(256)
    assert res.repeated_half_loss[-1] < 0.5 * res.first_half_loss[-1]
    assert res.first_half_loss[-1] > 0.9 * math.log(SMALL.vocab)
    ih, ph = res.induction_head, res.prev_token_head
    assert ih[0] == 1 and ph[0] == 0
    series = res.head_series(ih)
    assert series[-1] > 0.3 and series[-1] > 3 * series[0], series
    mid = neuroscope.load_model(str(out / "checkpoints" / "step-000200"), device="cpu")
    tokens = repeated_tokens(16, SMALL.eval_seq_len, SMALL.vocab, mid.tokenizer.bos_token_id)
    ind, prev = head_scores(mid, tokens)
    torch.testing.assert_close(torch.tensor(res.induction[1]), ind, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(res.prev_token[1]), prev, atol=1e-5, rtol=0)
    assert set(res.to_dict()["rise"]) >= {"score_first", "score_last", "score_last_over_first"}


def test_scores_on_hand_made_patterns():
    seq_len, n = 5, 11
    induction = torch.zeros(n, n)
    induction[0, 0] = 1
    for q in range(1, n):
        k = q - seq_len + 1 if q > seq_len else q - 1
        induction[q, k] = 1
    prev = torch.zeros(n, n)
    prev[0, 0] = 1
    prev[torch.arange(1, n), torch.arange(0, n - 1)] = 1
    patterns = torch.stack([prev, induction])[:, None, None]  # [layer, batch, head, q, k]
    tokens = torch.tensor([[99, *range(seq_len), *range(seq_len)]])  # BOS + X + X, no repeats inside X
    ind, pt = scores_from_patterns(patterns, tokens)
    assert ind[1, 0] == pytest.approx(1.0) and pt[0, 0] == pytest.approx(1.0)
    assert ind[0, 0] == pytest.approx(0.0) and pt[1, 0] == pytest.approx(
        0.5
    )  # first half of layer 1 is prev-token


def test_ablation_and_path_patching_route(small_run):
    out, _, _ = small_run
    model = neuroscope.load_model(str(out), device="cpu")
    seq_len = SMALL.eval_seq_len
    tokens = repeated_tokens(16, seq_len, SMALL.vocab, model.tokenizer.bos_token_id)
    base = in_context_loss(model, tokens, seq_len)
    assert base.ratio < 0.5  # the small run learned in-context copying
    # ablating every head leaves only the direct path: no in-context advantage
    all_heads = [(layer, h) for layer in range(2) for h in range(SMALL.n_heads)]
    ablated = ablated_in_context_loss(model, tokens, seq_len, all_heads)
    assert ablated.repeated_half > base.repeated_half + 2.0
    assert ablated.ratio == pytest.approx(1.0, abs=0.05)
    # ablating only the layer-1 heads that score as induction heads removes most of the advantage too
    ind, prev = head_scores(model, tokens)
    inductive = [(1, h) for h in range(SMALL.n_heads) if ind[1, h] >= 0.3]
    assert inductive
    without = ablated_in_context_loss(model, tokens, seq_len, inductive)
    assert without.ratio > 0.75, (inductive, without)
    # the previous-token head feeds the induction head through its keys, not its queries
    ih = (1, int(ind[1].argmax()))
    ph = (0, int(prev[0].argmax()))
    comp = composition_scores(model.hf_model)
    assert comp["k"].shape == (SMALL.n_heads, SMALL.n_heads)
    assert torch.all((comp["k"] >= 0) & (comp["k"] <= 1))
    assert comp["k"][ph[1], ih[1]] > comp["q"][ph[1], ih[1]]
    k_path = path_ablation(model, tokens, seq_len, ph, ih, "k")
    q_path = path_ablation(model, tokens, seq_len, ph, ih, "q")
    assert k_path["site"] == "k"
    assert k_path["induction_score"] < 0.75 * float(ind[ih]), (k_path, float(ind[ih]))
    assert q_path["induction_score"] > k_path["induction_score"]


def test_head_norms_match_per_head_slices():
    from neuroscope.train.loop import head_norms
    from neuroscope.train.model import build_model

    cfg = TrainConfig(n_layers=2, n_heads=4, d_model=32, head_lasso=0.1)
    model = build_model(cfg, 259, {})
    attn, dh = model.transformer.h[1].attn, 8
    w, o = attn.c_attn.weight.detach(), attn.c_proj.weight.detach()
    for h in range(4):
        cols = [slice(part * 32 + h * dh, part * 32 + (h + 1) * dh) for part in range(3)]
        sq = sum(float(w[:, c].pow(2).sum()) for c in cols) + float(o[h * dh : (h + 1) * dh].pow(2).sum())
        assert float(head_norms(model, range(1, 2)).detach()[h]) == pytest.approx(math.sqrt(sq), rel=1e-5)
    with torch.no_grad():
        o[2 * dh : 3 * dh] = 0  # zero one head's output rows; only its norm changes
        attn.c_proj.weight.copy_(o)
    norms = head_norms(model, range(1, 2)).detach()
    assert float(norms[2]) < float(norms[1])


def test_invalid_config_is_rejected():
    with pytest.raises(InvalidConfigError):
        TrainConfig(d_model=30, n_heads=4)
    with pytest.raises(InvalidConfigError):
        TrainConfig(n_ctx=64, eval_seq_len=50)
    with pytest.raises(InvalidConfigError):
        TrainConfig(head_lasso=-1.0)
    with pytest.raises(NeuroscopeError):
        list_checkpoints(Path("/nonexistent/run"))


def test_committed_report_is_consistent():
    # The committed run (docs/induction) states pass/fail per acceptance check; each flag must follow from the
    # numbers recorded beside it, and the formation summary from the per-checkpoint arrays.
    res = json.loads(DOCS.read_text())
    ind = res["formation"]["induction"]
    layer, head = res["formation"]["induction_head"]
    first, last = ind[0][layer][head], ind[-1][layer][head]
    rise = res["formation"]["rise"]
    assert rise["score_last_over_first"] == pytest.approx(last / max(first, 1e-9))
    acc = res["acceptance"]
    assert acc["score_last_over_first"]["pass"] == (last >= 3 * first)
    assert acc["layer1_induction_score"]["pass"] == (res["final"]["induction_head"]["score"] >= 0.7)
    assert acc["layer0_prev_token_score"]["pass"] == (res["final"]["prev_token_head"]["score"] >= 0.7)
    assert acc["repeated_over_first_loss"]["pass"] == (res["final"]["in_context_loss"]["ratio"] < 1 / 3)
    one = res["ablation"]["induction_head"]
    assert acc["ablate_top_induction_head"]["pass"] == (
        abs(one["repeated_half"] - one["first_half"]) <= 0.25 * one["first_half"]
    )
    every = res["ablation"]["all_induction_heads"]
    assert acc["ablate_all_induction_heads"]["pass"] == (
        abs(every["repeated_half"] - every["first_half"]) <= 0.25 * every["first_half"]
    )
    assert res["final"]["induction_head"]["layer"] == 1 and res["final"]["prev_token_head"]["layer"] == 0
    assert len(res["formation"]["steps"]) == len(ind) == len(res["formation"]["first_half_loss"])


def test_committed_run_shows_formation():
    # The contract on the committed run: the circuit forms (score at the last checkpoint >= 3x the first, and
    # >= 0.7), in step with the in-context loss, within the time budget.
    res = json.loads(DOCS.read_text())
    f = res["formation"]
    layer, head = f["induction_head"]
    series = [s[layer][head] for s in f["induction"]]
    assert series[-1] >= 3 * series[0] and series[-1] >= 0.7
    assert res["final"]["prev_token_head"]["score"] >= 0.7
    ratio = [r / q for r, q in zip(f["repeated_half_loss"], f["first_half_loss"], strict=True)]
    assert ratio[0] > 0.9 and ratio[-1] < 1 / 3
    # the score's steepest rise and the in-context loss drop happen over the same checkpoints
    s_span, r_span = f["rise"]["score_span_10_90"], f["rise"]["ratio_span_10_90"]
    assert s_span["start"] is not None and r_span["start"] is not None
    assert s_span["start"] <= r_span["end"] and r_span["start"] <= s_span["end"]
    assert res["training"]["seconds"] <= 15 * 60
    # zero-ablating the one induction head brings the repeated half back within 25% of the first half
    one = res["ablation"]["induction_head"]
    assert abs(one["repeated_half"] - one["first_half"]) <= 0.25 * one["first_half"], one


def test_text_rows_are_the_tokenizers_ids(tmp_path):
    from neuroscope.train.data import load_text_ids, mixed_batch
    from neuroscope.train.model import tokenizer

    tok = tokenizer()
    text = "Induction heads: héllo wörld, €5.\n" * 20
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": text}) + "\n")
    (tmp_path / "t.txt").write_text(text)
    ids = load_text_ids(tmp_path / "t.txt", tok)
    assert ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
    assert load_text_ids(tmp_path / "t.jsonl", tok).tolist() == ids.tolist()
    cfg = TrainConfig(
        n_ctx=32,
        eval_seq_len=8,
        max_repeat=15,
        batch_size=8,
        text=str(tmp_path / "t.txt"),
        text_fraction=0.25,
    )
    batch = mixed_batch(cfg, tok.bos_token_id, torch.Generator().manual_seed(0), ids)
    assert batch.shape == (8, 32) and bool((batch[:, 0] == tok.bos_token_id).all())
    # two text rows, decoded back to a window of the text
    assert all(tok.decode(batch[r, 1:]) in text for r in range(2))
    with pytest.raises(NeuroscopeError):
        load_text_ids(tmp_path / "missing.txt", tok)


def test_previous_token_rows_follow_the_permutation():
    from neuroscope.train.data import mixed_batch, skip_permutation

    cfg = TrainConfig(n_ctx=40, eval_seq_len=10, max_repeat=15, batch_size=8, skip_fraction=0.5)
    perm = skip_permutation(cfg)
    assert sorted(perm.tolist()) == list(range(cfg.vocab))
    batch = mixed_batch(cfg, 256, torch.Generator().manual_seed(0), None, 256, perm)
    body = batch[4:, 1:]
    # triples (a, r, perm(a)): every third token is perm of the token two back, the rest are free
    n = body[:, 2::3].shape[1]
    assert torch.equal(body[:, 2::3], perm[body[:, 0::3][:, :n]])
    assert bool((batch[:, 0] == 256).all())


def test_training_rows_repeat_one_segment():
    cfg = TrainConfig(n_ctx=40, eval_seq_len=10, min_repeat=5, max_repeat=12, batch_size=64)
    batch = training_batch(cfg, 256, torch.Generator().manual_seed(3))
    assert batch.shape == (64, 40) and bool((batch[:, 0] == 256).all())
    periods = []
    for row in batch[:, 1:]:
        # the smallest shift under which the row is unchanged is len(X)
        period = next(p for p in range(1, 40) if torch.equal(row[p:], row[:-p]))
        periods.append(period)
    assert min(periods) >= 5 and max(periods) <= 12 and len(set(periods)) > 3
