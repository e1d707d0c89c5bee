"""The synthetic ground-truth benchmark: MCC and uniqueness on planted dictionaries (cross-checked against
SAELens's own implementation), config validation before anything is generated, every registered
architecture recovering the tiny config's planted features, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch

from neuroscope.errors import DictionaryOverflowError, FiringProbabilityError, SyntheticConfigError
from neuroscope.sae.bench import metrics
from neuroscope.sae.bench.config import from_dict, load_config
from neuroscope.sae.saelens_compat import import_sae_lens

# the planted features of the tiny config are recovered at least this well by every architecture
MCC_THRESHOLD = 0.85


def _planted(n: int = 48, d: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_mcc_is_one_for_the_planted_dictionary_and_its_permuted_sign_flipped_copy():
    truth = _planted()
    assert metrics.mcc(truth, truth) == pytest.approx(1.0, abs=1e-9)
    perm = torch.randperm(truth.shape[0], generator=torch.Generator().manual_seed(1))
    signs = torch.where(torch.arange(truth.shape[0]) % 2 == 0, 1.0, -1.0)[:, None]
    scaled = (truth * signs * 3.0)[perm]
    assert metrics.mcc(scaled, truth) == pytest.approx(1.0, abs=1e-9)
    assert metrics.feature_uniqueness(scaled, truth) == 1.0


def test_mcc_falls_clearly_for_a_random_dictionary():
    truth = _planted()
    random = _planted(seed=7)
    score = metrics.mcc(random, truth)
    assert score < 0.6
    assert 1.0 - score > 0.4
    # halfway: each planted row with as much random noise
    noisy = truth / truth.norm(dim=1, keepdim=True) + random / random.norm(dim=1, keepdim=True)
    assert score < metrics.mcc(noisy, truth) < 0.9


def test_uniqueness_counts_latents_that_share_a_feature():
    truth = _planted()
    doubled = torch.cat([truth[:10], truth[:10]])
    assert metrics.feature_uniqueness(doubled, truth) == pytest.approx(0.5)


@pytest.mark.parametrize("rows", [48, 20, 64])
def test_mcc_and_uniqueness_match_saelens(rows):
    import_sae_lens()
    from sae_lens.synthetic import feature_uniqueness, mean_correlation_coefficient

    truth = _planted()
    dec = truth[torch.arange(rows) % truth.shape[0]] + 0.8 * _planted(rows, 24, seed=3)
    assert metrics.mcc(dec, truth) == pytest.approx(mean_correlation_coefficient(dec, truth), abs=1e-5)
    assert metrics.feature_uniqueness(dec, truth) == pytest.approx(feature_uniqueness(dec, truth))


def test_reconstruction_stats_of_a_known_sae():
    class Identity:
        W_dec = torch.eye(4)

        def encode(self, x):
            return torch.where(x.abs() > 0.5, x, torch.zeros_like(x))

        def decode(self, z):
            return z

    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.2, 0.0]])
    rec = metrics.reconstruction(Identity(), x, chunk=2)
    assert rec.l0 == pytest.approx(2 / 3)
    assert rec.dead == 2  # latents 2 (below its cut) and 3 never fire
    var = float((x - x.mean(0)).pow(2).sum())
    assert rec.fvu == pytest.approx(0.04 / var)


def _tiny_dict() -> dict:
    cfg = load_config("tiny")
    d = cfg.to_dict()
    d.pop("name")
    return d


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("model", "firing_probability", "max_prob"), 1.5, FiringProbabilityError),
        (("model", "firing_probability", "min_prob"), -0.1, FiringProbabilityError),
        (("model", "firing_probability", "min_prob"), 0.9, FiringProbabilityError),  # above max_prob
        (("l0s",), [40], DictionaryOverflowError),  # more active latents than d_sae = 32
        (("model", "hierarchy", "total_root_nodes"), 20, DictionaryOverflowError),  # 80 nodes > 32
        (("matryoshka_widths",), [8, 64], DictionaryOverflowError),
        (("model", "correlation", "correlation_scale"), 2.0, SyntheticConfigError),
        (("model", "num_features"), 0, SyntheticConfigError),
        (("tokens",), 10, SyntheticConfigError),  # less than a batch
    ],
)
def test_impossible_configs_raise_named_errors(path, value, error):
    d = _tiny_dict()
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(error, match="Synthetic config 'bad'"):
        from_dict(d, "bad")


def test_unknown_keys_and_missing_files_are_named():
    d = _tiny_dict()
    d["widht"] = 3
    with pytest.raises(SyntheticConfigError, match="widht"):
        from_dict(d, "bad")
    with pytest.raises(SyntheticConfigError, match="sparsity"):
        from_dict({**_tiny_dict(), "model": {**_tiny_dict()["model"], "sparsity": 1}}, "bad")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from neuroscope.sae.bench.synthetic import run_synthetic

    # our trainer's Lightning checkpoints go under $TMPDIR when no output folder is given
    mp = pytest.MonkeyPatch()
    mp.setenv("TMPDIR", str(tmp_path_factory.mktemp("ckpt")))
    try:
        return run_synthetic(load_config("tiny"), trainers=["neuroscope"])
    finally:
        mp.undo()


def test_every_architecture_recovers_the_planted_features(tiny_runs):
    from neuroscope.sae.config import ARCHITECTURES

    assert sorted(r.arch for r in tiny_runs.runs) == sorted(ARCHITECTURES)
    for r in tiny_runs.runs:
        assert r.mcc >= MCC_THRESHOLD, (r.arch, r.mcc)
        assert r.dead == 0
        assert 0 < r.fvu < 1.0


def test_cli_end_to_end_writes_json_and_figure(tmp_path, monkeypatch, capsys):
    from neuroscope.cli import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out, fig = tmp_path / "synthetic.json", tmp_path / "mcc.png"
    rc = main(
        ["sae-bench", "synthetic", "--config", "tiny", "--archs", "topk", "--tokens", "8192",
         "--out", str(out), "--figure", str(fig)]
    )  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())
    assert {(r["trainer"], r["arch"]) for r in result["runs"]} == {
        ("neuroscope", "topk"),
        ("saelens", "topk"),
    }
    for r in result["runs"]:
        assert r["tokens"] == 8192 and r["l0"] == pytest.approx(3, abs=0.01)
        assert 0 < r["mcc"] <= 1 and r["tokens_per_s"] > 0
    assert result["comparison"][0]["arch"] == "topk"
    assert result["machine"]["cpu_count"] >= 1 and len(result["machine"]["load_average_after"]) == 3
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from neuroscope.sae.bench.synthetic import SynthBenchResult

    assert SynthBenchResult.from_dict(result).to_dict()["runs"] == result["runs"]
    assert json.loads(capsys.readouterr().out)["out"] == str(out)


def test_cli_refuses_a_bad_config_before_generating(tmp_path, capsys):
    from neuroscope.cli import main

    bad = _tiny_dict()
    bad["model"]["firing_probability"]["max_prob"] = 2.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "r.json"
    assert main(["sae-bench", "synthetic", "--config", str(path), "--out", str(out)]) == 2
    assert "max_prob" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sae-bench", "synthetic", "--config", "tiny", "--l0s", "99", "--out", str(out)]) == 2
    assert "d_sae=32" in capsys.readouterr().err
