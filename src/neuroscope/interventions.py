"""Interventions: first-class objects that compose in a list and bind to hook points.

Each intervention validates itself against the model in ``bind`` and returns ``(hook name, fn)`` pairs;
the model applies them in list order inside a context, so nothing leaks past the call that used them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, ShapeMismatchError
from neuroscope.models.hooks import HookFn, HookPoint

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

Positions = Sequence[int] | None
Binding = list[tuple[str, HookFn]]


def _pos_index(positions: Positions, hook: HookPoint, length: int) -> list[int] | None:
    """Map absolute positions to indices of this call's pos axis (cached generation shifts them)."""
    if positions is None:
        return None
    out = []
    for p in positions:
        i = (p if p >= 0 else p + length + hook.pos_offset) - hook.pos_offset
        if 0 <= i < length:
            out.append(i)
    return out


def _pos_axis(name: str) -> int:
    return 2 if name.endswith(("hook_pattern", "hook_attn_scores")) else 1


def _head_axis(name: str) -> int | None:
    if name.endswith(("hook_z", "hook_q", "hook_k", "hook_v")):
        return 2
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        return 1
    return None


def _select(t: torch.Tensor, name: str, idx: list[int] | None, heads: Sequence[int] | None) -> tuple:
    """An index tuple picking positions (query positions for patterns) and heads."""
    key: list[Any] = [slice(None)] * t.ndim
    if idx is not None:
        key[_pos_axis(name)] = idx
    if heads is not None:
        ax = _head_axis(name)
        if ax is None:
            raise InvalidConfigError(f"{name} has no head axis; heads= needs attn.hook_z/q/k/v/pattern")
        if idx is not None:
            # two advanced indices would be zipped together; take the outer product instead
            return ("outer", idx, list(heads))
        key[ax] = list(heads)
    return tuple(key)


def _assign(
    t: torch.Tensor,
    name: str,
    idx: list[int] | None,
    heads: Sequence[int] | None,
    value: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Return a copy of ``t`` with the selected part replaced by ``value(selected part)``."""
    out = t.clone()
    key = _select(t, name, idx, heads)
    if key and key[0] == "outer":
        pos_ax, head_ax = _pos_axis(name), _head_axis(name)
        assert head_ax is not None  # an outer (positions x heads) key exists only on per-head hooks
        for p in key[1]:
            for h in key[2]:
                k: list[Any] = [slice(None)] * t.ndim
                k[pos_ax], k[head_ax] = p, h
                out[tuple(k)] = value(t[tuple(k)])
        return out
    out[key] = value(t[key])
    return out


def _group(pairs: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, unit in pairs:
        by_layer.setdefault(int(layer), []).append(int(unit))
    return by_layer


class Intervention:
    def bind(self, model: HookedModel) -> Binding:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Ablate(Intervention):
    """Knock out heads (at ``attn.hook_z``), MLP neurons (at ``mlp.hook_post``) or a whole hook.

    ``mode``: ``zero``; ``mean`` over ``reference`` (prompts or tokens) and its positions; ``resample``,
    each batch row taking the activation of a seeded random reference row.
    """

    heads: Sequence[tuple[int, int]] = ()
    neurons: Sequence[tuple[int, int]] = ()
    hook: str | None = None
    mode: Literal["zero", "mean", "resample"] = "zero"
    reference: Any = None
    positions: Positions = None
    seed: int = 0
    _ref_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("zero", "mean", "resample"):
            raise InvalidConfigError(f"Ablate mode must be 'zero', 'mean' or 'resample', got {self.mode!r}")
        if self.mode != "zero" and self.reference is None:
            raise InvalidConfigError(f"Ablate(mode={self.mode!r}) needs reference= prompts or tokens")
        if not (self.heads or self.neurons or self.hook):
            raise InvalidConfigError("Ablate needs heads=, neurons= or hook=")

    def _reference(self, model: HookedModel, names: list[str]) -> dict[str, torch.Tensor]:
        missing = [n for n in names if n not in self._ref_cache]
        if missing:
            _, cache = model.run_with_cache(self.reference, names=missing)
            for n in missing:
                self._ref_cache[n] = cache[n]
        return self._ref_cache

    def bind(self, model: HookedModel) -> Binding:
        targets: list[tuple[str, list[int] | None]] = []
        for layer, heads in _group(self.heads).items():
            for h in heads:
                model.check_head(layer, h)
            targets.append((f"blocks.{layer}.attn.hook_z", heads))
        for layer, units in _group(self.neurons).items():
            model.check_layer(layer)
            for u in units:
                if not 0 <= u < model.cfg.d_mlp:
                    raise IndexOutOfRangeError("neuron", u, model.cfg.d_mlp)
            targets.append((f"blocks.{layer}.mlp.hook_post", units))
        if self.hook:
            targets.append((model.resolve_hook_name(self.hook), None))
        ref = self._reference(model, [n for n, _ in targets]) if self.mode != "zero" else {}
        return [(name, self._fn(name, units, ref.get(name))) for name, units in targets]

    def _fn(self, name: str, units: list[int] | None, ref: torch.Tensor | None) -> HookFn:
        is_neuron = name.endswith("mlp.hook_post")
        gen = torch.Generator().manual_seed(self.seed)

        def replacement(x: torch.Tensor) -> torch.Tensor:
            if self.mode == "zero":
                return torch.zeros_like(x)
            assert ref is not None
            r = ref.to(x.device, x.dtype)
            if self.mode == "mean":
                return r.mean(dim=(0, 1), keepdim=True).expand_as(x)
            else:
                rows = torch.randint(0, r.shape[0], (x.shape[0],), generator=gen)
                src = r[rows]
                if src.shape[1] < x.shape[1]:  # cycle a shorter reference along positions
                    reps = -(-x.shape[1] // src.shape[1])
                    src = src.repeat(1, reps, *([1] * (src.ndim - 2)))
            return src[:, : x.shape[1]]

        def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            idx = _pos_index(self.positions, hook, x.shape[1])
            full = None if self.mode == "zero" else replacement(x)
            heads = None if is_neuron else units
            if is_neuron and units is not None:
                out = x.clone()
                sel = (slice(None), idx if idx is not None else slice(None))
                for u in units:
                    out[sel + (u,)] = 0 if full is None else full[sel + (u,)]
                return out
            if full is None:
                return _assign(x, name, idx, heads, torch.zeros_like)
            mask = torch.zeros_like(x, dtype=torch.bool)
            mask = _assign(mask, name, idx, heads, torch.ones_like)
            return torch.where(mask, full, x)

        return fn


@dataclass
class Patch(Intervention):
    """Overwrite an activation with one from ``source`` (an ActivationCache or a tensor of the hook's shape)."""

    hook: str
    source: Any
    heads: Sequence[int] | None = None
    positions: Positions = None

    def bind(self, model: HookedModel) -> Binding:
        name = model.resolve_hook_name(self.hook)
        src = self.source[name] if hasattr(self.source, "keys") else self.source
        if not isinstance(src, torch.Tensor):
            raise InvalidConfigError("Patch.source must be an ActivationCache or a tensor")
        if self.heads is not None:
            layer = int(name.split(".")[1])
            for h in self.heads:
                model.check_head(layer, h)

        def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            s = src.to(x.device, x.dtype)
            if s.shape != x.shape:
                try:
                    s = s.expand_as(x)
                except RuntimeError:
                    raise ShapeMismatchError(
                        f"Patch source for {name}", tuple(x.shape), tuple(s.shape)
                    ) from None
            idx = _pos_index(self.positions, hook, x.shape[_pos_axis(name)])
            mask = _assign(torch.zeros_like(x, dtype=torch.bool), name, idx, self.heads, torch.ones_like)
            return torch.where(mask, s, x)

        return [(name, fn)]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


@dataclass
class Steer(Intervention):
    """Add ``alpha * vector`` to the residual stream at ``layer`` (``site`` resid_pre/resid_mid/resid_post)."""

    layer: int
    vector: torch.Tensor
    alpha: float = 1.0
    positions: Positions = None
    site: str = "resid_pre"

    def bind(self, model: HookedModel) -> Binding:
        model.check_layer(self.layer)
        name = model.resolve_hook_name(f"blocks.{self.layer}.hook_{self.site}")
        if self.vector.shape[-1] != model.cfg.d_model or self.vector.ndim != 1:
            raise ShapeMismatchError("Steer.vector", (model.cfg.d_model,), tuple(self.vector.shape))

        def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            v = (self.alpha * self.vector).to(x.device, x.dtype)
            idx = _pos_index(self.positions, hook, x.shape[1])
            if idx is None:
                return x + v
            out = x.clone()
            out[:, idx] = out[:, idx] + v
            return out

        return [(name, fn)]


@dataclass
class ProjectOut(Intervention):
    """Remove the component along ``direction`` from the residual stream at ``layers`` (default: all)."""

    direction: torch.Tensor
    layers: Sequence[int] | None = None
    site: str = "resid_post"
    positions: Positions = None

    def bind(self, model: HookedModel) -> Binding:
        if self.direction.ndim != 1 or self.direction.shape[0] != model.cfg.d_model:
            raise ShapeMismatchError(
                "ProjectOut.direction", (model.cfg.d_model,), tuple(self.direction.shape)
            )
        layers = range(model.cfg.n_layers) if self.layers is None else self.layers
        for l in layers:
            model.check_layer(l)
        # a float64 direction keeps its precision (a float64 model then projects it out exactly)
        d = _unit(self.direction if self.direction.dtype == torch.float64 else self.direction.float())

        def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            u = d.to(x.device, x.dtype)
            idx = _pos_index(self.positions, hook, x.shape[1])
            proj = (x @ u).unsqueeze(-1) * u
            if idx is None:
                return x - proj
            out = x.clone()
            out[:, idx] = x[:, idx] - proj[:, idx]
            return out

        return [(model.resolve_hook_name(f"blocks.{l}.hook_{self.site}"), fn) for l in layers]


@dataclass
class Noise(Intervention):
    """Add seeded Gaussian noise of standard deviation ``std`` at a hook."""

    hook: str
    std: float
    seed: int = 0
    positions: Positions = None

    def __post_init__(self) -> None:
        if self.std < 0:
            raise InvalidConfigError(f"Noise.std must be >= 0, got {self.std}")

    def bind(self, model: HookedModel) -> Binding:
        name = model.resolve_hook_name(self.hook)

        def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            gen = torch.Generator(device="cpu").manual_seed(self.seed + hook.pos_offset)
            noise = (torch.randn(x.shape, generator=gen) * self.std).to(x.device, x.dtype)
            idx = _pos_index(self.positions, hook, x.shape[_pos_axis(name)])
            if idx is None:
                return x + noise
            mask = _assign(torch.zeros_like(x, dtype=torch.bool), name, idx, None, torch.ones_like)
            return torch.where(mask, x + noise, x)

        return [(name, fn)]


@dataclass
class Hook(Intervention):
    """Any user function ``fn(activation, hook) -> activation | None`` at a hook point."""

    name: str
    fn: HookFn

    def bind(self, model: HookedModel) -> Binding:
        return [(model.resolve_hook_name(self.name), self.fn)]


__all__ = ["Ablate", "Hook", "Intervention", "Noise", "Patch", "ProjectOut", "Steer"]
