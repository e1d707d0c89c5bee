"""SAELens-format folders: our round trip, SAELens loading ours and ours loading SAELens's, clear errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from neuroscope.errors import CorruptDataError, InvalidConfigError, ResourceNotFoundError
from neuroscope.sae import SAE, SAEConfig, load_sae, save_sae
from neuroscope.sae.saelens_compat import import_sae_lens


def _random_sae(arch: str) -> SAE:
    torch.manual_seed(1)
    sae = SAE(
        SAEConfig(
            d_in=16, d_sae=48, k=6, arch=arch, hook_name="blocks.1.hook_resid_post", model_name="tiny:llama"
        )
    )
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
        sae.b_enc.add_(0.3)
    return sae


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_round_trip(tmp_path, arch):
    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == {"topk": "topk", "relu": "standard"}[arch]
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    loaded = load_sae(tmp_path)
    # k means nothing for ReLU and is not stored for it
    assert loaded.cfg == (sae.cfg if arch == "topk" else replace(sae.cfg, k=loaded.cfg.k))
    for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(loaded, n), getattr(sae, n))


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_ours_load_in_sae_lens(tmp_path, arch):
    import_sae_lens()
    from sae_lens import SAE as LensSAE

    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    lens = LensSAE.load_from_disk(str(tmp_path))
    assert lens.cfg.architecture() == ("topk" if arch == "topk" else "standard")
    x = torch.randn(20, 16)
    with torch.no_grad():
        torch.testing.assert_close(lens.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lens.decode(lens.encode(x)), sae(x), rtol=1e-5, atol=1e-5)
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
    cfg["architecture"] = "jumprelu"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidConfigError, match=r"Unknown SAE architecture 'jumprelu'.*standard, topk"):
        load_sae(tmp_path)
