"""The feature lab's acceptance figures on smollm2-135m with the documented layer-15 SAE (docs/sae/README.md).

    python docs/features/acceptance.py --sae saes/l15-k64 --out docs/features/acceptance.json

1. ``ablate`` as LoRA vs the hooked ProjectOut: float64 (the identity) and float32 (as served), on held-out
   corpus contexts; the exported adapter loaded by plain transformers + peft against both.
2. ``clamp`` distilled: held-out KL to the hooked clamp next to the KL of doing nothing.
3. ``features contrast`` on docs/features/prompts (exception sentences vs tutorial prose).
Everything is computed with the library calls the CLI uses (build_edit, export_bundle, contrast_features).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae", default="saes/l15-k64")
    ap.add_argument("--data", default="data/corpus")
    ap.add_argument("--out", default=str(HERE / "acceptance.json"))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import neuroscope as ns
    from neuroscope.bundles import BundleContents, export_bundle
    from neuroscope.edits import DistillConfig, EditHost, build_edit, corpus_contexts, reference_for
    from neuroscope.edits.reference import feature_acts
    from neuroscope.models.loading import alias_path, gguf_cache_dir
    from neuroscope.sae import load_sae
    from neuroscope.sae.contrast import ContrastConfig, contrast_features, read_prompts

    out: dict = {"sae": a.sae, "model": "smollm2-135m"}
    model = ns.load_model("smollm2-135m", device="cpu")
    sae = load_sae(a.sae)
    held = corpus_contexts(model, a.data, 64, 32, split="heldout")
    z = feature_acts(model, sae, held, range(sae.d_sae))
    density = (z.amax(1) > 0).float().mean(0)  # fraction of held-out contexts where each feature fires
    # ablate: the two features that fire in the most held-out contexts (so the edit visibly matters)
    feats = [int(f) for f in density.topk(2).indices]
    edit = build_edit(model, sae, feats, "ablate", rank=8, contexts=held[:16])
    out["ablate"] = {
        "features": feats,
        "context_density": [round(float(density[f]), 3) for f in feats],
        "float32_measured_on_16_contexts": edit.info["measured"],
        "exact": edit.info["exact"],
    }
    # float64: the identity itself
    m64 = ns.load_model("smollm2-135m", device="cpu", dtype="float64")
    e64 = build_edit(m64, sae, feats, "ablate", rank=8)
    EditHost.of(m64).add("a", e64)
    with torch.no_grad():
        h64 = m64(held[:8], interventions=reference_for(m64, sae, feats, "ablate"))
        with EditHost.of(m64).use(["a"]):
            l64 = m64(held[:8])
    out["ablate"]["float64_max_abs_logit_diff_vs_hooked"] = float((l64 - h64).abs().max())
    del m64, h64, l64
    # exported, then loaded by plain transformers + peft (no NeuroScope)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix="features-acceptance-"))
    bundle = export_bundle(model, BundleContents(saes={"l15": sae}, edits={"ablate": edit}), tmp / "bundle")
    plain = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(gguf_cache_dir(alias_path("smollm2-135m"))),
        str(bundle / "lora" / "ablate"),
    )
    host = EditHost.of(model)
    host.add("ablate", edit)
    with torch.no_grad():
        theirs = plain(input_ids=held[:8]).logits
        with host.use(["ablate"]):
            ours = model(held[:8])
        hooked = model(held[:8], interventions=reference_for(model, sae, feats, "ablate"))
    out["ablate"]["plain_peft_vs_attached_lora_max_abs_logit_diff"] = float((theirs - ours).abs().max())
    out["ablate"]["plain_peft_vs_hooked_max_abs_logit_diff"] = float((theirs - hooked).abs().max())
    out["ablate"]["bundle_files"] = sorted(json.loads((bundle / "manifest.json").read_text())["files"])
    host.remove("ablate")
    del plain
    # clamp, distilled: a feature that fires in about half of the training contexts, set to twice its max
    train = corpus_contexts(model, a.data, 256, 32, split="train")
    zt = feature_acts(model, sae, train, range(sae.d_sae))
    dens_t = (zt.amax(1) > 0).float().mean(0)
    f = int((dens_t - 0.5).abs().argmin())
    value = round(2 * float(zt[..., f].max()), 2)
    t0 = time.perf_counter()
    cfg = DistillConfig(steps=a.steps, batch_size=8, lr=2e-3, layers_back=4)
    clamp = build_edit(model, sae, [f], "clamp", value=value, rank=8, contexts=train, cfg=cfg)
    out["clamp"] = {
        "feature": f,
        "value": value,
        "context_density": round(float(dens_t[f]), 3),
        "seconds": round(time.perf_counter() - t0, 1),
        "config": cfg.__dict__,
        "distill": clamp.info["distill"],
        "measured_on_heldout_fire": clamp.info["measured"],
        "target_modules": clamp.target_modules,
    }
    # contrast
    pos, neg = read_prompts(HERE / "prompts" / "errors.txt"), read_prompts(HERE / "prompts" / "prose.txt")
    r = contrast_features(model, sae, pos, neg, ContrastConfig(top=10))
    out["contrast"] = r.to_dict()
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "contrast"}, indent=2)[:4000])


if __name__ == "__main__":
    main()
