"""Training: the loss falls, constraints hold after training, dead latents are tracked and trained by
AuxK, the LR finder and checkpoints work."""

from __future__ import annotations

import json

import torch
from sae_testutil import stores, trained

from neuroscope.record.reader import ActivationStore
from neuroscope.sae import SAEConfig, TrainConfig, load_sae
from neuroscope.sae.evaluate import reconstruction_stats
from neuroscope.sae.model import SAE
from neuroscope.sae.train import SAETrainingModule, init_b_dec, input_scale, train_sae


def test_topk_training_loss_falls_and_l0_is_k():
    sae, result, out = trained("topk")
    h = result.history
    assert h[-1]["loss"] < 0.5 * h[0]["loss"]
    assert all(r["l0"] <= 8 for r in h)
    _, held = stores()
    st = reconstruction_stats(sae, ActivationStore(held))
    assert st["l0"] == 8.0
    assert st["fvu"] < 0.5
    assert json.loads((out / "training.json").read_text())["result"]["steps"] == result.steps


def test_relu_training_loss_falls_and_decoder_stays_unit_norm():
    sae, result, _ = trained("relu")
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(sae.d_sae), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        trained("topk")[0].W_dec.norm(dim=-1), torch.ones(32 * 8), rtol=1e-4, atol=1e-4
    )


def test_training_writes_checkpoints_and_a_loadable_sae():
    sae, _, out = trained("topk")
    assert (out / "checkpoints" / "last.ckpt").exists()
    loaded = load_sae(out)
    x = torch.randn(5, sae.d_in)
    torch.testing.assert_close(loaded(x), sae(x))
    assert loaded.cfg.hook_name == "blocks.1.hook_resid_post"


def test_dead_latents_are_tracked_and_auxk_trains_them():
    train, _ = stores()
    x = ActivationStore(train).sample(512)
    x = x * input_scale(x)
    sae = SAE(SAEConfig(d_in=x.shape[1], d_sae=64, k=4))
    with torch.no_grad():
        sae.b_enc[:8] = -1e3  # latents 0..7 can never win the top-k
    mod = SAETrainingModule(sae, TrainConfig(dead_tokens=1000, aux_k=16), lr=1e-3)
    mod.log_dict = lambda *a, **k: None  # outside a Trainer
    for _ in range(3):
        mod.training_step(x, 0)
    assert mod.tokens_since_fired[:8].tolist() == [1536] * 8
    assert mod.dead_mask()[:8].all()
    # the dead latents get gradient only through the AuxK term
    with torch.no_grad():
        sae.b_enc[:8] = 0.5
        sae.W_enc[:, :8] *= 1e-3
    sae.zero_grad()
    pre = torch.relu(sae.pre_acts(x))
    vals, idx = pre.masked_fill(mod.dead_mask(), 0).topk(4, dim=-1)
    err = x - sae.decode_sparse(vals, idx)
    aux = mod._aux_loss(pre, err, (x - x.mean(0)).pow(2).sum())
    assert aux > 0
    aux.backward()
    dead = mod.dead_mask()
    assert sae.W_dec.grad[:8].abs().sum() > 0
    assert sae.W_dec.grad[~dead].abs().sum() == 0


def test_b_dec_init_mean_and_geometric_median():
    x = torch.randn(256, 6) + 4
    sae = SAE(SAEConfig(d_in=6, d_sae=12, k=2))
    init_b_dec(sae, x, "mean")
    torch.testing.assert_close(sae.b_dec.data, x.mean(0))
    init_b_dec(sae, x, "geometric_median")
    assert (sae.b_dec.data - 4).abs().max() < 0.5


def test_lr_finder_flag_picks_a_learning_rate(tmp_path):
    train, _ = stores()
    tcfg = TrainConfig(batch_size=256, max_tokens=2048, lr_find=True, progress=False)
    _, result = train_sae(train, tcfg=tcfg, out=tmp_path / "s", arch="topk", k=4, expansion=2)
    assert 1e-6 <= result.lr <= 1e-1
    assert json.loads((tmp_path / "s" / "training.json").read_text())["train"]["lr"] == result.lr


def planted_dictionary(d: int = 16, m: int = 64) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(m, d, generator=torch.Generator().manual_seed(1234)), dim=-1
    )


def planted(n: int = 8192, d: int = 16, m: int = 64, active: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` tokens, each a sum of ``active`` of the ``m`` unit directions of :func:`planted_dictionary`
    with weights in [1, 2], plus an offset; ``seed`` draws the tokens."""
    gen = torch.Generator().manual_seed(seed)
    D = planted_dictionary(d, m)
    idx = torch.rand(n, m, generator=gen).topk(active, dim=-1).indices
    w = torch.zeros(n, m).scatter_(1, idx, 1 + torch.rand(n, active, generator=gen))
    return w @ D + 0.5


def test_train_on_tensor_shares_the_store_trainer_and_saves(tmp_path):
    from neuroscope.sae.train import train_sae_on_tensor

    x = planted()
    cfg = SAEConfig(d_in=16, d_sae=64, k=3, hook_name="blocks.0.hook_resid_post", model_name="planted")
    tcfg = TrainConfig(batch_size=256, epochs=3, lr=3e-3, progress=False, dead_tokens=2048)
    sae, result = train_sae_on_tensor(x, cfg, tcfg, out=tmp_path / "s")
    assert result.steps == 3 * (8192 // 256)
    assert result.tokens == 3 * 8192
    assert result.history[-1]["fvu"] < 0.5 * result.history[0]["fvu"]
    typical = x[x.norm(dim=-1) <= 10 * x.norm(dim=-1).median()]
    assert abs(result.input_scale - input_scale(typical)) < 1e-4 * result.input_scale
    # the input scale is folded in: raw activations go in, raw reconstructions come out
    fvu = (sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert fvu < 0.45  # 0.35 reached
    loaded = load_sae(tmp_path / "s")
    torch.testing.assert_close(loaded(x[:8]), sae(x[:8]))
    assert loaded.cfg.hook_name == "blocks.0.hook_resid_post"
    info = json.loads((tmp_path / "s" / "training.json").read_text())
    assert info["acts"] == "tensor[8192, 16]" and info["result"]["steps"] == result.steps


def test_train_on_tensor_refuses_bad_tensors():
    import pytest

    from neuroscope.errors import InvalidConfigError, ShapeMismatchError
    from neuroscope.sae.train import train_sae_on_tensor

    cfg = SAEConfig(d_in=16, d_sae=32, k=2)
    with pytest.raises(ShapeMismatchError, match="d_in=16"):
        train_sae_on_tensor(torch.randn(512, 8), cfg)
    with pytest.raises(InvalidConfigError, match="fewer than one batch"):
        train_sae_on_tensor(torch.randn(100, 16), cfg, TrainConfig(batch_size=256))
    bad = torch.randn(512, 16)
    bad[3, 0] = float("nan")
    with pytest.raises(InvalidConfigError, match="NaN"):
        train_sae_on_tensor(bad, cfg, TrainConfig(batch_size=256))
