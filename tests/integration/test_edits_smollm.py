"""Edits and bundles on the bundled smollm2-135m with an SAE from the documented pipeline (small size):
the ablate LoRA equals the hooked ProjectOut (≤ 1e-4 in the logits) and, exported, reproduces it in plain
transformers + peft; Ben's journey across three processes; the clamp distillation reports held-out KL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from features_testutil import HOOK, small_sae

from neuroscope.bundles import BundleContents, export_bundle
from neuroscope.edits import DistillConfig, EditHost, build_edit, corpus_contexts, reference_for
from neuroscope.models.loading import alias_path, gguf_cache_dir

pytestmark = pytest.mark.integration
PROMPTS = [
    "The interpreter reads the source file and compiles it to bytecode before running it.",
    "A dictionary maps keys to values; looking up a missing key raises KeyError.",
]


def _features(model, sae, contexts, n=2):
    """The features that fire on the most of these contexts (so the edit does something measurable)."""
    from neuroscope.edits.reference import feature_acts

    z = feature_acts(model, sae, contexts, range(sae.d_sae))
    return [int(f) for f in (z.amax(1) > 0).float().mean(0).topk(n).indices]


def _hf_folder() -> Path:
    return gguf_cache_dir(alias_path("smollm2-135m"))  # config.json + model.safetensors + tokenizer


def _ids(model):
    t = model.tokenize(PROMPTS)
    n = int(t.attention_mask.sum(-1).min()) if t.attention_mask is not None else t.ids.shape[1]
    return t.ids[:, :n]


def test_ablate_lora_equals_project_out_and_plain_peft(smollm, real_corpus, tmp_path):
    """The identity is checked in float64 (exact up to float64 rounding); in float32 the LoRA stays within the
    hooked ablation's own rounding noise, and the exported adapter in plain peft equals the attached one."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import neuroscope as ns

    root, sae = small_sae(smollm, real_corpus)
    contexts = corpus_contexts(smollm, real_corpus, 32, 32, split="heldout")
    feats = _features(smollm, sae, contexts)
    # float64: LoRA == hooked ProjectOut on corpus contexts (which start with the <|endoftext|> sink token)
    m64 = ns.load_model("smollm2-135m", device="cpu", dtype="float64")
    e64 = build_edit(m64, sae, feats, "ablate", rank=8)
    EditHost.of(m64).add("ablate", e64)
    with torch.no_grad():
        hooked64 = m64(contexts[:4], interventions=reference_for(m64, sae, feats, "ablate"))
        with EditHost.of(m64).use(["ablate"]):
            lora64 = m64(contexts[:4])
        base64 = m64(contexts[:4])
    assert float((lora64 - hooked64).abs().max()) <= 1e-9
    assert float((lora64 - base64).abs().max()) > 1.0
    del m64
    # float32, as the workbench runs it
    edit = build_edit(smollm, sae, feats, "ablate", rank=8, contexts=contexts[:8])
    assert edit.info["exact"] and edit.info["hook"] == HOOK
    assert len(edit.modules) == 1 + 2 * 16  # the embedding, o_proj and down_proj of layers 0..15
    measured = edit.info["measured"]
    assert measured["max_abs_logit_diff_vs_hooked"] <= max(1e-4, 2 * measured["hooked_noise_floor"])
    host = EditHost.of(smollm)
    host.add("ablate", edit)
    try:
        ids = _ids(smollm)
        with torch.no_grad():
            base = smollm(ids)
            hooked = smollm(ids, interventions=reference_for(smollm, sae, feats, "ablate"))
            with host.use(["ablate"]):
                lora = smollm(ids)
        assert float((lora - hooked).abs().max()) <= 2e-4
        assert float((lora - base).abs().max()) > 0.5
        bundle = export_bundle(
            smollm, BundleContents(saes={"l15": sae}, edits={"ablate": edit}), tmp_path / "b"
        )
        plain = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(_hf_folder()), str(bundle / "lora" / "ablate")
        )
        with torch.no_grad():
            theirs = plain(input_ids=ids).logits
            theirs_ctx = plain(input_ids=contexts[:4]).logits
            with host.use(["ablate"]):
                ours_ctx = smollm(contexts[:4])
        assert float((theirs - lora).abs().max()) <= 1e-4
        assert float((theirs_ctx - ours_ctx).abs().max()) <= 1e-4
    finally:
        host.remove("ablate")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_bens_journey_across_processes(smollm, real_corpus, tmp_path):
    """A colleague makes a bundle in one process; Ben imports it in another, attaches it, re-exports it; the
    re-exported LoRA loads in plain peft (no NeuroScope) with the same logits."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    root, sae = small_sae(smollm, real_corpus)
    contexts = corpus_contexts(smollm, real_corpus, 32, 32, split="heldout")
    feats = ",".join(map(str, _features(smollm, sae, contexts)))
    cli = [sys.executable, "-m", "neuroscope.cli"]
    _run(
        [
            *cli,
            "lora-patch",
            "--model",
            "smollm2-135m",
            "--sae",
            str(root / "sae"),
            "--features",
            feats,
            "--rank",
            "8",
            "--data",
            str(real_corpus),
            "--contexts",
            "8",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "colleague" / "lora" / "quiet"),
        ],
        tmp_path,
    )
    _run(
        [
            *cli,
            "export",
            "--model",
            "smollm2-135m",
            "--sae",
            str(root / "sae"),
            "--lora",
            str(tmp_path / "colleague" / "lora" / "quiet"),
            "--out",
            str(tmp_path / "from-colleague"),
        ],
        tmp_path,
    )
    script = textwrap.dedent(f"""
        import json, torch
        from safetensors.torch import save_file
        import neuroscope as ns
        from neuroscope.bundles import import_bundle, export_bundle
        from neuroscope.edits import EditHost
        torch.set_num_threads(1)
        model = ns.load_model("smollm2-135m", device="cpu")
        attached = import_bundle({str(tmp_path / "from-colleague")!r}, model)
        t = model.tokenize({PROMPTS!r})
        n = int(t.attention_mask.sum(-1).min()) if t.attention_mask is not None else t.ids.shape[1]
        with torch.no_grad(), EditHost.of(model).use(list(attached.edit_names.values())):
            logits = model(t.ids[:, :n])
        save_file({{"logits": logits.contiguous(), "ids": t.ids[:, :n].contiguous()}}, {str(tmp_path / "ben.safetensors")!r})
        export_bundle(model, attached.contents, {str(tmp_path / "for-production")!r})
        print(json.dumps(attached.edit_names))
    """)
    out = _run([sys.executable, "-c", script], tmp_path)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"quiet": "quiet"}
    ben = load_file(str(tmp_path / "ben.safetensors"))
    plain = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(_hf_folder()),
        str(tmp_path / "for-production" / "lora" / "quiet"),
    )
    with torch.no_grad():
        theirs = plain(input_ids=ben["ids"]).logits
        base = smollm(ben["ids"])
    assert float((theirs - ben["logits"]).abs().max()) <= 1e-4
    assert float((theirs - base).abs().max()) > 0.5
    manifest = json.loads((tmp_path / "for-production" / "manifest.json").read_text())
    assert manifest["edits"]["quiet"]["features"] == [int(f) for f in feats.split(",")]
    assert manifest["edits"]["quiet"]["sae"] in manifest["saes"]


def test_clamp_distillation_reports_heldout_kl(smollm, real_corpus):
    """A short run (the documented command runs the full one): the report has held-out KL to the hooked
    clamp next to the KL of doing nothing, and the fit is closer than doing nothing."""
    root, sae = small_sae(smollm, real_corpus)
    contexts = corpus_contexts(smollm, real_corpus, 48, 32, split="train")
    from neuroscope.edits.reference import feature_acts

    z = feature_acts(smollm, sae, contexts, range(sae.d_sae))
    density = (z.amax(1) > 0).float().mean(0)
    f = int((density - 0.5).abs().argmin())
    edit = build_edit(
        smollm,
        sae,
        [f],
        "clamp",
        value=2 * float(z[..., f].max()),
        rank=4,
        contexts=contexts,
        cfg=DistillConfig(steps=8, batch_size=4, layers_back=2, lr=5e-3),
    )
    d = edit.info["distill"]
    assert set(d["heldout_kl_hooked_to_edit"]) == {"fire", "quiet"}
    assert d["heldout_kl_hooked_to_base"]["fire"] > 0
    assert d["heldout_kl_hooked_to_edit"]["fire"] < d["heldout_kl_hooked_to_base"]["fire"]
