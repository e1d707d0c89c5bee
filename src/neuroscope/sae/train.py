"""Train an SAE with Lightning: a LightningModule for the loss and constraints, a Trainer for the loop,
checkpoints, progress bar and (behind a flag) the automatic learning-rate finder."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from neuroscope.errors import InvalidConfigError, ShapeMismatchError
from neuroscope.record.reader import ActivationStore
from neuroscope.sae.archs import get_architecture
from neuroscope.sae.config import SAEConfig, TrainConfig, default_lr
from neuroscope.sae.loader import ActivationStream, TensorStream, outlier_norm
from neuroscope.sae.model import SAE, geometric_median


@dataclass
class TrainResult:
    out: str
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    lr: float
    input_scale: float
    outlier_norm: float | None
    final_loss: float
    final_fvu: float
    dead_fraction: float
    history: list[dict[str, float]] = field(default_factory=list)
    rank: int = 0  # global rank of the process that returns it (0 in one process)
    world: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity in one process); every rank calls it at the same point of the step."""
    if _world() > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
    return t


class SAETrainingModule(L.LightningModule):
    """The architecture's loss (:meth:`Architecture.train_step`), on inputs scaled by ``scale`` (mean
    squared norm = d_in), + AuxK.

    AuxK (every architecture): the ``aux_k`` largest dead latents reconstruct the main residual error;
    this keeps gradients flowing to latents that stopped firing (Gao et al. 2024).

    Under DDP the step is that of one process on the union of the ranks' batches: the batch variance, the
    token count and which latents fired are summed over ranks, and each rank's loss is its share of the
    global loss times the world size (DDP averages gradients), so every rank holds the parameters a single
    process with the whole batch would hold."""

    def __init__(self, sae: SAE, tcfg: TrainConfig, lr: float, total_steps: int | None = None):
        super().__init__()
        self.sae = sae
        self.tcfg = tcfg
        self.lr = lr
        self.total_steps = total_steps
        self.aux_k = tcfg.aux_k or max(1, sae.d_in // 2)
        self.register_buffer("tokens_since_fired", torch.zeros(sae.d_sae, dtype=torch.long))
        self.tokens_since_fired: torch.Tensor
        self.history: list[dict[str, float]] = []
        self.tokens_seen = 0

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.tcfg.dead_tokens

    def _aux_loss(
        self, pre: torch.Tensor, err: torch.Tensor, total_var: torch.Tensor, xc: torch.Tensor | None = None
    ) -> torch.Tensor:
        # every rank sees the same dead mask (its counters are summed over ranks), so all take this branch
        """``pre``: pre-activations (with their graph, or detached when ``xc`` is given, in which case the
        selected ones are recomputed with a sparse backward)."""
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0 or self.tcfg.aux_coefficient == 0:
            return pre.new_zeros(())
        k = min(self.aux_k, n_dead)
        with torch.no_grad():
            idx = pre.masked_fill(~dead, -math.inf).topk(k, dim=-1, sorted=False).indices
        vals = F.relu(pre.gather(1, idx) if xc is None else self.sae.gather_pre_acts(xc, pre, idx))
        e_hat = self.sae.decode_sparse(vals, idx, bias=False)
        # scaled down while few latents are dead, as in sparsify
        return min(n_dead / self.aux_k, 1.0) * (e_hat - err.detach()).pow(2).sum() / total_var

    def _batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(total variance, tokens, ranks) of the global batch: in one process the two-pass variance of
        ``x``; across ranks the same, from the global mean (two small all-reduces)."""
        world = _world()
        if world == 1:
            return (x - x.mean(0)).pow(2).sum().clamp_min(1e-8), x.shape[0], 1
        sums = _all_sum(torch.cat([x.sum(0), x.new_tensor([x.shape[0]])]))
        n = int(sums[-1].item())
        mean = sums[:-1] / n
        return _all_sum((x - mean).pow(2).sum()).clamp_min(1e-8), n, world

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x = batch.float()
        sae = self.sae
        total_var, n_tokens, world = self._batch_stats(sae.arch.target(sae.cfg, x))
        out = sae.arch.train_step(sae, x, total_var, n_tokens, int(self.global_step))
        loss, fvu, err, pre, xc, fired, active = (
            out.loss,
            out.fvu,
            out.err,
            out.pre,
            out.xc,
            out.fired,
            out.active,
        )
        aux = self._aux_loss(pre, err, total_var, xc)
        loss = loss + self.tcfg.aux_coefficient * aux
        if world > 1:
            # this rank's share of the global loss, and the global values for the log
            fired = _all_sum(fired.to(torch.int32)) > 0
            shown = _all_sum(torch.stack([loss.detach(), fvu.detach(), active.float()]))
            loss_v, fvu_v, l0 = float(shown[0]), float(shown[1]), float(shown[2]) / n_tokens
            loss = loss * world
        else:
            loss_v, fvu_v, l0 = float(loss.detach()), float(fvu.detach()), float(active) / n_tokens
        with torch.no_grad():
            self.tokens_since_fired += n_tokens
            self.tokens_since_fired[fired] = 0
        self.tokens_seen += n_tokens
        dead = float(self.dead_mask().float().mean())
        self.log_dict(
            {"loss": loss_v, "fvu": fvu_v, "l0": l0, "dead": dead},
            prog_bar=True,
            on_step=True,
            logger=False,
        )
        if batch_idx % 10 == 0:
            self.history.append(
                {
                    "step": float(self.global_step),
                    "tokens": float(self.tokens_seen),
                    "loss": loss_v,
                    "fvu": fvu_v,
                    "l0": l0,
                    "dead": dead,
                    **(out.metrics or {}),
                }
            )
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.sae.remove_parallel_grad()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.sae.normalize_decoder()
        self.sae.arch.after_step(self.sae)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr, betas=(0.9, 0.999), eps=6.25e-10)
        warm, total = self.tcfg.lr_warmup_steps, self.total_steps

        def factor(step: int) -> float:
            # linear warm-up, constant, then linear decay to zero over the last 20% of steps
            f = min(1.0, (step + 1) / warm) if warm else 1.0
            if total:
                decay_start = int(0.8 * total)
                if step >= decay_start:
                    f *= max(0.0, (total - step) / max(1, total - decay_start))
            return f

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def input_scale(sample: torch.Tensor) -> float:
    """The factor that makes the mean squared norm of the inputs equal to d_in (as SAELens and sparsify
    do), so one learning rate and one L1 coefficient suit every model and layer."""
    return float((sample.shape[-1] / sample.pow(2).sum(-1).mean()).sqrt())


def init_b_dec(sae: SAE, sample: torch.Tensor, how: str) -> None:
    with torch.no_grad():
        if how == "geometric_median":
            sae.b_dec.data = geometric_median(sample.float())
        elif how == "mean":
            sae.b_dec.data = sample.float().mean(0)


def build_trainer(
    tcfg: TrainConfig,
    out: Path,
    max_steps: int,
    epochs: int,
    checkpoints: bool = True,
    extra_callbacks: Sequence[Any] = (),
) -> L.Trainer:
    """The Lightning trainer; ``checkpoints=False`` (training without an output folder) writes nothing,
    so in-memory runs in parallel processes never share a checkpoint folder. ``extra_callbacks``: a caller's
    own (a progress display, for instance)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks: list[Any] = list(extra_callbacks)
    if checkpoints:
        callbacks.append(
            ModelCheckpoint(
                dirpath=out / "checkpoints",
                filename="sae-{step}",
                save_last=True,
                save_top_k=1,
                every_n_train_steps=tcfg.checkpoint_every or None,
            )
        )
    return L.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        strategy=tcfg.strategy,
        logger=False,
        enable_progress_bar=tcfg.progress,
        enable_model_summary=False,
        callbacks=callbacks,
        enable_checkpointing=checkpoints,
        default_root_dir=str(out),
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )


@dataclass
class TrainingSetup:
    """Everything training decides before the loop: the initialised SAE, its training module, the stream,
    the input scale and outlier cut, and the schedule (``max_steps`` per process). ``store`` is None when
    training on an in-memory tensor; ``source`` names the data in ``training.json``."""

    store: ActivationStore | None
    hook: str
    sae: SAE
    module: SAETrainingModule
    stream: ActivationStream | TensorStream
    scale: float
    max_norm: float | None
    max_steps: int
    epochs: int
    lr: float
    source: str = ""


def _prepare(
    cfg: SAEConfig,
    tcfg: TrainConfig,
    sample: torch.Tensor,
    make_stream: Callable[[float, float | None], ActivationStream | TensorStream],
) -> tuple[SAE, SAETrainingModule, ActivationStream | TensorStream, float, float | None, int, int, float]:
    """The part of the set-up shared by every data source: initialise the SAE, choose the input scale and
    the outlier cut from ``sample`` (raw activations), initialise ``b_dec``, and fix the schedule."""
    # every rank of a distributed run computes the same initialisation from the same seed and sample
    L.seed_everything(tcfg.seed, verbose=False)
    sae = SAE(cfg, seed=tcfg.seed)
    max_norm = outlier_norm(sample, tcfg.outlier_factor)
    typical = sample if max_norm is None else sample[sample.norm(dim=-1) <= max_norm]
    scale = input_scale(typical) if tcfg.normalize else 1.0
    init_rows = (sample if tcfg.train_on_outliers else typical) * scale
    init_b_dec(sae, sae.arch.target(cfg, init_rows), tcfg.b_dec_init)
    sae.arch.init_from_sample(sae, init_rows)
    stream = make_stream(scale, None if tcfg.train_on_outliers else max_norm)
    per_epoch = max(1, stream.batches_per_pass(tcfg.world) or stream.n_usable_tokens() // tcfg.batch_size)
    global_batch = tcfg.batch_size * tcfg.world
    max_steps = -(-tcfg.max_tokens // global_batch) if tcfg.max_tokens else per_epoch * tcfg.epochs
    epochs = tcfg.epochs if not tcfg.max_tokens else max(tcfg.epochs, -(-max_steps // per_epoch) + 1)
    lr = tcfg.lr or default_lr(cfg)
    module = SAETrainingModule(sae, tcfg, lr, total_steps=max_steps)
    return sae, module, stream, scale, max_norm, max_steps, epochs, lr


def setup_training(
    store: ActivationStore, cfg: SAEConfig | None, tcfg: TrainConfig, **sae_kwargs: Any
) -> TrainingSetup:
    hook = store.hook(tcfg.hook)
    d_in = store.d(hook)
    if cfg is None:
        expansion = sae_kwargs.pop("expansion", 8)
        cfg = SAEConfig(
            d_in=d_in,
            d_sae=int(expansion * d_in),
            hook_name=hook,
            model_name=str(store.manifest.get("model", "")),
            **sae_kwargs,
        )
    if cfg.d_in != d_in:
        raise InvalidConfigError(
            f"SAE d_in={cfg.d_in} does not match {hook} in {store.path}, of width {d_in}."
        )
    sample = store.sample(min(16_384, max(store.n_tokens, 1)), hook=hook, seed=tcfg.seed).float()

    def make_stream(scale: float, max_norm: float | None) -> ActivationStream:
        return ActivationStream(
            store, tcfg.batch_size, hook, tcfg.seed, tcfg.shuffle_buffer, scale, max_norm=max_norm
        )

    sae, module, stream, scale, max_norm, max_steps, epochs, lr = _prepare(cfg, tcfg, sample, make_stream)
    return TrainingSetup(
        store, hook, sae, module, stream, scale, max_norm, max_steps, epochs, lr, source=str(store.path)
    )


def setup_tensor_training(x: torch.Tensor, cfg: SAEConfig, tcfg: TrainConfig) -> TrainingSetup:
    """:func:`setup_training` for an in-memory ``[n_tokens, d_in]`` activation tensor (every row is a
    token; there are no special tokens to drop)."""
    width = get_architecture(cfg.arch).batch_width(cfg)
    if x.ndim != 2 or x.shape[1] != width:
        raise ShapeMismatchError("Training activations [n_tokens, d_in]", f"[n_tokens, {width}]", tuple(x.shape))
    if not x.is_floating_point():
        raise InvalidConfigError(f"Training activations must be floating point, got {x.dtype}.")
    if x.shape[0] < tcfg.batch_size * tcfg.world:
        raise InvalidConfigError(
            f"{x.shape[0]} tokens are fewer than one batch ({tcfg.batch_size} × {tcfg.world} processes): "
            "lower batch_size or pass more activations."
        )
    gen = torch.Generator().manual_seed(tcfg.seed)
    n = min(16_384, x.shape[0])
    sample = x[torch.randperm(x.shape[0], generator=gen)[:n]].float()
    if not torch.isfinite(sample).all():
        raise InvalidConfigError("Training activations contain NaN or infinite values.")

    def make_stream(scale: float, max_norm: float | None) -> TensorStream:
        return TensorStream(x, tcfg.batch_size, tcfg.seed, scale, max_norm=max_norm)

    sae, module, stream, scale, max_norm, max_steps, epochs, lr = _prepare(cfg, tcfg, sample, make_stream)
    return TrainingSetup(
        None,
        cfg.hook_name,
        sae,
        module,
        stream,
        scale,
        max_norm,
        max_steps,
        epochs,
        lr,
        source=f"tensor[{x.shape[0]}, {x.shape[1]}]",
    )


def _fit(
    setup: TrainingSetup,
    tcfg: TrainConfig,
    out: str | os.PathLike | None,
    callbacks: Sequence[Any] = (),
) -> tuple[SAE, TrainResult]:
    """The loop every entry point shares: optional LR range test, the Lightning trainer, fit and save.
    Without ``out`` Lightning's working files go to a private temporary folder, removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="neuroscope-sae-") as tmp:
        root = Path(out) if out is not None else Path(tmp)
        if tcfg.lr_find:
            lr = find_lr(setup.module, setup.stream, tcfg, root)
            setup.lr = lr
            setup.module = SAETrainingModule(setup.sae, tcfg, lr, total_steps=setup.max_steps)
        trainer = build_trainer(
            tcfg, root, setup.max_steps, setup.epochs, checkpoints=out is not None, extra_callbacks=callbacks
        )
        return run_training(setup, trainer, setup.stream.loader(), out, tcfg)


def train_sae(
    acts: str | os.PathLike | ActivationStore,
    cfg: SAEConfig | None = None,
    tcfg: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
    **sae_kwargs: Any,
) -> tuple[SAE, TrainResult]:
    """Train an SAE on a recorded store and (with ``out``) save it in SAELens's format plus
    ``training.json``. ``cfg`` defaults to a TopK SAE on the store's hook: pass ``expansion=8`` and
    SAEConfig fields (``arch``, ``k``, ...) as keywords instead of a config.

    With ``tcfg.devices``/``num_nodes`` > 1 and ``strategy="ddp"``, Lightning starts one process per
    device (re-running this program); each streams its own share of the store, and only global rank 0
    writes ``out``. Every rank returns the same trained SAE. ``callbacks``: extra Lightning callbacks (a
    caller's progress display, for instance)."""
    tcfg = tcfg or TrainConfig()
    store = acts if isinstance(acts, ActivationStore) else ActivationStore(acts)
    return _fit(setup_training(store, cfg, tcfg, **sae_kwargs), tcfg, out, callbacks)


def train_sae_on_tensor(
    x: torch.Tensor,
    cfg: SAEConfig,
    tcfg: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
) -> tuple[SAE, TrainResult]:
    """Train an SAE on an in-memory ``[n_tokens, d_in]`` activation tensor, exactly as :func:`train_sae`
    trains on a store (same module, input normalisation, ``b_dec`` initialisation, AuxK, schedule and, with
    ``out``, the same saved folder). ``tcfg.hook`` is ignored: the hook is ``cfg.hook_name``. Under data
    parallelism every process must pass the same tensor."""
    tcfg = tcfg or TrainConfig()
    return _fit(setup_tensor_training(x, cfg, tcfg), tcfg, out)


def run_training(
    setup: TrainingSetup,
    trainer: L.Trainer,
    loader: Any,
    out: str | os.PathLike | None,
    tcfg: TrainConfig,
) -> tuple[SAE, TrainResult]:
    """Fit, fold the input scale into the SAE, and (on global rank 0, with ``out``) save it."""
    from neuroscope.sae.io import save_sae

    module, sae = setup.module, setup.sae
    out_path = Path(out) if out is not None else Path(os.environ.get("TMPDIR", "/tmp")) / "neuroscope-sae"
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - t0
    sae.fold_input_scale(setup.scale)
    h = module.history
    result = TrainResult(
        out=str(out_path),
        steps=int(trainer.global_step),
        tokens=module.tokens_seen,
        seconds=round(seconds, 3),
        tokens_per_s=round(module.tokens_seen / max(seconds, 1e-9), 1),
        lr=setup.lr,
        input_scale=setup.scale,
        outlier_norm=setup.max_norm,
        final_loss=h[-1]["loss"] if h else float("nan"),
        final_fvu=h[-1]["fvu"] if h else float("nan"),
        dead_fraction=float(module.dead_mask().float().mean()),
        history=h,
        rank=trainer.global_rank,
        world=trainer.world_size,
    )
    if out is not None and trainer.is_global_zero:
        save_sae(sae, out_path)
        info = {
            "train": {**tcfg.to_dict(), "lr": setup.lr},
            "acts": setup.source,
            "result": result.to_dict(),
        }
        (out_path / "training.json").write_text(json.dumps(info, indent=2))
    return sae, result


def find_lr(
    module: SAETrainingModule, stream: ActivationStream | TensorStream, tcfg: TrainConfig, out: Path
) -> float:
    """Lightning's LR range test on a throwaway copy; the SAE handed in is left untouched."""
    import copy

    from lightning.pytorch.tuner import Tuner

    probe = copy.deepcopy(module)
    probe.total_steps = None
    trainer = L.Trainer(
        max_steps=100,
        logger=False,
        enable_progress_bar=tcfg.progress,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    finder = Tuner(trainer).lr_find(
        probe, train_dataloaders=stream.loader(), min_lr=1e-6, max_lr=1e-1, num_training=60, update_attr=False
    )
    suggestion = finder.suggestion() if finder is not None else None
    return float(suggestion) if suggestion else module.lr
