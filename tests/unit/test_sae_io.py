"""SAELens-format folders: our round trip, SAELens loading ours and ours loading SAELens's, clear errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError, ResourceNotFoundError
from neuroscope.sae import SAE, SAEConfig, load_sae, save_sae
from neuroscope.sae.saelens_compat import import_sae_lens

ARCHS = ["topk", "relu", "batchtopk", "jumprelu", "matryoshka"]
LENS_ARCH = {"topk": "topk", "relu": "standard", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
LENS_ARCH["matryoshka"] = "jumprelu"  # SAELens saves BatchTopK and Matryoshka as the JumpReLU they run as


def _random_sae(arch: str) -> SAE:
    torch.manual_seed(1)
    sae = SAE(
        SAEConfig(
            d_in=16,
            d_sae=48,
            k=6,
            arch=arch,
            hook_name="blocks.1.hook_resid_post",
            model_name="tiny:llama",
            matryoshka_widths=(8, 24) if arch == "matryoshka" else (),
            l0_coefficient=0.3,
        )
    )
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
        sae.b_enc.add_(0.3)
        if hasattr(sae, "threshold"):  # per-latent thresholds, so a latent-order mix-up would show
            sae.threshold.copy_(0.2 + 0.3 * torch.rand(48))
    return sae


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip(tmp_path, arch):
    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == LENS_ARCH[arch]
    assert cfg["neuroscope_architecture"] == arch
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    loaded = load_sae(tmp_path)
    assert loaded.cfg.arch == arch
    # parameters an architecture does not use are not stored for it
    unused = {k: getattr(loaded.cfg, k) for k in ("k", "l0_coefficient") if k not in loaded.arch.cfg_keys}
    assert loaded.cfg == replace(sae.cfg, **unused)
    if arch == "matryoshka":
        assert loaded.cfg.matryoshka_widths == (8, 24, 48)
    assert set(dict(loaded.named_parameters()) | dict(loaded.named_buffers())) == set(
        dict(sae.named_parameters()) | dict(sae.named_buffers())
    )
    for n, t in sae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[n], t)
    x = torch.randn(20, 16)
    torch.testing.assert_close(loaded(x), sae(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_ours_load_in_sae_lens(tmp_path, arch):
    import_sae_lens()
    from sae_lens import SAE as LensSAE

    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    lens = LensSAE.load_from_disk(str(tmp_path))
    assert lens.cfg.architecture() == LENS_ARCH[arch]
    x = torch.randn(200, 16)
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(lens.encode(x), z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lens.decode(lens.encode(x)), sae(x), rtol=1e-5, atol=1e-5)
    # the thresholds do work: some but not all positive pre-activations are cut
    pre = sae.pre_acts(x)
    assert 0 < int((z > 0).sum()) < int((pre > 0).sum()) or arch in ("topk", "relu")
    if arch == "topk":
        assert lens.cfg.k == 6


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_sae_lens_saes_load_in_ours(tmp_path, arch):
    import_sae_lens()
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(2)
    lens = (
        TopKSAE(TopKSAEConfig(d_in=16, d_sae=40, k=5))
        if arch == "topk"
        else StandardSAE(StandardSAEConfig(d_in=16, d_sae=40))
    )
    with torch.no_grad():
        for p in lens.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    lens.save_model(str(tmp_path))
    ours = load_sae(tmp_path)
    assert ours.cfg.arch == ("topk" if arch == "topk" else "relu")
    x = torch.randn(20, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), lens.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), lens.decode(lens.encode(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["training_rescaled", "no_b_dec_on_input"])
def test_sae_lens_topk_variants_load_in_ours(tmp_path, layout):
    """SAELens's TopK training SAE (latents scaled by decoder row norms, the default) saved as it trains, and
    an SAE that does not subtract b_dec from its input: ours gives SAELens's own outputs for both."""
    import_sae_lens()
    from sae_lens import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(3)
    if layout == "training_rescaled":
        lens = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=16, d_sae=40, k=5))
        assert lens.cfg.rescale_acts_by_decoder_norm
    else:
        lens = TopKSAE(TopKSAEConfig(d_in=16, d_sae=40, k=5, apply_b_dec_to_input=False))
    with torch.no_grad():
        for p in lens.parameters():
            p.copy_(0.2 * torch.randn_like(p))
        lens.W_dec.mul_(torch.rand(40, 1) * 3 + 0.1)  # decoder rows far from unit norm
    lens.save_model(str(tmp_path))
    ours = load_sae(tmp_path)
    x = torch.randn(50, 16)
    with torch.no_grad():
        expect = lens.decode(lens.encode(x))
        torch.testing.assert_close(ours(x), expect, rtol=1e-5, atol=1e-5)
        # the same latents fire
        assert torch.equal(ours.encode(x) > 0, lens.encode(x) > 0)


def test_garbage_weights_file_gives_an_error_naming_it(tmp_path):
    save_sae(_random_sae("topk"), tmp_path)
    (tmp_path / "sae_weights.safetensors").write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(CorruptDataError, match=r"sae_weights\.safetensors cannot be read as safetensors"):
        load_sae(tmp_path)


def test_missing_tensor_wrong_shape_bad_json_missing_files(tmp_path):
    from safetensors.torch import save_file

    sae = _random_sae("topk")
    save_sae(sae, tmp_path)
    w = {n: getattr(sae, n).detach() for n in ("W_enc", "W_dec", "b_enc")}
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(CorruptDataError, match=r"lack b_dec"):
        load_sae(tmp_path)
    w["b_dec"] = torch.zeros(17)
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(CorruptDataError, match=r"b_dec has shape \(17,\), expected \(16,\)"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(CorruptDataError, match=r"cfg\.json is not valid JSON"):
        load_sae(tmp_path)
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        load_sae(tmp_path / "nope")


def test_unknown_architecture_in_cfg(tmp_path):
    save_sae(_random_sae("topk"), tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["architecture"] = "gated"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(
        InvalidConfigError, match=r"Unknown SAE architecture 'gated'.*jumprelu, standard, topk"
    ):
        load_sae(tmp_path)


def test_a_threshold_architecture_without_its_threshold_is_refused(tmp_path):
    from safetensors.torch import save_file

    sae = _random_sae("batchtopk")
    save_sae(sae, tmp_path)
    save_file(
        {n: getattr(sae, n).detach() for n in ("W_enc", "W_dec", "b_enc", "b_dec")},
        str(tmp_path / "sae_weights.safetensors"),
    )
    with pytest.raises(CorruptDataError, match=r"lack threshold, which a batchtopk SAE needs"):
        load_sae(tmp_path)


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka_batchtopk", "jumprelu", "jumprelu_log"])
def test_sae_lens_threshold_saes_load_in_ours(tmp_path, arch):
    """SAELens's BatchTopK and Matryoshka training SAEs saved for inference (as JumpReLU SAEs), its JumpReLU
    training SAE, and an older JumpReLU file with ``log_threshold``: ours runs them as SAELens does."""
    import_sae_lens()
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from safetensors.torch import load_file, save_file

    torch.manual_seed(4)
    if arch == "batchtopk":
        lens = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=16, d_sae=40, k=5))
    elif arch == "matryoshka_batchtopk":
        cfg = MatryoshkaBatchTopKTrainingSAEConfig(d_in=16, d_sae=40, k=5, matryoshka_widths=[10, 40])
        lens = MatryoshkaBatchTopKTrainingSAE(cfg)
    else:
        lens = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=16, d_sae=40))
    with torch.no_grad():
        for n, p in lens.named_parameters():
            p.copy_(0.2 * torch.randn_like(p) + (0.3 if n == "threshold" else 0.0))
        if hasattr(lens, "topk_threshold"):
            lens.topk_threshold.fill_(0.25)
        else:
            lens.threshold.abs_().add_(0.05)
    if arch.startswith("jumprelu"):
        lens.save_model(str(tmp_path))
    else:
        lens.save_inference_model(str(tmp_path))
    if arch == "jumprelu_log":
        w = load_file(str(tmp_path / "sae_weights.safetensors"))
        w["log_threshold"] = w.pop("threshold").log()
        save_file(w, str(tmp_path / "sae_weights.safetensors"))
    ours = load_sae(tmp_path)
    assert ours.cfg.arch == "jumprelu"
    x = torch.randn(100, 16)
    with torch.no_grad():
        if not arch.startswith("jumprelu"):
            from sae_lens import SAE as LensSAE

            lens = LensSAE.load_from_disk(str(tmp_path))
        want = lens.encode(x)
        torch.testing.assert_close(ours.encode(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), lens.decode(want), rtol=1e-5, atol=1e-5)
        assert 0 < int((want > 0).sum()) < x.shape[0] * 40
