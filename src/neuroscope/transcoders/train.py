"""Train per-layer (skip) transcoders for many layers from one recording pass, resumably.

``train_transcoders`` records every chosen layer's MLP input/output once (train and held-out splits, see
:mod:`neuroscope.transcoders.record`), then trains one transcoder per layer with the project's Lightning
SAE trainer (:func:`neuroscope.sae.train.train_sae_on_tensor`; a transcoder is an architecture in the SAE
registry, :mod:`neuroscope.sae.archs.transcoder`), evaluates it on held-out text and saves it in
circuit-tracer's layout (:mod:`neuroscope.transcoders.io`). Each finished layer is written atomically and
listed in the manifest, so a killed run skips finished layers when restarted with the same settings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import InvalidConfigError
from neuroscope.transcoders.io import MANIFEST, layer_file, read_manifest, save_transcoder, write_manifest
from neuroscope.transcoders.model import Transcoder, TranscoderConfig

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

ACTIVATIONS = ("topk", "jumprelu")


@dataclass(frozen=True)
class TCTrainConfig:
    """What to train. ``tokens``/``heldout_tokens`` are recorded once for all layers (whole contexts of
    ``ctx_len``); each layer trains ``epochs`` passes over its pairs. ``d_tc`` latents; TopK keeps ``k`` per
    token; JumpReLU's L0 is set by ``l0_coefficient``. ``lr`` None: the TopK scaling rule."""

    layers: tuple[int, ...]
    tokens: int = 250_000
    heldout_tokens: int = 16_384
    d_tc: int = 4608
    k: int = 64
    activation: str = "topk"
    skip: bool = True
    epochs: int = 1
    batch_size: int = 1024
    lr: float | None = 1e-3
    l0_coefficient: float = 2e-3
    dead_tokens: int = 25_000
    train_tokens: int | None = None  # train each layer on only the first N recorded tokens
    ctx_len: int = 128
    data: str | None = None
    features: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise InvalidConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not self.layers:
            raise InvalidConfigError("give at least one layer")
        if self.train_tokens is not None and self.train_tokens < 1:
            raise InvalidConfigError(f"train_tokens must be >= 1, got {self.train_tokens}")
        for name in ("tokens", "heldout_tokens", "d_tc", "k", "epochs", "batch_size", "dead_tokens"):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.activation == "topk" and self.k > self.d_tc:
            raise InvalidConfigError(f"k ({self.k}) must be <= d_tc ({self.d_tc})")
        if self.ctx_len < 2:
            raise InvalidConfigError(f"ctx_len must be >= 2, got {self.ctx_len}")

    def tc_config(self, d_in: int, layer: int, model_name: str) -> TranscoderConfig:
        return TranscoderConfig(
            d_in=d_in,
            d_tc=self.d_tc,
            layer=layer,
            activation=self.activation,
            k=self.k if self.activation == "topk" else None,
            skip=self.skip,
            model_name=model_name,
        )

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the folder."""
        return {k: getattr(self, k) for k in ("d_tc", "k", "activation", "skip", "tokens", "ctx_len", "data", "seed")}


@dataclass
class TCTrainResult:
    out: str
    model: str
    layers: list[int]
    seconds: float
    record_seconds: float
    per_layer: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        head = "| layer | FVU | L0 | dead | train s |\n|---|---|---|---|---|"
        rows = [
            f"| {r['layer']} | {r['fvu']:.3f} | {r['l0']:.1f} | {r['dead_fraction']:.2%} | {r.get('train_seconds', 0):.0f} |"
            for r in self.per_layer
        ]
        return "\n".join([head, *rows])


def sae_to_transcoder(sae: SAE, cfg: TranscoderConfig) -> Transcoder:
    tc = Transcoder(cfg)
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            getattr(tc, name).copy_(getattr(sae, name))
        if tc.W_skip is not None:
            tc.W_skip.copy_(sae.W_skip)
        if cfg.activation == "jumprelu":
            tc.threshold.copy_(sae.threshold)
    return tc


def transcoder_to_sae(tc: Transcoder) -> SAE:
    """The SAE-registry view of a transcoder (for the feature-store machinery, which reads SAEs)."""
    from neuroscope.sae.archs.transcoder import transcoder_arch
    from neuroscope.sae.config import SAEConfig
    from neuroscope.sae.model import SAE

    c = tc.cfg
    cfg = SAEConfig(
        d_in=c.d_in,
        d_sae=c.d_tc,
        arch=transcoder_arch(c.activation, c.skip),
        k=c.k or 1,
        hook_name=c.hook_in,
        model_name=c.model_name,
    )
    sae = SAE(cfg)
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            getattr(sae, name).copy_(getattr(tc, name))
        if tc.W_skip is not None:
            sae.W_skip.copy_(tc.W_skip)
        if c.activation == "jumprelu":
            sae.threshold.copy_(tc.threshold)
    return sae


def train_layer(
    x: torch.Tensor, y: torch.Tensor, tc_cfg: TranscoderConfig, cfg: TCTrainConfig, progress: bool = False
) -> tuple[Transcoder, dict[str, Any]]:
    """One transcoder on ``x -> y`` pairs through the SAE trainer; returns it and the training record."""
    from neuroscope.sae.archs.transcoder import transcoder_arch
    from neuroscope.sae.config import SAEConfig, TrainConfig
    from neuroscope.sae.train import train_sae_on_tensor

    sae_cfg = SAEConfig(
        d_in=tc_cfg.d_in,
        d_sae=tc_cfg.d_tc,
        arch=transcoder_arch(cfg.activation, cfg.skip),
        k=cfg.k,
        l0_coefficient=cfg.l0_coefficient,
        hook_name=tc_cfg.hook_in,
        model_name=tc_cfg.model_name,
    )
    tcfg = TrainConfig(
        lr=cfg.lr,
        batch_size=min(cfg.batch_size, x.shape[0]),
        epochs=cfg.epochs,
        seed=cfg.seed,
        dead_tokens=cfg.dead_tokens,
        progress=progress,
    )
    # the trainer scales both halves of a row alike; MLP outputs are far larger than normalised inputs, so
    # x is first brought to y's size (r) and r is folded back into the input weights afterwards
    r = float(y.pow(2).sum(-1).mean().sqrt() / x.pow(2).sum(-1).mean().sqrt().clamp_min(1e-12))
    sae, result = train_sae_on_tensor(torch.cat([x * r, y], dim=1), sae_cfg, tcfg)
    with torch.no_grad():
        sae.W_enc.mul_(r)
        if tc_cfg.skip:
            sae.W_skip.mul_(r)
    info = result.to_dict()
    info.pop("history", None)
    info["input_ratio"] = r
    return sae_to_transcoder(sae, tc_cfg), info


@torch.no_grad()
def layer_metrics(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> dict[str, Any]:
    """Held-out FVU of the MLP output (squared error over the total variance about the mean), mean L0, and
    the fraction of latents that never fire on these tokens."""
    err = torch.zeros((), dtype=torch.float64)
    l0 = torch.zeros((), dtype=torch.float64)
    fired = torch.zeros(tc.cfg.d_tc, dtype=torch.bool)
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk].float(), y[i : i + chunk].float()
        z = tc.encode(xb)
        pred = tc.decode(z) + (xb @ tc.W_skip if tc.W_skip is not None else 0)
        err += (yb - pred).double().pow(2).sum()
        active = z > 0
        l0 += active.sum()
        fired |= active.any(0)
    total = (y.double() - y.double().mean(0)).pow(2).sum().clamp_min(1e-12)
    n = max(x.shape[0], 1)
    return {
        "fvu": float(err / total),
        "l0": float(l0 / n),
        "dead_fraction": float((~fired).float().mean()),
        "heldout_tokens": int(x.shape[0]),
    }


def _check_resume(out: Path, cfg: TCTrainConfig, model_name: str) -> list[int]:
    if not (out / MANIFEST).exists():
        return []
    info = read_manifest(out)
    theirs = info.get("training", {}).get("identity", {})
    mine = cfg.identity()
    if info.get("model") != model_name or (theirs and theirs != mine):
        raise InvalidConfigError(
            f"{out} holds transcoders trained with other settings ({info.get('model')}, {theirs}); "
            f"these ({model_name}, {mine}) would mix with them: choose another --out."
        )
    return [int(l) for l in info.get("layers", []) if (out / layer_file(int(l))).exists()]


def train_transcoders(
    model: HookedModel,
    cfg: TCTrainConfig,
    out: str | os.PathLike,
    progress: bool = True,
    report: Callable[[str, float], object] | None = None,
) -> TCTrainResult:
    """Record, train, evaluate (held-out FVU/L0/dead) and save every layer of ``cfg.layers`` under ``out``.
    ``report(stage, fraction)`` hears each stage (``record train``, ``train L3``, ...)."""
    from neuroscope.record.datasets import DEFAULT_CORPUS_DIR, ensure_default_corpus
    from neuroscope.transcoders.record import read_pairs, record_pairs

    t0 = time.perf_counter()
    for layer in cfg.layers:
        model.check_layer(layer)
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    name = model.cfg.name
    done = _check_resume(out_path, cfg, name)
    say = report or (lambda stage, fraction: None)
    data = cfg.data or str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
    stores = {}
    for split, tokens in (("heldout", cfg.heldout_tokens), ("train", cfg.tokens)):
        say(f"record {split}", 0.0)

        def on_tokens(n: int, total: int, stage: str = f"record {split}") -> None:
            say(stage, n / max(total, 1))

        stores[split] = record_pairs(
            model, cfg.layers, data, split, tokens, cfg.ctx_len, out_path / "acts" / split, progress, on_tokens
        )
    record_seconds = time.perf_counter() - t0
    prior = read_manifest(out_path).get("per_layer", {}) if done else {}
    per_layer: dict[str, Any] = dict(prior)
    template = cfg.tc_config(model.cfg.d_model, 0, name)
    training = {"config": {**asdict(cfg), "layers": list(cfg.layers), "data": data}, "identity": cfg.identity()}
    for layer in cfg.layers:
        if layer in done:
            say(f"train L{layer}", 1.0)
            continue
        say(f"train L{layer}", 0.0)
        t1 = time.perf_counter()
        x, y, _ = read_pairs(stores["train"], layer, cfg.train_tokens)
        tc_cfg = cfg.tc_config(model.cfg.d_model, layer, name)
        tc, info = train_layer(x, y, tc_cfg, cfg, progress)
        train_s = time.perf_counter() - t1
        del x, y
        hx, hy, _ = read_pairs(stores["heldout"], layer)
        metrics = layer_metrics(tc, hx, hy)
        save_transcoder(tc, out_path)
        done.append(layer)
        per_layer[str(layer)] = {
            "layer": layer,
            **metrics,
            "train_seconds": round(train_s, 1),
            "train_tokens": info["tokens"],
            "train_tokens_per_s": info["tokens_per_s"],
            "train_fvu_last_batch": info["final_fvu"],
            "lr": info["lr"],
            "load_average": list(os.getloadavg()),
        }
        write_manifest(out_path, template, done, {"training": training, "per_layer": per_layer})
        m = per_layer[str(layer)]
        say(f"done L{layer}: FVU {m['fvu']:.3f}, L0 {m['l0']:.1f}, dead {m['dead_fraction']:.1%}, {train_s:.0f} s", 1.0)
    if not (out_path / MANIFEST).exists() or not done:
        write_manifest(out_path, template, done, {"training": training, "per_layer": per_layer})
    if cfg.features:
        from neuroscope.transcoders.features import compute_transcoder_features

        for layer in cfg.layers:
            say(f"features L{layer}", 0.0)
            compute_transcoder_features(out_path, layer, model, stores["heldout"])
    rows = [per_layer[str(l)] for l in cfg.layers if str(l) in per_layer]
    return TCTrainResult(str(out_path), name, list(cfg.layers), round(time.perf_counter() - t0, 1), round(record_seconds, 1), rows)

