"""Our downstream SAE metrics against SAEBench 0.6.0's own functions, on the same activations and probes.

SAEBench's end-to-end runners need hub datasets and TransformerLens models (both unreachable offline), so its
metric functions are fed our activations instead:

- sparse probing: ``probe_training.get_top_k_mean_diff_mask`` + ``train_sklearn_probe`` (sklearn) on our pooled
  SAE latents, against our mean-difference selection + L-BFGS probe;
- SCR: ``get_all_node_effects_for_one_sae``, ``perform_feature_ablations``, ``get_probe_test_accuracy`` and
  ``get_scr_plotting_dict`` on zero-padded per-token activations (SAEBench's layout), with our three residual
  probes loaded into its ``Probe`` class, against our pooled-linearity implementation;
- TPP: ``create_tpp_plotting_dict`` on our per-task accuracies, against our TPP aggregation;
- absorption: ``FeatureAbsorptionCalculator.calculate_absorption`` (it builds its own prompts and runs the model
  through a small ``run_with_cache`` adapter onto our HookedModel) against our per-word scores on the same prompts.

Run (SAEBench and sklearn live outside the project's virtualenv, installed without their dependencies):

    python -m pip install --no-deps --target /tmp/saebench sae-bench==0.6.0
    python -m pip install --no-deps --target /tmp/saebench-sk scikit-learn joblib threadpoolctl tabulate
    PYTHONPATH=src:/tmp/saebench:/tmp/saebench-sk python -m benchmarks.sae_bench_real_saebench \\
        --sae saes/l15-k64 --out benchmarks/results/sae_bench_real_saebench.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import types
from pathlib import Path

import torch


def _import_saebench():
    from neuroscope.sae.saelens_compat import import_sae_lens

    import_sae_lens()
    # activation_collection decorates functions with TransformerLens 3's HookedTransformer type, which beartype
    # cannot check against TransformerLens 4; we never call it, so an empty module stands in for it
    sys.modules.setdefault(
        "sae_bench.sae_bench_utils.activation_collection",
        types.ModuleType("sae_bench.sae_bench_utils.activation_collection"),
    )
    import sae_bench.evals.absorption.feature_absorption_calculator as fac
    import sae_bench.evals.scr_and_tpp.main as st
    import sae_bench.evals.sparse_probing.probe_training as pt

    return pt, st, fac


class _SAEView:
    """Our SAE with the attributes SAEBench reads (``device``, ``dtype``)."""

    def __init__(self, sae):
        self.sae, self.W_dec, self.device, self.dtype = (
            sae,
            sae.W_dec.detach(),
            torch.device("cpu"),
            torch.float32,
        )

    def encode(self, x):
        return self.sae.encode(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1).detach()

    def decode(self, z):
        return self.sae.decode(z).detach()


def _padded(model, texts, hook, ctx_len, outlier_factor=10.0):
    """SAEBench's layout: ``[n, L, d]`` with special tokens (and our outliers) zeroed; plus our pooled means."""
    from neuroscope.sae.bench.pooled import encode_texts, token_activations

    ids = encode_texts(model, texts, ctx_len)
    acts, owner = token_activations(model, ids, hook)
    norms = acts.norm(dim=-1)
    keep = norms <= outlier_factor * norms.median()
    keep |= (torch.bincount(owner[keep], minlength=len(ids)) == 0)[owner]
    acts, owner = acts[keep], owner[keep]
    counts = torch.bincount(owner, minlength=len(ids))
    out = torch.zeros(len(ids), int(counts.max()), acts.shape[-1])
    pos = torch.cat([torch.arange(int(c)) for c in counts])
    out[owner, pos] = acts
    return out


def sparse_probing_check(pt, pooled, tasks, sae_name, ks=(1, 2, 5)):
    from neuroscope.sae.bench.probing import sparse_accuracy, top_k_mean_diff

    rows = []
    for t in tasks:
        z = pooled[t.set_name].codes[sae_name]
        for k in ks:
            ours = sparse_accuracy(z[t.train], t.train_y, z[t.test], t.test_y, k)
            mask = pt.get_top_k_mean_diff_mask(z[t.train], t.train_y.int(), k)
            tr = pt.apply_topk_mask_reduce_dim(z[t.train], mask)
            te = pt.apply_topk_mask_reduce_dim(z[t.test], mask)
            _, theirs = pt.train_sklearn_probe(tr, t.train_y.int(), te, t.test_y.int())
            same = sorted(torch.nonzero(~mask).squeeze(1).tolist()) == sorted(
                top_k_mean_diff(z[t.train], t.train_y, k).tolist()
            )
            rows.append(
                {"task": t.name, "k": k, "ours": ours, "saebench": float(theirs), "same_latents": same}
            )
    diffs = [abs(r["ours"] - r["saebench"]) for r in rows]
    return {"rows": rows, "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs)}


def scr_check(st, model, sae, lset, split, hook, ctx_len, ns):
    from neuroscope.sae.bench import scr_tpp
    from neuroscope.sae.bench.pooled import pool

    pooled = pool(model, lset.texts, hook, {"sae": sae}, ctx_len)
    probes = scr_tpp.scr_probes(lset, split, pooled)
    ours = scr_tpp.scr(probes, pooled, "sae", scr_tpp.decoder(sae), ns)
    bld = _padded(model, lset.texts, hook, ctx_len)
    keys = {
        "male / female": "spurious",
        "professor / nurse": "target",
        "male_professor / female_nurse": "biased",
    }
    negs = {"male / female": "female_data_only", "professor / nurse": "nurse_data_only"}
    negs["male_professor / female_nurse"] = "female_nurse_data_only"

    def data(side):
        d = {}
        for key, ours_key in keys.items():
            idx, y = side[ours_key]
            d[key], d[negs[key]] = bld[idx[y == 1]], bld[idx[y == 0]]
        return d

    train, test = data(probes.train), data(probes.test)

    def probe(p):
        q = st.probe_training.Probe(bld.shape[-1], torch.float32)
        with torch.no_grad():
            q.net.weight.copy_(p.weight[None])
            q.net.bias.fill_(p.bias)
        return q

    their_probes = {
        "male / female": probe(probes.spurious),
        "professor / nurse": probe(probes.target),
        "male_professor / female_nurse": probe(probes.biased),
    }
    view = _SAEView(sae)
    classes = list(keys)
    mean = lambda t: t.sum(1) / (t.abs().sum(-1) != 0).sum(1).clamp_min(1)[:, None]  # noqa: E731
    torch.manual_seed(0)
    clean = st.get_probe_test_accuracy(
        their_probes, classes, {k: mean(v) for k, v in test.items()}, 500, True
    )
    effects = st.get_all_node_effects_for_one_sae(view, their_probes, classes, True, train, 125)
    ablated = st.perform_feature_ablations(
        their_probes, view, 125, test, effects, list(ns), classes, 500, True
    )
    theirs = st.get_scr_plotting_dict(ablated, clean)
    rows = [
        {
            "n": n,
            "ours_dir1": ours.dir1[n],
            "saebench_dir1": theirs[f"scr_dir1_threshold_{n}"],
            "ours_dir2": ours.dir2[n],
            "saebench_dir2": theirs[f"scr_dir2_threshold_{n}"],
            "ours_metric": ours.metric[n],
            "saebench_metric": theirs.get(f"scr_metric_threshold_{n}"),
        }
        for n in ns
    ]
    diffs = [abs(r[f"ours_{d}"] - r[f"saebench_{d}"]) for r in rows for d in ("dir1", "dir2")]
    return {
        "rows": rows,
        "clean_accuracy_ours": probes.accuracy,
        "clean_accuracy_saebench": clean,
        "max_abs_diff": max(diffs),
    }


def tpp_check(st, pooled, tasks, sae, ns):
    from neuroscope.sae.bench import scr_tpp

    probes = scr_tpp.task_probes(pooled, tasks)
    ours = scr_tpp.tpp(pooled, tasks, probes, "sae", scr_tpp.decoder(sae), ns)
    clean = scr_tpp.tpp_clean_accuracy(pooled, tasks, probes)
    # per-task ablated accuracies, from our own per-task record: clean - drop
    acc = {}
    for ti in tasks:
        acc[ti.name] = {}
        for n in ns:
            acc[ti.name][n] = {}
    w_dec = scr_tpp.decoder(sae)
    for i, ti in enumerate(tasks):
        c = pooled[ti.set_name].codes["sae"]
        e = scr_tpp.effects(c[ti.train], ti.train_y, probes[i], w_dec, scr=False)
        for n in ns:
            lat = scr_tpp.top_n(e, n)
            for t, p in zip(tasks, probes, strict=True):
                pj = pooled[t.set_name]
                x = scr_tpp.ablate(pj.resid[t.test], pj.codes["sae"][t.test], w_dec, lat)
                acc[ti.name][n][t.name] = p.accuracy(x, t.test_y)
    theirs, _ = st.create_tpp_plotting_dict(acc, clean)
    rows = [
        {"n": n, "ours": ours.total[n], "saebench": theirs[f"tpp_threshold_{n}_total_metric"]} for n in ns
    ]
    return {"rows": rows, "max_abs_diff": max(abs(r["ours"] - r["saebench"]) for r in rows)}


class _TLAdapter:
    """The two TransformerLens calls SAEBench's absorption calculator makes, answered by our HookedModel."""

    def __init__(self, model):
        self.model, self.tokenizer = model, model.tokenizer

    def to_tokens(self, text):
        from neuroscope.sae.bench.pooled import encode_texts

        return torch.tensor(encode_texts(self.model, [text], self.model.cfg.n_ctx))

    def run_with_cache(self, prompts, names_filter):
        from neuroscope.sae.bench.pooled import encode_texts, hook_layer

        (hook,) = names_filter
        ids = torch.tensor(encode_texts(self.model, prompts, self.model.cfg.n_ctx))
        _, cache = self.model.run_with_cache(ids, names=[hook], stop_at_layer=hook_layer(self.model, hook))
        return None, {hook: cache[hook].float()}


def absorption_check(fac, model, sae, hook, n_words, seed=0):
    from neuroscope.sae.bench import absorption as ab
    from neuroscope.sae.bench.pooled import encode_texts, position_activations

    data = ab.first_letter_data(model, hook, n_words, seed=seed)
    probe = ab.fit_letter_probe(data, seed)
    # SAEBench needs prompts of one token length: words that are one token on their own
    single = [
        w
        for w in ab.vocab_words(model.tokenizer, None)
        if len(model.tokenizer(w, add_special_tokens=False)["input_ids"]) == 1
    ]
    random.seed(seed)
    calc = fac.FeatureAbsorptionCalculator(
        model=_TLAdapter(model),
        icl_word_list=single,
        max_icl_examples=10,
        base_template=ab.TEMPLATE,
        word_token_pos=-6,
    )
    z_tr = sae.encode(data.train_x).detach()
    z_te = sae.encode(data.test_x).detach()
    w_unit = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=-1, keepdim=True)
    pred = probe.predict(data.test_x)
    rows, n_words_checked = [], 0
    for li, letter in enumerate(ab.LETTERS):
        if probe.test_f1.get(letter, 0.0) <= ab.MIN_PROBE_F1:
            continue
        main, _ = ab.split_latents(z_tr, (data.train_y == li).long(), z_te, (data.test_y == li).long(), seed)
        words = [
            w
            for i, w in enumerate(data.test_words)
            if int(data.test_y[i]) == li and int(pred[i]) == li and w in single
        ]
        if not words or not main:
            continue
        direction = probe.directions[li]
        res = calc.calculate_absorption(
            _SAEView(sae), words, direction, main, layer=int(hook.split(".")[1]), show_progress=False
        )
        prompts = [r.prompt for r in res.word_results]
        ids = encode_texts(model, prompts, model.cfg.n_ctx)
        x = position_activations(model, ids, [len(i) - 6 for i in ids], hook)
        cos = w_unit @ (direction / direction.norm())
        for r, xi in zip(res.word_results, x, strict=True):
            frac, full = ab.word_absorption(xi, sae.encode(xi[None]).detach()[0], direction, cos, main)
            rows.append(
                {
                    "letter": letter,
                    "word": r.word,
                    "ours_fraction": frac,
                    "saebench_fraction": float(r.absorption_fraction),
                    "ours_full": full,
                    "saebench_full": bool(r.is_full_absorption),
                }
            )
            n_words_checked += 1
    diffs = [abs(r["ours_fraction"] - r["saebench_fraction"]) for r in rows]
    return {
        "n_words": n_words_checked,
        "max_abs_diff_fraction": max(diffs) if diffs else None,
        "full_absorption_disagreements": sum(r["ours_full"] != r["saebench_full"] for r in rows),
        "mean_fraction_ours": sum(r["ours_fraction"] for r in rows) / max(1, len(rows)),
        "mean_fraction_saebench": sum(r["saebench_fraction"] for r in rows) / max(1, len(rows)),
        "rows": rows[:50],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sae", required=True)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ctx-len", type=int, default=64)
    ap.add_argument("--words", type=int, default=1500)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pt, st, fac = _import_saebench()
    from neuroscope.models.loading import load_model
    from neuroscope.sae.bench import labelled
    from neuroscope.sae.bench.pooled import pool
    from neuroscope.sae.bench.probing import binary_tasks
    from neuroscope.sae.bench.real import load_bench_saes, machine_info

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    model = load_model(args.model)
    (b,) = load_bench_saes([args.sae], model)
    sae, hook = b.sae, b.hook
    sets = [labelled.sentiment_set(), labelled.contrastive_set(), labelled.docs_section_set(per_class=60)]
    pooled, tasks = {}, []
    with torch.no_grad():
        for s in sets:
            pooled[s.name] = pool(model, s.texts, hook, {"sae": sae}, args.ctx_len)
            tasks += binary_tasks(s, s.split())
        ns = (2, 5, 10, 20, 50, 100, 500)
        scr_set = labelled.section_code_set(per_quadrant=60)
        out = {
            "sae": args.sae,
            "model": args.model,
            "hook": hook,
            "saebench_version": "0.6.0",
            "ctx_len": args.ctx_len,
            "sparse_probing": sparse_probing_check(pt, pooled, tasks, "sae"),
            "tpp": tpp_check(st, pooled, tasks, sae, ns),
        }
    out["scr"] = scr_check(st, model, sae, scr_set, scr_set.split(), hook, args.ctx_len, ns)
    with torch.no_grad():
        out["absorption"] = absorption_check(fac, model, sae, hook, args.words)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine_info()
    out["loadavg_before"] = list(load0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    summary = {
        k: {kk: vv for kk, vv in v.items() if kk != "rows"}
        for k, v in out.items()
        if isinstance(v, dict) and "rows" in v
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
