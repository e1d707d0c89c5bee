"""The workbench soak (benchmarks/soak.py) for seconds instead of an hour, on tiny:llama with a trained SAE and
suite: 20 clients toggling their own edits and head ablations, the Features, embedding and provenance requests,
an attack running throughout. No request fails, no client sees another's answer, the answers equal the library's,
and the server's memory does not run away (the hour-long run's 5% bar needs the hour; here the bar is loose)."""

from __future__ import annotations

import os

from benchmarks.soak import SoakConfig, run_soak, verify_against_library
from graphs_testutil import trained_suite
from server_testutil import served_ui

SECONDS = float(os.environ.get("NEUROSCOPE_SOAK_SECONDS", "40"))


def test_short_soak(tmp_path):
    suite = trained_suite()
    sae_dir = suite / "L1"
    cfg = SoakConfig(
        seconds=SECONDS, clients=20, pause=0.05, sample_every=1.0, attack_steps=5, attack_width=8
    )
    ui = (
        "--threads",
        "1",
        "--sae",
        str(sae_dir),
        "--sae-suite",
        str(suite),
        "--workspace",
        str(tmp_path / "ws"),
    )
    with served_ui(*ui, timeout=180) as (base, server):
        result, answers = run_soak(base, server.pid, cfg, sae_dir.resolve().name, n_layers=2)
    assert result.n_errors == 0, result.errors
    assert not result.crosstalk, result.crosstalk
    assert result.requests["ws"] >= 20 and {"features", "embeddings", "run"} <= set(result.requests)
    assert result.attack_steps > 0
    assert result.distinct_answers > 10
    checked = verify_against_library(
        "tiny:llama", str(sae_dir), result.extra["edits"], answers, 60, tmp_path / "lib"
    )
    assert checked == min(60, len(answers))
    assert len(result.rss_mb) >= 10 and result.rss_growth < 0.25, result.rss_mb
