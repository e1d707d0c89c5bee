"""Every analysis subcommand runs on a tiny model and writes JSON."""

from __future__ import annotations

import json

import pytest

from neuroscope.cli import main

M = ["--model", "tiny:llama"]


@pytest.mark.parametrize(
    "argv",
    [
        ["lens", "hello"],
        ["attention", "abcab"],
        ["attention", "--n-seqs", "2", "--half-len", "8", "--ablate", "2", "--draws", "3"],
        ["dla", "hello wor", "--answer", "l", "--wrong", "o"],
        ["attribute", "hello wor", "--answer", "l", "--steps", "8"],
        ["patch", "--clean", "abcab", "--corrupted", "abdab", "--answer", "c", "--wrong", "d", "--site", "z"],
        [
            "patch",
            "--clean",
            "abcab",
            "--corrupted",
            "abdab",
            "--answer",
            "c",
            "--wrong",
            "d",
            "--method",
            "attribution",
        ],
        ["neurons", "--hook", "blocks.1.mlp.hook_post", "--neuron", "3", "--k", "2"],
        ["probe", "--hook", "blocks.1.hook_resid_pre"],
        ["geometry", "--token", "a", "--k", "3"],
        ["geometry", "--trajectory", "hello"],
        ["steer", "--layer", "1", "--alphas=-1,0,1", "--generate", "0"],
    ],
    ids=lambda a: "-".join(a[:2])[:40],
)
def test_subcommand_writes_json(argv, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(argv + M + ["--json", str(out), "--html", str(tmp_path / "f.html")]) == 0
    assert json.loads(out.read_text())
    assert (tmp_path / "f.html").stat().st_size > 1000


def test_experiment_subcommand(tmp_path):
    out = tmp_path / "exp"
    assert (
        main(
            [
                "experiment",
                *M,
                "--k",
                "2",
                "--n-random",
                "4",
                "--out",
                str(out),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert (out / "report.md").exists() and json.loads((out / "result.json").read_text())["p_value"] > 0
