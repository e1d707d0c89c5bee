"""``neuroscope train-sae``, ``eval-sae`` and ``sae-features`` on a tiny recording."""

from __future__ import annotations

import json

from sae_testutil import stores

from neuroscope.cli import main
from neuroscope.sae import load_sae
from neuroscope.sae.features import FeatureStore


def test_train_eval_features_cli(tmp_path, capsys):
    train, held = stores()
    for k in (4, 8):
        rc = main(
            [
                "train-sae",
                "--acts",
                str(train),
                "--arch",
                "topk",
                "--k",
                str(k),
                "--expansion",
                "2",
                "--batch-size",
                "512",
                "--epochs",
                "2",
                "--out",
                str(tmp_path / f"k{k}"),
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        assert rc == 0
        assert load_sae(tmp_path / f"k{k}").cfg.k == k
    capsys.readouterr()
    rc = main(
        [
            "eval-sae",
            "--sae",
            str(tmp_path / "k8"),
            str(tmp_path / "k4"),
            "--acts",
            str(held),
            "--model",
            "tiny:llama",
            "--ce-contexts",
            "4",
            "--out",
            str(tmp_path / "eval.json"),
        ]
    )
    assert rc == 0
    out = json.loads((tmp_path / "eval.json").read_text())
    assert [r["l0"] for r in out["frontier"]] == [4.0, 8.0]
    assert out["frontier"][0]["fvu"] > out["frontier"][1]["fvu"]  # more latents, better reconstruction
    r = out["results"][0]
    assert r["d_sae"] == 128 and r["ce_tokens"] > 0 and 0 < r["fvu"] < 1
    assert "special" in out["definitions"]["special_tokens"]
    rc = main(["sae-features", "--sae", str(tmp_path / "k8"), "--acts", str(held), "--top-contexts", "5"])
    assert rc == 0
    fs = FeatureStore(tmp_path / "k8" / "features")
    assert len(fs) == 128 and len(fs.contexts(int(fs.table(sort="density", descending=True)[0]["id"]))) == 5


def test_unknown_architecture_is_a_clear_cli_error(tmp_path, capsys):
    train, _ = stores()
    rc = main(
        ["train-sae", "--acts", str(train), "--arch", "gated", "--out", str(tmp_path / "x"), "--no-progress"]
    )
    assert rc == 2
    assert "Unknown SAE architecture 'gated'; valid architectures: relu, topk" in capsys.readouterr().err


def test_train_sae_architecture_flags(tmp_path, capsys):
    train, _ = stores()
    common = ["--acts", str(train), "--expansion", "2", "--batch-size", "512", "--max-tokens", "1024"]
    common += ["--no-progress", "--threads", "1"]
    rc = main(
        ["train-sae", *common, "--arch", "matryoshka", "--k", "4", "--matryoshka-prefixes", "16,64"]
        + ["--topk-threshold-lr", "0.2", "--out", str(tmp_path / "m")]
    )
    assert rc == 0
    cfg = load_sae(tmp_path / "m").cfg
    assert (cfg.arch, cfg.k, cfg.matryoshka_widths, cfg.topk_threshold_lr) == (
        "matryoshka",
        4,
        (16, 64, 128),
        0.2,
    )
    rc = main(
        [
            "train-sae",
            *common,
            "--arch",
            "jumprelu",
            "--jumprelu-l0-coefficient",
            "0.2",
            "--bandwidth",
            "0.02",
        ]
        + ["--init-threshold", "0.05", "--sparsity-loss", "tanh", "--out", str(tmp_path / "j")]
    )
    assert rc == 0
    cfg = load_sae(tmp_path / "j").cfg
    assert (cfg.l0_coefficient, cfg.jumprelu_bandwidth, cfg.jumprelu_sparsity_loss_mode) == (
        0.2,
        0.02,
        "tanh",
    )
    capsys.readouterr()
    for bad, message in (
        (["--arch", "matryoshka", "--matryoshka-prefixes", "64,16"], "strictly increasing"),
        (["--arch", "matryoshka", "--matryoshka-prefixes", "16,500"], r"1..d_sae (128); got [500]"),
        (["--arch", "topk", "--bandwidth", "0.1"], "--bandwidth do(es) not apply to --arch topk"),
        (["--arch", "gated"], "Unknown SAE architecture 'gated'"),
    ):
        assert main(["train-sae", *common, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
