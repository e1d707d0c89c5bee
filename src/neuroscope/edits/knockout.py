"""A gated attention knockout: where a detector fires above the threshold clean text never reaches, later
positions stop reading that position through attention. The trigger's tokens stay in the prompt, but nothing
downstream can read them, so the model answers as it would without them (up to the positions' shift).

Why this family: a direction or feature edit removes one coordinate of what the trigger wrote, and the trigger
is stored redundantly (FIELD-NOTES: BD-Vax); cutting the path the information travels on (the trace shows it
leaves the trigger's positions through attention) removes every coordinate at once. The detector is a
direction at ``detect_hook`` (the triggered-minus-clean mean of the train prompts) with its threshold set from
clean prompts, as for the gated edits; it is reported in the manifest.

Exactness: in the forward that reads the prompt, layers up to the detector's run before the detector has
fired, so they are not knocked out; every later layer is, and so is every layer for tokens generated after
the prompt (their keys and values are cached). An early detector therefore leaves little to leak; the loop
chooses the detector's layer on the validation split. Not linear in the input: its LoRA is distilled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from neuroscope.edits.reference import FIRST_EDITABLE_POS
from neuroscope.errors import InvalidConfigError, ShapeMismatchError
from neuroscope.interventions import Binding, Intervention
from neuroscope.models.hooks import HookPoint

if TYPE_CHECKING:
    from neuroscope.edits.families import HookedEdit
    from neuroscope.models.hooked import HookedModel


@dataclass
class TriggerKnockout(Intervention):
    """At ``detect_hook`` positions whose projection on ``direction`` exceeds ``threshold`` are marked; every
        attention layer after it (and every layer, for positions computed later with a cache) masks those keys for
        every other query. Each binding keeps its own marks, replaced by each forward over a fresh sequence (whose
    layers before the detector ignore the marks of the previous input)."""

    detect_hook: str
    direction: torch.Tensor
    threshold: float
    _last: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def bind(self, model: HookedModel) -> Binding:
        name = model.resolve_hook_name(self.detect_hook)
        layer = int(name.split(".")[1])
        kind = name.rsplit(".", 1)[-1]
        if kind not in ("hook_resid_pre", "hook_resid_post"):
            raise InvalidConfigError(f"a knockout detector reads the residual stream, got {name!r}")
        # the first layer whose attention runs after the detector has seen the prompt
        first = layer if kind == "hook_resid_pre" else layer + 1
        d = self.direction
        if d.ndim != 1 or d.shape[0] != model.cfg.d_model:
            raise ShapeMismatchError("TriggerKnockout.direction", (model.cfg.d_model,), tuple(d.shape))
        unit = (d.double() / d.double().norm().clamp_min(1e-12)).float()
        tau = float(self.threshold)
        state: dict[str, torch.Tensor | None] = {"marks": None}
        self._last = state

        def detect(x: torch.Tensor, hp: HookPoint) -> torch.Tensor:
            if x.shape[1] == 1 and state["marks"] is not None:
                return x  # one generated token: the prompt's marks stand
            marks = (x.float() @ unit.to(x.device)) > tau
            marks[:, : max(0, FIRST_EDITABLE_POS - hp.pos_offset)] = False
            old = state["marks"]
            if hp.pos_offset and old is not None and old.shape[0] == marks.shape[0]:
                marks = torch.cat([old[:, : hp.pos_offset].to(marks.device), marks], 1)
            state["marks"] = marks
            return x

        def knock(at: int) -> Any:
            def fn(scores: torch.Tensor, hp: HookPoint) -> torch.Tensor:
                q_len, k_len = scores.shape[-2], scores.shape[-1]
                marks = state["marks"]
                if marks is None or marks.shape[0] != scores.shape[0]:
                    return scores
                if q_len == k_len and at < first:
                    return scores  # this forward's detector has not run yet
                m = torch.zeros(scores.shape[0], k_len, dtype=torch.bool, device=scores.device)
                n = min(k_len, marks.shape[1])
                m[:, :n] = marks[:, :n].to(scores.device)
                if not bool(m.any()):
                    return scores
                q_abs = torch.arange(k_len - q_len, k_len, device=scores.device)
                own = q_abs[:, None] == torch.arange(k_len, device=scores.device)[None, :]  # [q, k]
                cut = m[:, None, None, :] & ~own[None, None]
                return scores.masked_fill(cut, float("-inf"))

            return fn

        binding: Binding = [(name, detect)]
        binding += [(f"blocks.{l}.attn.hook_attn_scores", knock(l)) for l in range(model.cfg.n_layers)]
        return binding

    def marked(self) -> torch.Tensor | None:
        """The positions the last bound forward marked (``[batch, pos]``), for reports and tests."""
        return self._last.get("marks")

    def to_dict(self) -> dict[str, Any]:
        return {"detect_hook": self.detect_hook, "threshold": self.threshold}


@dataclass(frozen=True)
class Detector:
    """A direction at ``hook`` and the threshold no clean position reached, fitted on the train prompts'
    trigger positions (the tokens overlapping the trigger's characters) against every clean position."""

    hook: str
    direction: torch.Tensor
    threshold: float
    method: str
    recall: float
    """Fraction of the train prompts' trigger positions above the threshold."""
    other_triggered_marked: float
    """Fraction of the other positions of triggered prompts above it (the response's, say)."""
    n_trigger_positions: int
    n_clean_positions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "threshold": self.threshold,
            "rule": f"max over {self.n_clean_positions} positions of the clean train prompts",
            "method": self.method,
            "recall_train": round(self.recall, 4),
            "other_triggered_positions_marked": round(self.other_triggered_marked, 4),
            "n_trigger_positions": self.n_trigger_positions,
        }

    def edit(self) -> TriggerKnockout:
        return TriggerKnockout(self.hook, self.direction, self.threshold)


def trigger_positions(tokenizer: Any, text: str, trigger: str) -> tuple[list[int], list[int]]:
    """``(ids, positions)``: the ids as the model tokenises ``text`` and the positions of the tokens that
    overlap the first occurrence of ``trigger``'s characters (empty when it does not occur)."""
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidConfigError("locating a trigger's tokens needs a fast tokenizer (offset mapping)")
    enc = tokenizer(text, return_offsets_mapping=True)
    a = text.find(trigger)
    if a < 0:
        return list(enc["input_ids"]), []
    b = a + len(trigger)
    pos = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < b and e > a]
    return list(enc["input_ids"]), pos


@torch.no_grad()
def _positions(
    model: HookedModel, name: str, texts: Sequence[str], trigger: str | None
) -> tuple[Tensor, Tensor]:
    """Every position's stream at ``name`` after the attention sink, and whether it is a trigger token."""
    layer = int(name.split(".")[1])
    xs, ys = [], []
    for t in texts:
        pos: list[int] = []
        if trigger is None:
            ids = list(model.tokenizer(t)["input_ids"])
        else:
            ids, pos = trigger_positions(model.tokenizer, t, trigger)
        _, cache = model.run_with_cache(torch.tensor([ids]), names=[name], stop_at_layer=layer + 1)
        y = torch.zeros(len(ids), dtype=torch.bool)
        y[pos] = True
        xs.append(cache[name][0, FIRST_EDITABLE_POS:].double().cpu())
        ys.append(y[FIRST_EDITABLE_POS:])
    return torch.cat(xs), torch.cat(ys)


def _probe(pos: Tensor, neg: Tensor, l2: float = 1e-3) -> Tensor:
    """A class-balanced logistic probe (standardised features, L-BFGS): the direction that best separates
    trigger positions from clean ones, where a mean difference can leave some trigger tokens below clean."""
    x = torch.cat([pos, neg]).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    pw = torch.tensor(len(neg) / max(len(pos), 1), dtype=torch.float64)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, pos_weight=pw)
        loss = loss + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    return (w.detach() / sd).double()


def fit_detector(
    model: HookedModel,
    triggered: Sequence[str],
    clean: Sequence[str],
    trigger: str,
    hook: str,
    method: str = "mean",
) -> Detector:
    """A trigger detector at ``hook`` from formatted ``triggered`` texts (each containing ``trigger``) and
    ``clean`` ones: ``probe`` (logistic) or ``mean`` (trigger positions minus clean positions)."""
    if method not in ("probe", "mean"):
        raise InvalidConfigError(f"detector method must be 'probe' or 'mean', got {method!r}")
    name = model.resolve_hook_name(hook)
    xt, yt = _positions(model, name, triggered, trigger)
    xc, _ = _positions(model, name, clean, None)
    if not bool(yt.any()):
        raise InvalidConfigError(f"the trigger {trigger!r} occurs in none of the triggered texts")
    if xc.shape[0] == 0:
        raise InvalidConfigError(
            "no clean positions to set the detector's threshold from: give clean prompts"
        )
    pos = xt[yt]
    d = pos.mean(0) - xc.mean(0) if method == "mean" else _probe(pos, xc)
    u = d / d.norm().clamp_min(1e-12)
    tau = float((xc @ u).max())
    other = xt[~yt]
    return Detector(
        name,
        d.float(),
        tau,
        method,
        recall=float(((pos @ u) > tau).double().mean()),
        other_triggered_marked=float(((other @ u) > tau).double().mean()) if len(other) else 0.0,
        n_trigger_positions=int(pos.shape[0]),
        n_clean_positions=int(xc.shape[0]),
    )


def knockout_edit(model: HookedModel, detector: Detector, distil_layers: range) -> HookedEdit:
    """The knockout as a hooked edit: matched on clean text by the unedited model (the detector never fires
    there by construction), distilled into the residual writers of ``distil_layers``."""
    from neuroscope.edits.families import HookedEdit
    from neuroscope.edits.targets import writer_paths

    last = f"blocks.{distil_layers[-1]}.hook_resid_post"
    chosen = {
        "family": "knockout",
        "detector": detector.to_dict(),
        "acts_on": "attention to marked positions, every layer after the detector's",
    }
    return HookedEdit(
        "knockout",
        [detector.edit()],
        chosen,
        last,
        clean_target="base",
        closed_form_note="an attention knockout is not a weight edit: distilled",
        distil_paths=writer_paths(model, last, layers=distil_layers),
    )
