"""Neurons and directions: max-activating examples over a corpus, activation statistics, ablation effects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from neuroscope.analysis import figures
from neuroscope.analysis._util import bootstrap_ci
from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, ShapeMismatchError
from neuroscope.interventions import Ablate

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class Example:
    text_index: int
    position: int
    activation: float
    token: str
    left: str  # the window of text before the token
    right: str

    def highlighted(self) -> str:
        return f"{self.left}[[{self.token}]]{self.right}"


@dataclass
class NeuronResult:
    hook: str
    unit: str  # "neuron 17" or "direction"
    examples: list[Example]
    stats: dict[str, float]
    histogram: tuple[list[float], list[int]]  # bin edges, counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "unit": self.unit,
            "stats": self.stats,
            "examples": [dict(e.__dict__, highlighted=e.highlighted()) for e in self.examples],
            "histogram": {"edges": self.histogram[0], "counts": self.histogram[1]},
        }

    def figure(self):
        edges, counts = self.histogram
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=False)]
        fig = figures.bars(
            [f"{c:.3g}" for c in centres],
            counts,
            title=f"{self.hook} {self.unit}: activation histogram",
            xlabel="activation",
            ylabel="tokens",
        )
        return fig


def _reader(model: HookedModel, hook: str, neuron: int | None, direction: torch.Tensor | None):
    if (neuron is None) == (direction is None):
        raise InvalidConfigError("give exactly one of neuron= or direction=")

    def read(act: torch.Tensor) -> torch.Tensor:
        a = act.flatten(2) if act.ndim == 4 else act  # [b, pos, head*d_head] for per-head hooks
        if neuron is not None:
            if not 0 <= neuron < a.shape[-1]:
                raise IndexOutOfRangeError("neuron", neuron, a.shape[-1])
            return a[..., neuron].float()
        assert direction is not None
        if direction.shape != (a.shape[-1],):
            raise ShapeMismatchError(f"direction for {hook}", (a.shape[-1],), tuple(direction.shape))
        return a.float() @ direction.to(a.device).float()

    return read


def activations(
    model: HookedModel,
    texts: Sequence[str],
    hook: str,
    neuron: int | None = None,
    direction: torch.Tensor | None = None,
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """Per text, the activation of the unit at every real token: a list of ``[pos]`` tensors."""
    name = model.resolve_hook_name(hook)
    read = _reader(model, name, neuron, direction)
    layer = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0
    out: list[torch.Tensor] = []
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i : i + batch_size])
        tokens = model.tokenize(batch)
        with torch.no_grad():
            _, cache = model.run_with_cache(batch, names=[name], stop_at_layer=min(layer, model.cfg.n_layers))
        acts = read(cache[name]).cpu()
        lengths = tokens.last_positions.cpu() + 1
        out += [acts[j, : int(lengths[j])] for j in range(len(batch))]
    return out


def max_activating(
    model: HookedModel,
    texts: Sequence[str],
    hook: str,
    neuron: int | None = None,
    direction: torch.Tensor | None = None,
    k: int = 10,
    window: int = 8,
    batch_size: int = 16,
    bins: int = 30,
) -> NeuronResult:
    """The top-k token contexts for an MLP neuron (``hook=blocks.L.mlp.hook_post``) or any hook direction."""
    if not texts:
        raise InvalidConfigError("max_activating needs at least one text")
    acts = activations(model, texts, hook, neuron, direction, batch_size)
    flat = torch.cat(acts)
    idx = [(t, p) for t, a in enumerate(acts) for p in range(len(a))]
    order = torch.argsort(flat, descending=True)[:k].tolist()
    examples = []
    for o in order:
        t, p = idx[o]
        ids = model.to_tokens(texts[t])[0].tolist()
        dec = model.tokenizer.decode
        examples.append(
            Example(
                t,
                p,
                float(flat[o]),
                dec([ids[p]]),
                dec(ids[max(0, p - window) : p]),
                dec(ids[p + 1 : p + 1 + window]),
            )
        )
    v = flat.numpy()
    counts, edges = np.histogram(v, bins=bins)
    stats = {
        "count": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "frac_positive": float((v > 0).mean()),
        **{f"q{int(q * 100)}": float(np.quantile(v, q)) for q in (0.5, 0.9, 0.99)},
    }
    unit = f"neuron {neuron}" if neuron is not None else "direction"
    return NeuronResult(
        model.resolve_hook_name(hook), unit, examples, stats, (edges.tolist(), counts.tolist())
    )


@dataclass
class AblationEffect:
    neurons: list[tuple[int, int]]
    mode: str
    clean_loss: float
    ablated_loss: float
    delta: float  # mean per-text change of the loss
    ci: tuple[float, float]
    per_text: list[float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        return figures.bars(
            [str(i) for i in range(len(self.per_text))],
            self.per_text,
            title=f"loss change from ablating {self.neurons}",
            xlabel="text",
            ylabel="Δ loss",
        )


def neuron_ablation(
    model: HookedModel,
    texts: Sequence[str],
    neurons: Sequence[tuple[int, int]],
    mode: Literal["zero", "mean", "resample"] = "zero",
    reference: Any = None,
    seed: int = 0,
) -> AblationEffect:
    """Change in next-token loss per text when ``neurons`` are ablated, with a bootstrap 95% interval."""
    iv = Ablate(neurons=list(neurons), mode=mode, reference=reference)
    clean, ablated = [], []
    with torch.no_grad():
        for t in texts:
            clean.append(float(model.loss(t)))
            ablated.append(float(model.loss(t, interventions=[iv])))
    d = np.asarray(ablated) - np.asarray(clean)
    return AblationEffect(
        [(int(n[0]), int(n[1])) for n in neurons],
        mode,
        float(np.mean(clean)),
        float(np.mean(ablated)),
        float(d.mean()),
        bootstrap_ci(d, seed=seed),
        d.tolist(),
    )
