"""Token attribution: gradient × input and integrated gradients on the token embeddings (``hook_embed``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from neuroscope.analysis import figures
from neuroscope.analysis._util import token_id, tolist
from neuroscope.analysis.run import Run, as_run
from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class AttributionResult:
    method: str
    str_tokens: list[str]
    target: str
    attributions: list[float]  # per input token
    f_input: float
    f_baseline: float | None  # integrated gradients only
    completeness_error: float | None  # |sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)|
    steps: int | None
    baseline: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        return figures.bars(
            [f"{i}:{t}" for i, t in enumerate(self.str_tokens)],
            self.attributions,
            title=f"{self.method} attribution to {self.target}",
            xlabel="token",
            ylabel="attribution",
        )


def _target_fn(model: HookedModel, answer: str | int, wrong: str | int | None, position: int):
    a = token_id(model, answer)
    w = token_id(model, wrong) if wrong is not None else None

    def f(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, position].float()
        return last[:, a] - (last[:, w] if w is not None else 0.0)

    name = model.tokenizer.decode([a]) + (f" − {model.tokenizer.decode([w])}" if w is not None else "")
    return f, repr(name)


def _embed(model: HookedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names=["hook_embed"], stop_at_layer=0)
    return cache["hook_embed"]


def _run_replacing_embed(model: HookedModel, ids: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    def replace(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return emb

    return model.run_with_hooks(ids, fwd_hooks=[("hook_embed", replace)])


def gradient_x_input(
    model: HookedModel | Run,
    prompt: str | None = None,
    answer: str | int | None = None,
    wrong: str | int | None = None,
    position: int = -1,
) -> AttributionResult:
    """Gradient × input on the token embeddings (``hook_embed``), summed over ``d_model``, for the logit of
    ``answer`` (minus ``wrong``) at ``position``.

    ``model`` may be a :class:`~neuroscope.analysis.run.Run` (then no ``prompt``): the gradient is taken through
    the run's interventions; ``answer=None`` is the run's own top prediction at ``position``. Works inside
    ``torch.inference_mode`` (the workbench's model thread): the forward runs outside it.
    """
    run = as_run(model, prompt, ())
    m = run.model
    pos = run.position(position)
    answer_id = run.answer_id(answer, pos)
    f, name = _target_fn(m, answer_id, wrong, 0)
    held: dict[str, torch.Tensor] = {}

    def leaf(x: torch.Tensor, hook: Any) -> torch.Tensor:
        held["embed"] = x.detach().requires_grad_(True)
        return held["embed"]

    with torch.inference_mode(False), torch.enable_grad():
        ids = run.ids.clone()  # an ordinary tensor even when the run was made under inference_mode
        logits = m.run_with_hooks(
            ids,
            fwd_hooks=[("hook_embed", leaf)],
            interventions=list(run.interventions),
            logits_to_keep=run.n_pos - pos,  # the first kept row is ``pos``
        )
        out = f(logits).sum()
        (grad,) = torch.autograd.grad(out, held["embed"])
        attr = (grad * held["embed"]).sum(-1)[0].detach()
    return AttributionResult(
        "gradient_x_input", run.str_tokens, name, tolist(attr), float(out.detach()), None, None, None, None
    )


def integrated_gradients(
    model: HookedModel,
    prompt: str,
    answer: str | int,
    wrong: str | int | None = None,
    position: int = -1,
    steps: int = 64,
    baseline: str | torch.Tensor = "mean",
    batch_size: int = 16,
    rule: Literal["trapezoid", "gauss"] = "gauss",
) -> AttributionResult:
    """IG along the straight line from ``baseline`` to the input embeddings (all positions at once).

    ``baseline``: ``"mean"`` (the mean token embedding at every position, the default), ``"zero"``, ``"pad"``,
    a tensor, or any other string, read as a reference prompt of the same token length (a counterfactual
    baseline, e.g. the prompt with the names replaced). ``zero`` is degenerate for RMSNorm models (the norm
    is discontinuous at the origin). On smollm2-135m the path from the mean embedding crosses sharp jumps of
    the logit difference (the first-token attention sink switching), so 64 steps do not reach completeness
    there; a reference-prompt baseline changes only the differing tokens and does.

    ``rule="gauss"`` uses Gauss–Legendre nodes and weights, which integrate the smooth path far more
    accurately than a Riemann sum for the same number of forwards; ``trapezoid`` uses ``steps + 1`` points.
    """
    if steps < 1:
        raise InvalidConfigError(f"steps must be >= 1, got {steps}")
    ids = model.to_tokens(prompt)
    f, name = _target_fn(model, answer, wrong, position)
    x = _embed(model, ids)[0]  # [pos, d]
    if isinstance(baseline, torch.Tensor):
        base = baseline.to(x.device, x.dtype).expand_as(x)
        base_name = "tensor"
    elif isinstance(baseline, str) and baseline not in ("mean", "zero", "pad"):
        # a reference prompt of the same length (e.g. names swapped or replaced): a counterfactual baseline
        ref = model.to_tokens(baseline)
        if ref.shape != ids.shape:
            raise InvalidConfigError(
                f"baseline prompt has {ref.shape[1]} tokens, the prompt {ids.shape[1]}: they must match"
            )
        base, base_name = _embed(model, ref)[0], baseline
    elif baseline == "mean":
        # the mean token embedding: with RMSNorm a zero baseline sits on the norm's singularity (f jumps there)
        base, base_name = model.W_E.detach().float().mean(0).to(x.dtype).expand_as(x), "mean"
    elif baseline == "zero":
        base, base_name = torch.zeros_like(x), "zero"
    elif baseline == "pad":
        pad = model.tokenizer.pad_token_id
        base, base_name = _embed(model, torch.full_like(ids, pad))[0], "pad"
    else:
        raise InvalidConfigError(f"baseline must be 'mean', 'zero', 'pad' or a tensor, got {baseline!r}")
    if rule == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, w = (nodes + 1) / 2, weights / 2
    elif rule == "trapezoid":
        alphas = np.linspace(0, 1, steps + 1)
        w = np.full(steps + 1, 1.0 / steps)
        w[0] = w[-1] = 0.5 / steps
    else:
        raise InvalidConfigError(f"rule must be 'gauss' or 'trapezoid', got {rule!r}")
    total_grad = torch.zeros_like(x, dtype=torch.float32)
    for i in range(0, len(alphas), batch_size):
        a = torch.tensor(alphas[i : i + batch_size], dtype=x.dtype, device=x.device)[:, None, None]
        wt = torch.tensor(w[i : i + batch_size], dtype=torch.float32, device=x.device)[:, None, None]
        interp = (base + a * (x - base)).detach().requires_grad_(True)
        with torch.enable_grad():
            out = f(_run_replacing_embed(model, ids.expand(len(a), -1), interp)).sum()
            (grad,) = torch.autograd.grad(out, interp)
        total_grad += (grad.float() * wt).sum(0)
    attr = ((x - base).float() * total_grad).sum(-1)
    with torch.no_grad():
        fx = float(f(_run_replacing_embed(model, ids, x[None]))[0])
        fb = float(f(_run_replacing_embed(model, ids, base[None]))[0])
    err = abs(float(attr.sum()) - (fx - fb)) / max(abs(fx - fb), 1e-8)
    return AttributionResult(
        "integrated_gradients", model.to_str_tokens(prompt), name, tolist(attr), fx, fb, err, steps, base_name
    )
