"""Transcoder training, saving/loading and quality: planted problems, exact round trips, refusals by name,
resume after a kill, the CLI, and every adapter's tiny model end to end."""

from __future__ import annotations

import json

import pytest
import torch
from tinymodels import tiny

from neuroscope.errors import (
    InvalidConfigError,
    TranscoderMismatchError,
    UnsafeFormatError,
    UnsafePathError,
)
from neuroscope.models.tiny import TINY_TYPES
from neuroscope.transcoders.io import MANIFEST, load_transcoders, save_transcoder, write_manifest
from neuroscope.transcoders.model import Transcoder, TranscoderConfig
from neuroscope.transcoders.train import TCTrainConfig, layer_metrics, train_layer, train_transcoders


def planted(n: int, seed: int, d: int = 16, m: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A known sparse map in -> out: ``y = relu(x E^T - 1) D + x S`` (about 1.3 of 8 features per token)."""
    g = torch.Generator().manual_seed(0)
    E = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1)
    D = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1) * 3
    S = 0.1 * torch.randn(d, d, generator=g)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x, torch.relu(x @ E.T - 1.0) @ D + x @ S


def linear_fvu(x, y, hx, hy) -> float:
    X = torch.cat([x, torch.ones(len(x), 1)], 1)
    W = torch.linalg.lstsq(X, y).solution
    e = hy - torch.cat([hx, torch.ones(len(hx), 1)], 1) @ W
    return float(e.pow(2).sum() / (hy - hy.mean(0)).pow(2).sum())


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_each_activation_recovers_a_planted_sparse_map(activation):
    x, y = planted(4000, seed=1)
    hx, hy = planted(1000, seed=2)
    cfg = TCTrainConfig(
        layers=(0,),
        d_tc=32,
        k=4,
        activation=activation,
        skip=True,
        epochs=6,
        batch_size=256,
        lr=1e-2,
        l0_coefficient=1e-3,
        dead_tokens=2000,
    )
    tc, info = train_layer(x, y, cfg.tc_config(16, 0, "planted"), cfg)
    m = layer_metrics(tc, hx, hy)
    base = linear_fvu(x, y, hx, hy)  # what the skip term alone can do
    assert base > 0.3
    assert m["fvu"] < min(0.15, base / 3), (m, base)
    assert m["l0"] <= 8
    # the trained module is what the metrics read: its forward agrees with encode/decode + skip
    torch.testing.assert_close(tc(hx[:5]), tc.decode(tc.encode(hx[:5])) + hx[:5] @ tc.W_skip)


def _random_tc(activation: str, skip: bool, layer: int, d: int = 8, d_tc: int = 12) -> Transcoder:
    cfg = TranscoderConfig(
        d, d_tc, layer, activation, 3 if activation == "topk" else None, skip, "tiny:llama"
    )
    tc = Transcoder(cfg, seed=layer)
    with torch.no_grad():
        for p in tc.parameters():
            p.normal_()
        if activation == "jumprelu":
            tc.threshold.uniform_(0.1, 0.5)
    return tc


@pytest.mark.parametrize("activation,skip", [("topk", True), ("topk", False), ("jumprelu", True)])
def test_save_load_round_trip_is_exact(tmp_path, activation, skip):
    tcs = [_random_tc(activation, skip, l) for l in (0, 1)]
    for tc in tcs:
        save_transcoder(tc, tmp_path)
    write_manifest(tmp_path, tcs[0].cfg, [0, 1])
    loaded = load_transcoders(tmp_path)
    x = torch.randn(6, 8)
    for tc in tcs:
        got = loaded[tc.layer]
        assert got.cfg == tc.cfg
        for name, p in tc.named_parameters():
            assert torch.equal(p, dict(got.named_parameters())[name]), name
        assert torch.equal(got(x), tc(x))
    cfg_yaml = (tmp_path / "config.yaml").read_text()
    assert "model_kind: transcoder_set" in cfg_yaml and "feature_output_hook: mlp.hook_out" in cfg_yaml


def test_circuit_tracer_orientation(tmp_path):
    """circuit-tracer applies W_enc and W_skip with F.linear: the file holds their transposes."""
    from safetensors.torch import load_file

    tc = _random_tc("jumprelu", True, 0)
    save_transcoder(tc, tmp_path)
    state = load_file(str(tmp_path / "layer_0.safetensors"))
    x = torch.randn(4, 8)
    pre = torch.nn.functional.linear(x, state["W_enc"], state["b_enc"])
    acts = pre * (pre > state["activation_function.threshold"])
    out = acts @ state["W_dec"] + state["b_dec"] + x @ state["W_skip"].T
    torch.testing.assert_close(out, tc(x))


def test_refusals_by_name(tmp_path, tiny_llama, tiny_gpt2):
    tc = _random_tc("topk", True, 0, d=tiny_llama.cfg.d_model)
    save_transcoder(tc, tmp_path)
    write_manifest(tmp_path, tc.cfg, [0])
    assert load_transcoders(tmp_path, tiny_llama).layers == [0]
    with pytest.raises(TranscoderMismatchError, match="trained on 'tiny:llama'"):
        load_transcoders(tmp_path, tiny_gpt2)
    info = json.loads((tmp_path / MANIFEST).read_text())

    def refused(error, match, **change):
        (tmp_path / MANIFEST).write_text(json.dumps({**info, **change}))
        with pytest.raises(error, match=match):
            load_transcoders(tmp_path, tiny_llama)

    refused(TranscoderMismatchError, "take width", d_in=info["d_in"] + 1)
    refused(TranscoderMismatchError, "hook_resid_post", hook_in="blocks.{layer}.hook_resid_post")
    refused(TranscoderMismatchError, "has shape", d_tc=info["d_tc"] + 1)
    refused(TranscoderMismatchError, "layers", layers=[0, 99], files={"0": "layer_0.safetensors"})
    refused(UnsafePathError, "outside", files={"0": "../../etc/layer_0.safetensors"})
    refused(UnsafeFormatError, "not a .safetensors", files={"0": "layer_0.pt"})


def _tiny_cfg(**kw) -> TCTrainConfig:
    base = dict(
        layers=(0, 1),
        tokens=512,
        heldout_tokens=256,
        ctx_len=32,
        d_tc=32,
        k=4,
        batch_size=128,
        dead_tokens=256,
    )
    return TCTrainConfig(**{**base, **kw})


def test_resume_after_a_kill_skips_finished_layers(tmp_path, tiny_llama, real_corpus, monkeypatch):
    import neuroscope.transcoders.train as tr

    cfg = _tiny_cfg(data=str(real_corpus))
    real_train = tr.train_layer
    calls: list[int] = []

    def dies_on_layer_1(x, y, tc_cfg, c, progress=False):
        calls.append(tc_cfg.layer)
        if tc_cfg.layer == 1:
            raise KeyboardInterrupt  # the process killed mid-run
        return real_train(x, y, tc_cfg, c, progress)

    monkeypatch.setattr(tr, "train_layer", dies_on_layer_1)
    with pytest.raises(KeyboardInterrupt):
        train_transcoders(tiny_llama, cfg, tmp_path, progress=False)
    assert json.loads((tmp_path / MANIFEST).read_text())["layers"] == [0]
    assert not list(tmp_path.glob("*.tmp"))
    first = load_transcoders(tmp_path)[0].W_enc.clone()
    monkeypatch.setattr(tr, "train_layer", lambda *a, **k: (calls.append(a[2].layer), real_train(*a, **k))[1])
    result = train_transcoders(tiny_llama, cfg, tmp_path, progress=False)
    assert calls == [0, 1, 1]  # layer 0 was not trained again
    assert [r["layer"] for r in result.per_layer] == [0, 1]
    assert torch.equal(load_transcoders(tmp_path, tiny_llama)[0].W_enc, first)
    with pytest.raises(InvalidConfigError, match="other settings"):
        train_transcoders(tiny_llama, _tiny_cfg(data=str(real_corpus), d_tc=16), tmp_path, progress=False)


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_every_adapter_trains_loads_and_splices(tmp_path, model_type, real_corpus):
    """Record, train, save, load and evaluate one layer; with error terms the replacement is the model."""
    from neuroscope.transcoders.quality import QualityConfig, transcoder_quality

    model = tiny(model_type)
    cfg = _tiny_cfg(layers=(0,), tokens=256, heldout_tokens=128, epochs=1, data=str(real_corpus))
    train_transcoders(model, cfg, tmp_path, progress=False)
    q = transcoder_quality(model, tmp_path, QualityConfig(ce_contexts=2, ctx_len=32))
    (row,) = q.per_layer
    assert 0 <= row["fvu"] < 1.5 and 0 < row["l0"] <= 4
    w = q.whole_model
    assert abs(w["with_errors"]["kl"]) < 1e-4 and w["with_errors"]["top1_agreement"] == 1.0
    assert w["kl"] >= 0 and w["tokens"] > 0


def test_cli_smoke(tmp_path, real_corpus, capsys):
    from neuroscope.cli import main

    out = tmp_path / "tcs"
    args = ["train-transcoders", "--model", "tiny:llama", "--layers", "0-1", "--tokens", "512"]
    args += ["--heldout-tokens", "256", "--ctx-len", "32", "--d-tc", "32", "--k", "4", "--batch-size", "128"]
    args += ["--data", str(real_corpus), "--out", str(out), "--no-progress", "--features"]
    assert main(args) == 0
    assert "| 1 |" in capsys.readouterr().out
    assert (out / "layer_1.safetensors").exists() and (out / "features" / "L1" / "features.parquet").exists()
    report = tmp_path / "q.json"
    assert (
        main(
            [
                "transcoders",
                "quality",
                "--model",
                "tiny:llama",
                "--transcoders",
                str(out),
                "--ce-contexts",
                "2",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    q = json.loads(report.read_text())
    assert [r["layer"] for r in q["per_layer"]] == [0, 1] and q["whole_model"][
        "ce_loss_recovered"
    ] is not None


def test_merge_sets_trained_apart(tmp_path):
    from neuroscope.transcoders.io import merge_into

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, layer in ((a, 0), (b, 1)):
        tc = _random_tc("topk", True, layer)
        save_transcoder(tc, folder)
        write_manifest(folder, tc.cfg, [layer], {"per_layer": {str(layer): {"layer": layer}}})
    assert merge_into(a, b) == [1]
    merged = load_transcoders(a)
    assert merged.layers == [0, 1]
    assert torch.equal(merged[1].W_enc, load_transcoders(b)[1].W_enc)
    assert sorted(json.loads((a / MANIFEST).read_text())["per_layer"]) == ["0", "1"]
    c = tmp_path / "c"
    tc = _random_tc("jumprelu", True, 2)
    save_transcoder(tc, c)
    write_manifest(c, tc.cfg, [2])
    with pytest.raises(TranscoderMismatchError, match="activation"):
        merge_into(a, c)


def test_a_recording_over_more_layers_is_reused(tmp_path, tiny_llama, real_corpus):
    from neuroscope.transcoders.record import record_pairs

    full = record_pairs(tiny_llama, [0, 1], str(real_corpus), "heldout", 64, 32, tmp_path / "acts", False)
    again = record_pairs(tiny_llama, [1], str(real_corpus), "heldout", 64, 32, tmp_path / "acts", False)
    assert again.hooks == full.hooks
