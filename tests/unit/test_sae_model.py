"""SAE architectures: config errors, TopK's exact L0, decoder constraints, input-scale folding, b_dec init."""

from __future__ import annotations

import pytest
import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.sae import SAE, SAEConfig
from neuroscope.sae.config import ARCHITECTURES
from neuroscope.sae.model import geometric_median


def test_unknown_architecture_names_the_valid_ones():
    with pytest.raises(InvalidConfigError, match=r"Unknown SAE architecture 'gated'.*relu, topk"):
        SAEConfig(d_in=8, d_sae=16, arch="gated")


def test_k_out_of_range():
    with pytest.raises(InvalidConfigError, match=r"k must be in 1\.\.d_sae \(16\), got 17"):
        SAEConfig(d_in=8, d_sae=16, k=17)


def test_topk_l0_is_exactly_k_and_sparse_decode_matches_dense():
    sae = SAE(SAEConfig(d_in=16, d_sae=64, k=5))
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so exactly k survive
    x = torch.randn(32, 16)
    z = sae.encode(x)
    assert ((z > 0).sum(-1) == 5).all()
    vals, idx, _ = sae.encode_topk(x)
    torch.testing.assert_close(sae.decode_sparse(vals, idx), sae.decode(z), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x), sae.decode(z), rtol=1e-5, atol=1e-5)


def test_decoder_rows_unit_norm_and_parallel_grad_removed():
    sae = SAE(SAEConfig(d_in=8, d_sae=32, k=4))
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(32))
    sae.W_dec.grad = sae.W_dec.detach() * 3 + torch.randn(32, 8)
    sae.remove_parallel_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(2.5)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(32))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_folding_the_input_scale_gives_raw_unit_reconstructions(arch):
    torch.manual_seed(0)
    widths = (8,) if arch == "matryoshka" else ()
    sae = SAE(SAEConfig(d_in=8, d_sae=32, k=4, arch=arch, matryoshka_widths=widths))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        if hasattr(sae, "threshold"):  # thresholds on pre-activations scale with them
            sae.threshold.uniform_(0.1, 0.8)
    x, s = torch.randn(10, 8), 3.7
    scaled_recon = sae(x * s) / s
    sae.fold_input_scale(s)
    torch.testing.assert_close(sae(x), scaled_recon, rtol=1e-5, atol=1e-5)


def test_geometric_median_ignores_an_outlier_a_mean_chases():
    pts = torch.cat([torch.randn(200, 4) * 0.1 + 1.0, torch.full((2, 4), 1000.0)])
    med = geometric_median(pts)
    assert (med - 1.0).abs().max() < 0.1
    assert pts.mean(0).min() > 5  # the mean is dragged away


def test_width_mismatch_on_encode_names_both_widths():
    sae = SAE(SAEConfig(d_in=8, d_sae=16, k=2))
    with pytest.raises(InvalidConfigError, match=r"d_in=8.*width 12"):
        sae.encode(torch.randn(3, 12))
