"""Synthetic benchmark configs: a SAELens ``SyntheticModelConfig`` (as its ``to_dict`` writes it) plus the
SAE width, target L0s, token budget and batch size every trainer shares. Shipped configs live in
``neuroscope/data/sae_bench/``; :func:`load_config` takes one of their names or a JSON file.

Everything is checked here, before SAELens builds a model or a token is generated: SAELens itself clamps
or truncates some impossible values silently (a hierarchy larger than the dictionary is cut short)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from neuroscope.errors import (
    DictionaryOverflowError,
    FiringProbabilityError,
    ResourceNotFoundError,
    SyntheticConfigError,
)

FIRING = {"zipfian", "linear", "random", "constant"}
MAGNITUDES = {"constant", "linear", "exponential", "folded_normal"}
MODEL_KEYS = {
    "num_features",
    "hidden_dim",
    "firing_probability",
    "hierarchy",
    "orthogonalization",
    "correlation",
    "std_firing_magnitudes",
    "mean_firing_magnitudes",
    "bias",
    "dtype",
}


@dataclass(frozen=True)
class SynthBenchConfig:
    """``model``: SAELens's synthetic-model dict (its ``seed`` is ``seed``). ``d_sae``: the width of every
    SAE; ``l0s``: target L0s (TopK-like ``k``; the penalty of ReLU + L1 and JumpReLU is calibrated to reach
    them); ``tokens``: training tokens per run, drawn once and shared; ``eval_tokens``: a held-out draw for
    FVU, L0 and dead latents; ``calibration_fraction``/``calibration_probes``: the short runs that set a
    penalty coefficient."""

    name: str
    model: dict[str, Any]
    d_sae: int
    l0s: tuple[int, ...]
    tokens: int
    eval_tokens: int = 50_000
    batch_size: int = 1024
    seed: int = 0
    matryoshka_widths: tuple[int, ...] = ()
    calibration_fraction: float = 0.125
    calibration_probes: int = 3
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_features(self) -> int:
        return int(self.model["num_features"])

    @property
    def hidden_dim(self) -> int:
        return int(self.model["hidden_dim"])

    def replace(self, **changes: Any) -> SynthBenchConfig:
        d = {**asdict(self), **changes}
        return SynthBenchConfig(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _err(cfg_name: str, msg: str) -> str:
    return f"Synthetic config {cfg_name!r}: {msg}"


def _int(name: str, where: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise SyntheticConfigError(_err(name, f"{where} must be an integer >= {lo}, got {value!r}."))
    return value


def _probability(name: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise FiringProbabilityError(
            _err(name, f"{where} is a probability and must lie in [0, 1], got {value!r}.")
        )
    return float(value)


def _check_firing(name: str, fp: Any) -> None:
    if not isinstance(fp, dict) or fp.get("generator_name") not in FIRING:
        raise SyntheticConfigError(
            _err(name, f"model.firing_probability needs generator_name in {sorted(FIRING)}, got {fp!r}.")
        )
    if fp["generator_name"] == "constant":
        _probability(name, "model.firing_probability.probability", fp.get("probability", 0.1))
        return
    hi = _probability(name, "model.firing_probability.max_prob", fp.get("max_prob", 0.3))
    lo = _probability(name, "model.firing_probability.min_prob", fp.get("min_prob", 0.01))
    if not 0.0 < lo <= hi:
        raise FiringProbabilityError(
            _err(name, f"model.firing_probability needs 0 < min_prob <= max_prob, got min {lo}, max {hi}.")
        )
    if fp["generator_name"] == "zipfian" and not fp.get("exponent", 1.0) > 0:
        raise SyntheticConfigError(_err(name, "model.firing_probability.exponent must be > 0."))


def _check_magnitude(name: str, where: str, value: Any, positive: bool) -> None:
    if isinstance(value, dict):
        if value.get("generator_name") not in MAGNITUDES:
            raise SyntheticConfigError(
                _err(name, f"{where} needs generator_name in {sorted(MAGNITUDES)}, got {value!r}.")
            )
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (positive and value == 0)
    ):
        raise SyntheticConfigError(
            _err(name, f"{where} must be a number {'> 0' if positive else '>= 0'} or a magnitude config.")
        )


def _hierarchy_size(h: dict[str, Any]) -> int:
    """Features the hierarchy needs at least: roots × (1 + b + b² + … + b^depth), b the smallest branching."""
    b = h.get("branching_factor", 100)
    b = min(b) if isinstance(b, (list, tuple)) else b
    depth = h.get("max_depth", 2)
    return int(h.get("total_root_nodes", 100)) * sum(int(b) ** d for d in range(int(depth) + 1))


def validate(cfg: SynthBenchConfig) -> None:
    name, m = cfg.name, cfg.model
    if not isinstance(m, dict):
        raise SyntheticConfigError(_err(name, "model must be a JSON object (SAELens SyntheticModelConfig)."))
    unknown = set(m) - MODEL_KEYS - {"seed"}
    if unknown:
        raise SyntheticConfigError(
            _err(name, f"unknown model keys {sorted(unknown)}; valid: {sorted(MODEL_KEYS)}.")
        )
    n = _int(name, "model.num_features", m.get("num_features"))
    _int(name, "model.hidden_dim", m.get("hidden_dim"))
    _check_firing(name, m.get("firing_probability", {"generator_name": "zipfian"}))
    _check_magnitude(name, "model.mean_firing_magnitudes", m.get("mean_firing_magnitudes", 1.0), True)
    _check_magnitude(name, "model.std_firing_magnitudes", m.get("std_firing_magnitudes", 0.0), False)
    h = m.get("hierarchy")
    if h is not None:
        if not isinstance(h, dict):
            raise SyntheticConfigError(_err(name, "model.hierarchy must be an object or null."))
        _probability(
            name, "model.hierarchy.mutually_exclusive_portion", h.get("mutually_exclusive_portion", 0.0)
        )
        need = _hierarchy_size(h)
        if need > n:
            raise DictionaryOverflowError(
                _err(
                    name, f"the hierarchy needs {need} features but the dictionary holds {n} (num_features)."
                )
            )
    c = m.get("correlation")
    if c is not None:
        rank = _int(name, "model.correlation.rank", c.get("rank", 32))
        if rank > n:
            raise DictionaryOverflowError(
                _err(name, f"model.correlation.rank {rank} exceeds the {n} features it correlates.")
            )
        scale = c.get("correlation_scale", 0.1)
        if not isinstance(scale, (int, float)) or not 0.0 <= scale <= 1.0:
            raise SyntheticConfigError(
                _err(name, f"model.correlation.correlation_scale must lie in [0, 1], got {scale!r}.")
            )
    d_sae = _int(name, "d_sae", cfg.d_sae)
    if not cfg.l0s:
        raise SyntheticConfigError(_err(name, "l0s must list at least one target L0."))
    for l0 in cfg.l0s:
        _int(name, "each target L0", l0)
        if l0 > d_sae:
            raise DictionaryOverflowError(
                _err(name, f"target L0 {l0} asks for more active latents than the SAE holds (d_sae={d_sae}).")
            )
    batch = _int(name, "batch_size", cfg.batch_size)
    if _int(name, "tokens", cfg.tokens) < batch:
        raise SyntheticConfigError(_err(name, f"tokens ({cfg.tokens}) must be at least one batch ({batch})."))
    _int(name, "eval_tokens", cfg.eval_tokens)
    _int(name, "seed", cfg.seed, lo=0)
    widths = list(cfg.matryoshka_widths)
    if widths and (widths != sorted(set(widths)) or widths[0] < 1):
        raise SyntheticConfigError(
            _err(name, f"matryoshka_widths must increase strictly from >= 1, got {widths}.")
        )
    if widths and widths[-1] > d_sae:
        raise DictionaryOverflowError(
            _err(name, f"matryoshka width {widths[-1]} is wider than the SAE (d_sae={d_sae}).")
        )
    if not 0.0 < cfg.calibration_fraction <= 1.0:
        raise SyntheticConfigError(_err(name, "calibration_fraction must lie in (0, 1]."))
    _int(name, "calibration_probes", cfg.calibration_probes)


def shipped() -> list[str]:
    root = resources.files("neuroscope.data") / "sae_bench"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def from_dict(d: dict[str, Any], name: str = "config") -> SynthBenchConfig:
    if not isinstance(d, dict):
        raise SyntheticConfigError(_err(name, "the file must hold one JSON object."))
    known = set(SynthBenchConfig.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise SyntheticConfigError(_err(name, f"unknown keys {sorted(unknown)}; valid: {sorted(known)}."))
    missing = {"model", "d_sae", "l0s", "tokens"} - set(d)
    if missing:
        raise SyntheticConfigError(_err(name, f"missing keys {sorted(missing)}."))
    d = {"name": name, **d}
    d["l0s"] = tuple(d["l0s"]) if isinstance(d["l0s"], (list, tuple)) else (d["l0s"],)
    d["matryoshka_widths"] = tuple(d.get("matryoshka_widths", ()))
    return SynthBenchConfig(**d)


def load_config(spec: str | os.PathLike) -> SynthBenchConfig:
    """A shipped config by name (``default``, ``tiny``) or a JSON file."""
    spec_s = str(spec)
    if spec_s in shipped():
        text = (resources.files("neuroscope.data") / "sae_bench" / f"{spec_s}.json").read_text()
        return from_dict(json.loads(text), spec_s)
    path = Path(spec_s)
    if not path.is_file():
        raise ResourceNotFoundError(
            f"No synthetic config {spec_s!r}: give a shipped name ({', '.join(shipped())}) or a JSON file."
        )
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SyntheticConfigError(f"Synthetic config {str(path)!r} is not valid JSON: {e}") from e
    return from_dict(d, path.stem)
