"""Stand-alone SAE training for tests/unit/test_sae_ddp.py (run as a subprocess: Lightning's DDP launcher
re-runs this file for rank 1, which must not be pytest).

    python ddp_sae_script.py ddp ACTS OUT BATCH   # 2 CPU processes (gloo), BATCH per process
    python ddp_sae_script.py ref ACTS OUT BATCH   # 1 process, 2 × BATCH: each step's batch is the union
                                                  # of the two ranks' batches

Each process writes its final SAE parameters to OUT/params-rank{R}.safetensors."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from neuroscope.record.reader import ActivationStore
from neuroscope.sae.config import TrainConfig
from neuroscope.sae.loader import ActivationStream
from neuroscope.sae.train import build_trainer, run_training, setup_training, train_sae

SAE_KW = {"arch": "topk", "k": 8, "expansion": 4}


def tcfg(batch: int, devices: int) -> TrainConfig:
    return TrainConfig(
        batch_size=batch,
        epochs=2,
        lr=3e-3,
        dead_tokens=1024,  # small enough that latents die and AuxK (with its synced counters) takes part
        progress=False,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        accelerator="cpu",
    )


class UnionOfRanks(torch.utils.data.IterableDataset):
    """Per step, the concatenation of what ranks 0 and 1 of a 2-process run stream at that step."""

    def __init__(self, streams: list[ActivationStream]):
        self.streams = streams

    def __iter__(self):
        for parts in zip(*self.streams, strict=False):
            yield torch.cat(parts)


def main(mode: str, acts: str, out: str, batch: int) -> None:
    torch.set_num_threads(1)
    out_path = Path(out)
    if mode == "ddp":
        sae, result = train_sae(acts, tcfg=tcfg(batch, 2), out=out_path, **SAE_KW)
        rank = result.rank
    else:
        cfg = tcfg(2 * batch, 1)
        setup = setup_training(ActivationStore(acts), None, cfg, **dict(SAE_KW))
        s = setup.stream
        ranks = [
            ActivationStream(
                s.store, batch, s.hook, s.seed, s.shuffle_buffer, s.scale, s.max_norm, rank=r, world=2
            )
            for r in (0, 1)
        ]
        loader = torch.utils.data.DataLoader(UnionOfRanks(ranks), batch_size=None)
        trainer = build_trainer(cfg, out_path, setup.max_steps, setup.epochs)
        sae, result = run_training(setup, trainer, loader, out_path, cfg)
        rank = 0
    out_path.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous() for k, v in sae.state_dict().items()},
        out_path / f"params-rank{rank}.safetensors",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
