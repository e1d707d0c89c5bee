"""Bundles: export → import round trip, a merged model, and every kind of bad input refused with its own
error before anything is attached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from edits_testutil import fresh, random_sae, save_hf, tokens

from neuroscope.bundles import BundleContents, export_bundle, export_merged, import_bundle, verify_bundle
from neuroscope.bundles.verify import attach_bundle
from neuroscope.cli import main
from neuroscope.edits import EditHost, LoraEdit, ablation_edit, build_edit
from neuroscope.errors import (
    AdapterTargetError,
    BundleVersionError,
    ChecksumMismatchError,
    HookWidthMismatchError,
    InvalidConfigError,
    ModelMismatchError,
    RankOutOfRangeError,
    TruncatedFileError,
    UnknownFeatureError,
    UnsafeFormatError,
    UnsafePathError,
)
from neuroscope.models.loading import file_sha256
from neuroscope.sae import SAE, SAEConfig, save_sae


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _bundle(tmp_path: Path, model=None) -> tuple[Path, object]:
    model = model or fresh("llama")
    sae = random_sae(model)
    edit = build_edit(model, sae, [3, 7], "ablate", rank=4, contexts=tokens(model))
    contents = BundleContents(
        saes={"l1": sae}, edits={"no-3-7": edit}, labels={"l1": {3: "three", 7: "seven"}}
    )
    return export_bundle(model, contents, tmp_path / "bundle"), model


def _rehash(bundle: Path) -> None:
    """Recompute the manifest's checksums after tampering, so that the check under test is the one that fires."""
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = {
        p.relative_to(bundle).as_posix(): file_sha256(p)
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != "manifest.json"
    }
    (bundle / "manifest.json").write_text(json.dumps(m))


def _edit_manifest(bundle: Path, fn) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _nothing_attached(model) -> None:
    assert EditHost.of(model).names() == []
    from peft.tuners.lora import LoraLayer

    live = [
        m for m in model.hf_model.modules() if isinstance(m, LoraLayer) and (m.lora_A or m.lora_embedding_A)
    ]
    assert live == []


def test_round_trip_attaches_the_same_edit_and_labels(tmp_path):
    bundle, model = _bundle(tmp_path)
    t = tokens(model)
    with torch.no_grad():
        host = EditHost.of(model)
        host.add("orig", build_edit(model, random_sae(model), [3, 7], "ablate", rank=4))
        with host.use(["orig"]):
            expect = model(t)
        host.remove("orig")
    attached = import_bundle(bundle, model, prefix="b:")
    assert attached.edit_names == {"no-3-7": "b:no-3-7"}
    with torch.no_grad(), EditHost.of(model).use(["b:no-3-7"]):
        got = model(t)
    assert torch.allclose(got, expect, atol=1e-6)
    assert attached.contents.labels == {"l1": {3: "three", 7: "seven"}}
    m = attached.verified.manifest
    assert m["edits"]["no-3-7"]["sae"] == "l1" and m["edits"]["no-3-7"]["features"] == [3, 7]
    assert m["edits"]["no-3-7"]["measured"]["max_abs_logit_diff_vs_hooked"] <= 1e-4
    assert m["saes"]["l1"]["width"] == 256 and m["saes"]["l1"]["k"] == 8
    assert set(m["files"]) == {
        "saes/l1/cfg.json",
        "saes/l1/sae_weights.safetensors",
        "lora/no-3-7/adapter_config.json",
        "lora/no-3-7/adapter_model.safetensors",
    }


def test_merged_model_reproduces_the_edit(tmp_path):
    from transformers import AutoModelForCausalLM

    bundle, model = _bundle(tmp_path)
    attached = import_bundle(bundle, model)
    out = export_merged(model, list(attached.contents.edits.values()), tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(out)
    t = tokens(model)
    with torch.no_grad():
        with EditHost.of(model).use(["no-3-7"]):
            edited = model(t)
        merged = plain(input_ids=t).logits
    assert float((edited - merged).abs().max()) <= 1e-4
    assert plain.config.tie_word_embeddings is False


def test_cli_export_import_and_peft(tmp_path):
    """lora-patch → export → import --export: the re-exported adapter loads in plain peft with the same logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = fresh("llama")
    hf = save_hf(model, tmp_path / "hf")
    save_sae(random_sae(model), tmp_path / "saes" / "l1")
    text = tmp_path / "text.txt"
    text.write_text("The residual stream of a model carries features between layers. " * 40)
    args = ["--model", str(hf)]
    assert (
        main(
            [
                "lora-patch",
                *args,
                "--sae",
                str(tmp_path / "saes/l1"),
                "--features",
                "3,7",
                "--rank",
                "4",
                "--data",
                str(text),
                "--contexts",
                "8",
                "--out",
                str(tmp_path / "lora/x"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "export",
                *args,
                "--sae",
                str(tmp_path / "saes/l1"),
                "--lora",
                str(tmp_path / "lora/x"),
                "--out",
                str(tmp_path / "b1"),
            ]
        )
        == 0
    )
    assert main(["import", str(tmp_path / "b1"), *args, "--export", str(tmp_path / "b2")]) == 0
    edit = json.loads((tmp_path / "lora/x/edit.json").read_text())
    assert edit["exact"] and edit["rank"] == 4 and edit["features"] == [3, 7]
    t = tokens(model)
    attached = import_bundle(tmp_path / "b2", model)
    with torch.no_grad(), EditHost.of(model).use(list(attached.edit_names.values())):
        ours = model(t)
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf), str(tmp_path / "b2/lora/x"))
    with torch.no_grad():
        theirs = plain(input_ids=t).logits
    assert float((ours - theirs).abs().max()) <= 1e-4


def _tamper_path_dotdot(b: Path, model) -> None:
    _edit_manifest(b, lambda m: m["edits"]["no-3-7"].update(path="lora/../../outside"))


def _tamper_path_absolute(b: Path, model) -> None:
    _edit_manifest(b, lambda m: m["saes"]["l1"].update(path="/etc"))


def _tamper_symlink(b: Path, model) -> None:
    outside = b.parent / "secret.txt"
    outside.write_text("not yours")
    os.symlink(outside, b / "saes" / "l1" / "notes.txt")


def _tamper_pickle(b: Path, model) -> None:
    (b / "lora" / "no-3-7" / "adapter_model.bin").write_bytes(b"\x80\x04\x95pickle")
    _rehash(b)


def _tamper_pickle_named_safetensors(b: Path, model) -> None:
    (b / "lora" / "no-3-7" / "adapter_model.safetensors").write_bytes(b"PK\x03\x04torch.save zip")
    _rehash(b)


def _tamper_checksum(b: Path, model) -> None:
    f = b / "lora" / "no-3-7" / "adapter_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))


def _tamper_unlisted(b: Path, model) -> None:
    (b / "lora" / "no-3-7" / "extra.json").write_text("{}")


def _tamper_model_hash(b: Path, model) -> None:
    _edit_manifest(b, lambda m: m["model"].update(weights_sha256="0" * 64, name="someone-elses-model"))


def _tamper_sae_width(b: Path, model) -> None:
    save_sae(
        SAE(SAEConfig(d_in=32, d_sae=128, arch="topk", k=4, hook_name="blocks.1.hook_resid_post")),
        b / "saes" / "l1",
    )
    _rehash(b)


def _tamper_targets(b: Path, model) -> None:
    from safetensors.torch import load_file, save_file

    f = b / "lora" / "no-3-7" / "adapter_model.safetensors"
    state = {k.replace("layers.1.", "layers.7."): v for k, v in load_file(str(f)).items()}
    save_file(state, str(f))
    cfg = json.loads((f.parent / "adapter_config.json").read_text())
    cfg["target_modules"] = [t.replace("layers.1.", "layers.7.") for t in cfg["target_modules"]]
    (f.parent / "adapter_config.json").write_text(json.dumps(cfg))
    _rehash(b)


def _tamper_rank(b: Path, model) -> None:
    good = ablation_edit(model, random_sae(model), [3], rank=4)
    low = LoraEdit(2, {p: (A[:2], B[:, :2]) for p, (A, B) in good.modules.items()}, good.embedding)
    low.save(b / "lora" / "no-3-7", with_info=False)
    _edit_manifest(b, lambda m: m["edits"]["no-3-7"].update(rank=None))
    _rehash(b)


def _tamper_feature(b: Path, model) -> None:
    _edit_manifest(b, lambda m: m["edits"]["no-3-7"].update(features=[3, 99_999]))


def _tamper_truncated_header(b: Path, model) -> None:
    f = b / "saes" / "l1" / "sae_weights.safetensors"
    f.write_bytes(f.read_bytes()[:20])
    _rehash(b)


def _tamper_truncated_data(b: Path, model) -> None:
    f = b / "saes" / "l1" / "sae_weights.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    _rehash(b)


def _tamper_version(b: Path, model) -> None:
    _edit_manifest(b, lambda m: m.update(version=99))


BAD = [
    (_tamper_path_dotdot, UnsafePathError, "climbs out of the bundle"),
    (_tamper_path_absolute, UnsafePathError, "is absolute"),
    (_tamper_symlink, UnsafePathError, "symlink"),
    (_tamper_pickle, UnsafeFormatError, "adapter_model.bin is a .bin file"),
    (_tamper_pickle_named_safetensors, UnsafeFormatError, "holds a pickle/torch.save archive"),
    (_tamper_checksum, ChecksumMismatchError, "adapter_model.safetensors: SHA-256"),
    (_tamper_unlisted, ChecksumMismatchError, "not covered by the manifest"),
    (_tamper_model_hash, ModelMismatchError, "made for model 'someone-elses-model'"),
    (_tamper_sae_width, HookWidthMismatchError, "reads 32-wide activations but blocks.1.hook_resid_post"),
    (_tamper_targets, AdapterTargetError, "lacks: model.layers.7"),
    (_tamper_rank, RankOutOfRangeError, "rank must be in 4..16, got 2"),
    (_tamper_feature, UnknownFeatureError, "feature 99999 does not exist"),
    (_tamper_truncated_header, TruncatedFileError, "truncated"),
    (_tamper_truncated_data, TruncatedFileError, "truncated"),
    (_tamper_version, BundleVersionError, "manifest version 99"),
]


@pytest.mark.parametrize(("tamper", "error", "message"), BAD, ids=[t.__name__[8:] for t, _, _ in BAD])
def test_bad_bundle_is_refused_and_nothing_attached(tmp_path, tamper, error, message):
    bundle, model = _bundle(tmp_path)
    tamper(bundle, model)
    with pytest.raises(error, match=message.replace(".", r"\.")):
        import_bundle(bundle, model)
    _nothing_attached(model)
    # the CLI says the same in one line and exits with 2
    assert main(["import", str(bundle), "--model", "tiny:llama"]) == 2


def test_model_mismatch_is_attached_with_force(tmp_path):
    bundle, model = _bundle(tmp_path)
    _tamper_model_hash(bundle, model)
    attached = import_bundle(bundle, model, force=True)
    assert attached.edit_names == {"no-3-7": "no-3-7"}
    assert "attached because of --force" in attached.verified.warnings[0]


def test_attach_is_all_or_nothing(tmp_path):
    """Two edits; the second collides with an edit already on the model: the first is rolled back."""
    model = fresh("llama")
    sae = random_sae(model)
    e1, e2 = ablation_edit(model, sae, [3], rank=4), ablation_edit(model, sae, [5], rank=4)
    bundle = export_bundle(model, BundleContents(saes={"l1": sae}, edits={"a": e1, "b": e2}), tmp_path / "b")
    host = EditHost.of(model)
    host.add("b", e2)
    verified = verify_bundle(bundle, model)
    with pytest.raises(InvalidConfigError, match="already attached"):
        attach_bundle(verified, model)
    assert host.names() == ["b"]


def test_export_refuses_an_edit_without_its_sae(tmp_path):
    model = fresh("llama")
    edit = build_edit(model, random_sae(model), [3], "ablate", rank=4)
    with pytest.raises(InvalidConfigError, match="not in the bundle"):
        export_bundle(
            model,
            BundleContents(saes={"other": random_sae(model, seed=5)}, edits={"e": edit}),
            tmp_path / "b",
        )
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []
