"""Downstream SAE benchmarks (sparse probing, SCR, TPP, absorption) on planted structure, the tiny-model
pipeline and its CLI, and the bad inputs: one-class and too-small sets, SAEs of another model or hook."""

from __future__ import annotations

import json

import pytest
import torch

from neuroscope.errors import LabelledSetError, SAEMismatchError
from neuroscope.sae import SAE, SAEConfig, save_sae
from neuroscope.sae.bench import absorption as ab
from neuroscope.sae.bench import scr_tpp
from neuroscope.sae.bench.labelled import LabelledSet
from neuroscope.sae.bench.pooled import Pooled
from neuroscope.sae.bench.probing import binary_tasks, sparse_probing

D = 32


def _orthonormal(n: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed)))
    return q.T[:n]


def _sae(enc: torch.Tensor, b: torch.Tensor, dec: torch.Tensor, d_sae: int = 24, seed: int = 3) -> SAE:
    """A ReLU SAE whose first latents are planted (encoder rows ``enc``, biases ``b``, decoder rows ``dec``);
    the others are random directions that fire rarely."""
    sae = SAE(SAEConfig(d_in=D, d_sae=d_sae, arch="relu"), seed=seed)
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.b_enc.fill_(-3.0)
        sae.W_enc.copy_(sae.W_dec.T)
        m = enc.shape[0]
        sae.W_enc[:, :m] = enc.T
        sae.b_enc[:m] = b
        sae.W_dec[:m] = dec / dec.norm(dim=-1, keepdim=True)
    return sae


def _random_sae(seed: int = 5) -> SAE:
    sae = SAE(SAEConfig(d_in=D, d_sae=24, arch="relu"), seed=seed)
    with torch.no_grad():
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.fill_(-0.5)
        sae.b_dec.zero_()
    return sae


def _set(labels, spurious=None, name="planted", classes=("a", "b")) -> LabelledSet:
    return LabelledSet(
        name,
        tuple(f"t{i}" for i in range(len(labels))),
        tuple(int(y) for y in labels),
        tuple(classes),
        spurious=None if spurious is None else tuple(int(z) for z in spurious),
        spurious_classes=("code", "prose") if spurious is not None else (),
    )


def _pooled(x: torch.Tensor, saes: dict[str, SAE]) -> Pooled:
    # one token per text: the pooled codes are the codes of the pooled residual
    return Pooled(x, {n: s.encode(x).detach() for n, s in saes.items()})


def test_sparse_probing_planted_latent_reaches_one_and_beats_random():
    gen = torch.Generator().manual_seed(0)
    u = _orthonormal(1)
    y = torch.arange(200) % 2
    x = torch.randn(200, D, generator=gen) + 3.0 * y[:, None] * u
    planted = _sae(u, torch.tensor([-1.5]), u)
    p = {"planted": _pooled(x, {"planted": planted, "random": _random_sae()})}
    lset = _set(y.tolist())
    res = sparse_probing(p, binary_tasks(lset, lset.split(seed=0)), ks=(1, 2))
    s = res.summary()
    assert s["sae_top_k"]["planted"][1] >= 0.95
    assert s["sae_top_k"]["planted"][1] > s["sae_top_k"]["random"][1] + 0.2
    assert s["residual"] >= 0.8  # the reference probe (all 32 noisy dims) sees the concept too
    json.dumps(res.to_dict())


def _scr_data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    u_t, u_s = _orthonormal(2)
    n = 400
    y, z = torch.arange(n) % 2, (torch.arange(n) // 2) % 2
    # the spurious label (z) is louder than the target (y): a probe trained where they coincide leans on it
    sy, sz = (2 * y - 1).float()[:, None], (2 * z - 1).float()[:, None]
    x = 0.5 * torch.randn(n, D, generator=gen) + 1.0 * sy * u_t + 3.0 * sz * u_s
    lset = _set((1 - y).tolist(), (1 - z).tolist())  # class 0 = y==1, code = z==1
    return lset, x, u_t, u_s


def test_scr_ablating_the_planted_spurious_latent_recovers_the_target():
    lset, x, u_t, u_s = _scr_data()
    # one latent per sign of each label's direction, so ablating a label's two latents removes it entirely
    dirs = torch.stack([u_s, -u_s, u_t, -u_t])
    planted = _sae(dirs, torch.zeros(4), dirs)
    saes = {"planted": planted, "random": _random_sae()}
    p = _pooled(x, saes)
    probes = scr_tpp.scr_probes(lset, lset.split(seed=0), p)
    acc = probes.accuracy
    assert acc["biased probe on target data"] < acc["target probe on target data"] - 0.2
    r_planted = scr_tpp.scr(probes, p, "planted", scr_tpp.decoder(planted), ns=(1, 2, 5))
    r_random = scr_tpp.scr(probes, p, "random", scr_tpp.decoder(saes["random"]), ns=(1, 2, 5))
    assert r_planted.chosen == "dir1"
    # the top two latents are the spurious label's; removing them recovers most of the gap
    assert r_planted.metric[2] > 0.5
    assert r_planted.metric[2] > r_random.metric[2] + 0.4
    json.dumps(r_planted.to_dict())


def test_tpp_planted_concept_latents_hit_only_their_probe():
    """Three binary sets, each a concept on its own direction (±); the planted SAE has one latent per sign."""
    dirs = _orthonormal(3, seed=2)
    planted = _sae(torch.cat([dirs, -dirs]), torch.zeros(6), torch.cat([dirs, -dirs]))
    saes = {"planted": planted, "random": _random_sae()}
    pooled, tasks = {}, []
    for i in range(3):
        y = torch.arange(160) % 2
        x = (
            0.5 * torch.randn(160, D, generator=torch.Generator().manual_seed(i))
            + 2.0 * (2 * y - 1).float()[:, None] * dirs[i]
        )
        lset = _set(y.tolist(), name=f"s{i}")
        pooled[lset.name] = _pooled(x, saes)
        tasks += binary_tasks(lset, lset.split(seed=0))
    probes = scr_tpp.task_probes(pooled, tasks)
    r = scr_tpp.tpp(pooled, tasks, probes, "planted", scr_tpp.decoder(planted), ns=(1, 2))
    rr = scr_tpp.tpp(pooled, tasks, probes, "random", scr_tpp.decoder(saes["random"]), ns=(1, 2))
    # TPP ablates the latents of the positive class only (SAEBench's clamp): the positives' side of the concept
    # goes, half of them cross the probe's threshold; the other probes are untouched
    assert r.intended[1] > 0.2 and abs(r.unintended[1]) < 0.05
    assert r.total[1] > rr.total[1] + 0.2
    json.dumps(r.to_dict())


def _letter_data(absorbed_in_test: int = 3):
    """Letters a, b, c on orthogonal directions; ``absorbed_in_test`` test 'a' words also carry a token direction."""
    gen = torch.Generator().manual_seed(4)
    basis = _orthonormal(3 + absorbed_in_test, seed=6)
    letters, toks = basis[:3], basis[3:]

    def words(n_per: int, absorbed: int):
        y = torch.arange(3 * n_per) % 3
        x = 3.0 * letters[y] + 0.1 * torch.randn(len(y), D, generator=gen)
        a_idx = torch.nonzero(y == 0).squeeze(1)[:absorbed]
        x[a_idx] += 3.0 * toks[: len(a_idx)]
        return x, y

    tr_x, tr_y = words(40, 0)
    te_x, te_y = words(30, absorbed_in_test)
    data = ab.FirstLetterData(
        [f"w{i}" for i in range(len(tr_y))], tr_x, tr_y, [f"v{i}" for i in range(len(te_y))], te_x, te_y
    )
    return data, letters, toks


def test_absorption_detects_a_planted_absorbing_latent():
    data, letters, toks = _letter_data()
    # main latents: letter direction, switched off by the token directions; absorbers: one per token
    enc = torch.cat([letters - 2.0 * toks.sum(0), toks])
    dec = torch.cat([letters, letters[0] + toks])
    absorbing = _sae(enc, torch.tensor([-1.5] * 3 + [-0.5] * 3), dec, d_sae=12)
    clean = _sae(letters, torch.tensor([-1.5] * 3), letters, d_sae=12)
    probe = ab.fit_letter_probe(data)
    assert probe.test_accuracy == 1.0
    r = ab.absorption(absorbing, data, probe)
    rc = ab.absorption(clean, data, probe)
    a = next(row for row in r.letters if row["letter"] == "a")
    assert a["split_features"] == [0]
    assert a["n_probe_true_positives"] == 30
    assert a["absorption_fraction"] == pytest.approx(3 / 30)
    assert a["full_absorption_rate"] == pytest.approx(3 / 30)
    assert rc.mean_absorption_fraction == 0.0 and rc.mean_full_absorption == 0.0
    assert not r.enough_letters  # SAEBench's 20-letter minimum is reported, not hidden
    json.dumps(r.to_dict())


# --- bad input -----------------------------------------------------------------------------------------------
def test_a_set_with_one_class_is_refused_by_name():
    with pytest.raises(LabelledSetError, match=r"'lonely' has one class \(a\)"):
        LabelledSet("lonely", ("x",) * 10, (0,) * 10, ("a", "b")).split()


def test_a_class_too_small_for_the_split_is_refused_by_name():
    lset = LabelledSet("small", ("x",) * 13, (0,) * 10 + (1,) * 3, ("big", "tiny"))
    with pytest.raises(LabelledSetError, match=r"'small': class 'tiny' has 3 examples.*at least 6"):
        lset.split()


def _save(tmp_path, name, **cfg):
    sae = SAE(SAEConfig(d_in=64, d_sae=32, arch="topk", k=4, **cfg))
    return save_sae(sae, tmp_path / name)


def test_saes_of_another_model_or_hook_are_refused(tiny_llama, tmp_path):
    from neuroscope.sae.bench.real import load_bench_saes

    other = _save(tmp_path, "other", hook_name="blocks.1.hook_resid_post", model_name="gpt2")
    with pytest.raises(SAEMismatchError, match="trained on 'gpt2', not on 'tiny:llama'"):
        load_bench_saes([other], tiny_llama)
    deep = _save(tmp_path, "deep", hook_name="blocks.7.hook_resid_post", model_name="tiny:llama")
    with pytest.raises(
        SAEMismatchError, match="hook 'blocks.7.hook_resid_post', which tiny:llama does not have"
    ):
        load_bench_saes([deep], tiny_llama)
    ok = _save(tmp_path, "ok", hook_name="blocks.1.hook_resid_post", model_name="tiny:llama")
    with pytest.raises(SAEMismatchError, match="not on the hook asked for, 'blocks.0.hook_resid_post'"):
        load_bench_saes([ok], tiny_llama, hook="blocks.0.hook_resid_post")
    assert [b.hook for b in load_bench_saes([ok, ok], tiny_llama)] == ["blocks.1.hook_resid_post"] * 2


# --- the pipeline on a tiny model, through the CLI ----------------------------------------------------------
def _docs(tmp_path):
    """A miniature python3-doc tree and its prepared corpus (corpus.json points at the tree)."""
    root = tmp_path / "html"
    docs = []
    for section in ("tutorial", "library"):
        (root / section).mkdir(parents=True)
        for page in range(2):
            paras = [
                f"The {section} page {page} paragraph {i} explains how things work here." for i in range(8)
            ]
            code = [f">>> x{i} = {section!r}\n>>> print(x{i} * {page})" for i in range(8)]
            body = "".join(f"<p>{p}</p>" for p in paras) + "".join(f"<pre>{c}</pre>" for c in code)
            (root / section / f"p{page}.html").write_text(f"<html><body>{body}</body></html>")
            docs.append({"id": f"{section}/p{page}.html", "text": "\n\n".join(paras)})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"root": str(root)}))
    (corpus / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[1:]))
    (corpus / "heldout.jsonl").write_text(json.dumps(docs[0]) + "\n")
    return corpus


def _cli(argv):
    from neuroscope.sae.bench.real import main

    return main(["real", *argv])


def test_real_bench_pipeline_on_a_tiny_model(tmp_path, capsys):
    corpus = _docs(tmp_path)
    a = _save(tmp_path, "topk-a", hook_name="blocks.1.hook_resid_post", model_name="tiny:llama")
    b = _save(tmp_path, "topk-b", hook_name="blocks.1.hook_resid_post", model_name="tiny:llama")
    out = tmp_path / "bench.json"
    common = [
        "--model",
        "tiny:llama",
        "--corpus",
        str(corpus),
        "--ctx-len",
        "24",
        "--words",
        "52",
        "--icl-examples",
        "3",
    ]
    argv = [
        "--sae",
        str(a),
        str(b),
        "--sets",
        "docs-section",
        "code-prose",
        "sentiment",
        *common,
        "--out",
        str(out),
    ]
    assert _cli(argv) == 0
    res = json.loads(out.read_text())
    assert [r["sae"] for r in res["table"]] == ["residual (blocks.1.hook_resid_post)", "topk-a", "topk-b"]
    for row in res["table"][1:]:
        assert row["l0"] == pytest.approx(4.0)  # TopK k=4 on every kept token
        for key in ("probe_top_1", "probe_top_2", "probe_top_5"):
            assert 0.0 <= row[key] <= 1.0
        assert -1.0 <= row["tpp_20"] <= 1.0 and row["scr_20"] is not None
    assert res["sets"]["docs-section"]["classes"] == {"library": 16, "tutorial": 16}
    assert res["sets"]["section-x-code"]["second_label"] == {"code": 32, "prose": 32}
    assert res["machine"]["loadavg"] is not None and "absorption" in res["seconds"]
    assert "| sae |" in capsys.readouterr().out
    # a user's set with one class: a named error and exit code 2, nothing written
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text("".join(json.dumps({"text": f"text {i}", "label": "only"}) + "\n" for i in range(8)))
    out2 = tmp_path / "none.json"
    assert _cli(["--sae", str(a), "--sets", str(lonely), *common, "--out", str(out2)]) == 2
    assert "'lonely' has one class (only)" in capsys.readouterr().err
    assert not out2.exists()
