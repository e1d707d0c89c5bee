"""SAELens's own trainer on the benchmark's data: its training SAE configs and ``SAETrainer`` (the loop its
``SyntheticSAERunner`` drives), fed the very tensor our trainer gets, batch by batch in a seeded shuffle,
for the same number of tokens. Each architecture is configured as SAELens documents it for synthetic
data (SynthSAEBench tutorial: Adam at lr 3e-4, constant schedule, its default decoder initialisation,
AuxK and ``rescale_acts_by_decoder_norm``); only width, target L0 and budget are set to the benchmark's,
and the dead-latent window (which starts AuxK) to the same number of tokens as ours, as
``benchmarks/sae_bench.py`` does: its default of 1,000 steps is longer than these runs.
The trained SAE is converted to SAELens's inference SAE (``save_inference_model`` then ``SAE.load_from_disk``:
BatchTopK and Matryoshka become JumpReLU SAEs with their learned threshold) and scored by our metrics."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from neuroscope.errors import BenchDependencyError

# our architecture -> SAELens's *training* architecture (``sae_lens.registry`` names)
TRAINING_ARCH = {
    "relu": "standard",
    "topk": "topk",
    "batchtopk": "batchtopk",
    "jumprelu": "jumprelu",
    "matryoshka": "matryoshka_batchtopk",
}
LR = 3e-4  # SynthSAEBench's recipe for every architecture


def sae_lens_module() -> Any:
    from neuroscope.sae.saelens_compat import import_sae_lens

    try:
        return import_sae_lens()
    except ModuleNotFoundError as e:
        raise BenchDependencyError(
            "The synthetic benchmark needs sae-lens (its generator and trainer): `make setup`, or "
            "pip install --no-deps sae-lens==6.54.*"
        ) from e


def available(arch: str) -> bool:
    """Whether SAELens can train ``arch`` (ours by name)."""
    name = TRAINING_ARCH.get(arch)
    if name is None:
        return False
    sae_lens_module()
    from sae_lens.registry import get_sae_training_class

    try:
        get_sae_training_class(name)
    except (KeyError, ValueError):
        return False
    return True


@dataclass
class SAELensRun:
    sae: Any
    seconds: float
    tokens: int
    lr: float
    settings: dict[str, Any]


class _Batches:
    """A seeded shuffle of ``x`` in ``batch`` rows, as SAELens's ``DataProvider`` (an endless iterator)."""

    def __init__(self, x: torch.Tensor, batch: int, seed: int):
        self.x, self.batch, self.seed, self.passes, self.i = x, batch, seed, 0, 0
        self._perm()

    def _perm(self) -> None:
        gen = torch.Generator().manual_seed(self.seed + self.passes)
        self.order = torch.randperm(self.x.shape[0], generator=gen)

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> torch.Tensor:
        if self.i + self.batch > self.x.shape[0]:
            self.passes += 1
            self.i = 0
            self._perm()
        rows = self.order[self.i : self.i + self.batch]
        self.i += self.batch
        return self.x[rows]


def sae_config(arch: str, d_in: int, d_sae: int, l0: int, knob: float | None, widths: tuple[int, ...]) -> Any:
    """SAELens's training config for ``arch`` at target L0 ``l0``: ``k`` for the TopK family; the L1
    coefficient ``knob`` (calibrated) for standard; JumpReLU's quadratic L0 penalty around ``target_l0``
    (Gemma Scope 2's recipe, SAELens's way to ask for an L0)."""
    sl = sae_lens_module()
    common: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae}
    if arch == "relu":
        return sl.StandardTrainingSAEConfig(**common, l1_coefficient=float(knob if knob is not None else 1.0))
    if arch == "topk":
        return sl.TopKTrainingSAEConfig(**common, k=l0)
    if arch == "batchtopk":
        return sl.BatchTopKTrainingSAEConfig(**common, k=float(l0))
    if arch == "matryoshka":
        w = list(widths) if widths and widths[-1] == d_sae else [*widths, d_sae]
        return sl.MatryoshkaBatchTopKTrainingSAEConfig(**common, k=float(l0), matryoshka_widths=w)
    if arch == "jumprelu":
        return sl.JumpReLUTrainingSAEConfig(
            **common, jumprelu_sparsity_loss_mode="quadratic", target_l0=float(l0)
        )
    raise KeyError(arch)


def train(
    x: torch.Tensor,
    arch: str,
    d_sae: int,
    l0: int,
    tokens: int,
    batch_size: int,
    seed: int,
    knob: float | None = None,
    widths: tuple[int, ...] = (),
    dead_tokens: int = 100_000,
    lr: float = LR,
) -> SAELensRun:
    sae_lens_module()
    from sae_lens import SAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(seed)
    cfg = sae_config(arch, x.shape[1], d_sae, l0, knob, widths)
    sae = get_sae_training_class(cfg.architecture())[0](cfg)
    steps = tokens // batch_size
    trainer_cfg = SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=steps * batch_size,
        device="cpu",
        autocast=False,
        lr=lr,
        lr_end=lr / 10,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=0,
        n_restart_cycles=1,
        train_batch_size_samples=batch_size,
        # SyntheticSAERunnerConfig's default window is 1,000 steps, longer than most runs here, so AuxK
        # would never start: the same number of tokens as our trainer's ``dead_tokens`` instead
        dead_feature_window=max(1, dead_tokens // batch_size),
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=1000,
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_Batches(x, batch_size, seed))
    t0 = time.perf_counter()
    trained = trainer.fit()
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        inference = SAE.load_from_disk(tmp, device="cpu")
    inference.eval()
    settings = {
        k: v for k, v in cfg.to_dict().items() if k not in ("metadata", "device", "dtype", "d_in", "d_sae")
    }
    return SAELensRun(inference, seconds, steps * batch_size, lr, settings)
