"""Lightning DDP on 2 CPU processes (gloo): both ranks end with identical SAE parameters, equal (allclose)
to one process trained on the union of the ranks' batches (twice the batch), and the loss falls. The
training runs in a stand-alone script (Lightning re-runs its program for rank 1; that must not be pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from sae_testutil import stores
from safetensors.torch import load_file

from neuroscope.record.reader import ActivationStore
from neuroscope.sae.loader import ActivationStream

SCRIPT = Path(__file__).with_name("ddp_sae_script.py")
BATCH = 256


def _run(mode, acts, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parent)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), mode, str(acts), str(out), str(BATCH)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {p.name: load_file(p) for p in sorted(Path(out).glob("params-rank*.safetensors"))}


def test_rank_shares_cover_every_token_once():
    train, _ = stores()
    store = ActivationStore(train)
    seen = []
    for r in range(3):
        for b in store.iter_batches(100, shuffle=True, seed=r, part=(r, 3)):
            seen += list(zip(b.doc_id.tolist(), b.pos.tolist(), strict=True))
    every = [(int(d), int(p)) for d, p in zip(*(store.read_all().doc_id, store.read_all().pos), strict=True)]
    special = set(store.special_token_ids)
    tokens = store.read_all().token_id.tolist()
    usable = [k for k, t in zip(every, tokens, strict=True) if t not in special]
    assert sorted(seen) == sorted(usable) and len(set(seen)) == len(seen) == store.n_usable_tokens
    counts = [ActivationStream(store, 100, rank=r, world=3).batches_per_pass() for r in range(3)]
    assert len(set(counts)) == 1 and counts[0] == (store.n_usable_tokens // 3) // 100


def test_ddp_two_cpu_processes_match_one_process_with_twice_the_batch(tmp_path):
    train, _ = stores()
    ddp = _run("ddp", train, tmp_path / "ddp")
    assert sorted(ddp) == ["params-rank0.safetensors", "params-rank1.safetensors"]
    r0, r1 = ddp["params-rank0.safetensors"], ddp["params-rank1.safetensors"]
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between the ranks"
    ref = _run("ref", train, tmp_path / "ref")["params-rank0.safetensors"]
    for k in r0:
        torch.testing.assert_close(r0[k], ref[k], rtol=1e-4, atol=1e-5)
    info = json.loads((tmp_path / "ddp" / "training.json").read_text())
    assert info["result"]["world"] == 2
    losses = [h["loss"] for h in info["result"]["history"]]
    assert len(losses) >= 3 and losses[-1] < 0.7 * losses[0]
    assert (tmp_path / "ddp" / "cfg.json").exists() and (
        tmp_path / "ddp" / "sae_weights.safetensors"
    ).exists()


def test_several_devices_need_a_distributed_strategy():
    import pytest

    from neuroscope.errors import InvalidConfigError
    from neuroscope.sae.config import TrainConfig

    with pytest.raises(InvalidConfigError, match="strategy='ddp'"):
        TrainConfig(devices=2)
    with pytest.raises(InvalidConfigError, match="strategy must be one of"):
        TrainConfig(devices=2, strategy="fsdp")
    assert TrainConfig(devices=2, num_nodes=3, strategy="ddp").world == 6
