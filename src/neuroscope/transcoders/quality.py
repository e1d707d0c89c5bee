"""How good a transcoder set is: per layer on held-out pairs (FVU of the MLP output, L0, dead latents) and
for the whole model, every MLP replaced at once by tc-graph's :class:`ReplacementModel` (CE loss recovered,
top-1 agreement and KL against the real model), without error terms and with them (``errors="live"``:
the real model again, a check that the splice is exact).

CE loss recovered = (CE with every transcoded MLP zero-ablated − CE of the replacement) / (that ablated CE −
the real CE). Special tokens keep their real MLP output in both, as the SAE evaluation keeps them clean:
the transcoders never trained on them, and in the project's contexts the only one is the BOS at position 0,
whose computation is the same in every context (causal attention), so its real MLP outputs are added back
with :class:`ResidualAdd` there. ``*_bos_replaced`` replaces it too."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import TranscoderSet


@dataclass(frozen=True)
class QualityConfig:
    heldout_tokens: int = 16_384  # recorded when the transcoder folder has no held-out pairs
    ce_contexts: int = 32
    ctx_len: int = 128
    batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("heldout_tokens", "ce_contexts", "ctx_len", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class QualityResult:
    model: str
    transcoders: str
    per_layer: list[dict[str, Any]]
    whole_model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        head = "| layer | FVU | L0 | dead |\n|---|---|---|---|"
        rows = [
            f"| {r['layer']} | {r['fvu']:.3f} | {r['l0']:.1f} | {r['dead_fraction']:.2%} |"
            for r in self.per_layer
        ]
        w = self.whole_model
        tail = []
        if w:
            tail = [
                "",
                f"CE loss recovered {w['ce_loss_recovered']:.3f}, top-1 agreement {w['top1_agreement']:.3f}, "
                f"KL {w['kl']:.4f} nats/token (no error terms); with error terms: CE recovered "
                f"{w['with_errors']['ce_loss_recovered']:.3f}, KL {w['with_errors']['kl']:.2e}",
            ]
        return "\n".join([head, *rows, *tail])


def _nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    return -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def _compare(
    real: torch.Tensor, other: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor
) -> dict[str, float]:
    """Sums over valid positions: NLL, top-1 agreements with the real model, KL(real ‖ other)."""
    lp_r = torch.log_softmax(real[:, :-1].float(), -1)
    lp_o = torch.log_softmax(other[:, :-1].float(), -1)
    kl = (lp_r.exp() * (lp_r - lp_o)).sum(-1)
    agree = lp_r.argmax(-1) == lp_o.argmax(-1)
    return {
        "nll": float(_nll(other, ids)[valid].sum()),
        "top1": float(agree[valid].sum()),
        "kl": float(kl[valid].sum()),
    }


@torch.no_grad()
def whole_model_quality(
    model: HookedModel,
    transcoders: TranscoderSet,
    contexts: torch.Tensor,
    special_ids: list[int],
    batch_size: int = 8,
) -> dict[str, Any]:
    """CE loss recovered, top-1 agreement and KL of the replacement model on ``contexts [n, ctx_len]``."""
    from neuroscope.transcoders.replacement import ReplacementModel, ResidualAdd

    rm = ReplacementModel(model, transcoders)
    layers = transcoders.layers
    special = torch.tensor(special_ids, dtype=torch.long)
    bos_first = bool(contexts.shape[0]) and bool(
        (contexts[:, 0] == contexts[0, 0]).all() and torch.isin(contexts[0, 0], special)
    )
    # special tokens elsewhere (a document boundary inside a context) are replaced like any token; the
    # predictions at and after them are left out of every metric
    special_after_bos = int(torch.isin(contexts[:, 1:], special).sum())
    adds: list[Any] = []
    if bos_first:
        run = rm.record(contexts[0, :1].to(model.device))
        for l in layers:
            tc = transcoders[l]
            real, inp = run.mlp_out[l, 0], run.mlp_in[l, 0]
            adds.append(ResidualAdd("mlp_out", l, 0, (real - tc(inp[None])[0]).detach()))
    names = [f"blocks.{l}.hook_mlp_out" for l in layers]

    def zero_after_bos(t: torch.Tensor, hook: Any) -> torch.Tensor:
        out = torch.zeros_like(t)
        if bos_first:
            out[:, 0] = t[:, 0]
        return out

    sums: dict[str, dict[str, float]] = {}
    count = 0
    for i in range(0, contexts.shape[0], batch_size):
        ids = contexts[i : i + batch_size].to(model.device)
        spec = torch.isin(ids.cpu(), special).to(ids.device)
        valid = ~(spec[:, :-1] | spec[:, 1:])
        real = model.run_with_hooks(ids)
        runs = {
            "real": real,
            "zero_ablation": model.run_with_hooks(ids, fwd_hooks=[(n, zero_after_bos) for n in names]),
            "replacement": rm.forward(ids, errors="off", adds=adds).logits,
            "replacement_bos_replaced": rm.forward(ids, errors="off").logits,
            "with_errors": rm.forward(ids, errors="live").logits,
        }
        for k, logits in runs.items():
            part = _compare(real, logits, ids, valid)
            acc = sums.setdefault(k, {"nll": 0.0, "top1": 0.0, "kl": 0.0})
            for m, v in part.items():
                acc[m] += v
        count += int(valid.sum())
    mean = {k: {m: v / max(count, 1) for m, v in d.items()} for k, d in sums.items()}
    ce_real, ce_zero = mean["real"]["nll"], mean["zero_ablation"]["nll"]

    def recovered(ce: float) -> float | None:
        return (ce_zero - ce) / (ce_zero - ce_real) if abs(ce_zero - ce_real) > 1e-12 else None

    def block(k: str) -> dict[str, Any]:
        return {
            "ce": mean[k]["nll"],
            "ce_loss_recovered": recovered(mean[k]["nll"]),
            "top1_agreement": mean[k]["top1"],
            "kl": mean[k]["kl"],
        }

    return {
        "layers": layers,
        "contexts": int(contexts.shape[0]),
        "tokens": count,
        "ce_real": ce_real,
        "ce_zero_ablation": ce_zero,
        **block("replacement"),
        "bos_kept_real": bos_first,
        "special_tokens_after_position_0": special_after_bos,
        "bos_replaced": block("replacement_bos_replaced"),
        "with_errors": block("with_errors"),
        "zero_ablation": block("zero_ablation"),
    }


def transcoder_quality(
    model: HookedModel,
    path: str | os.PathLike,
    cfg: QualityConfig | None = None,
    acts: str | os.PathLike | None = None,
    whole_model: bool = True,
) -> QualityResult:
    """Per-layer held-out metrics from the folder's held-out pairs (recorded there when absent) and the
    whole-model metrics on the first ``ce_contexts`` held-out contexts."""
    from neuroscope.record.datasets import DEFAULT_CORPUS_DIR, ensure_default_corpus
    from neuroscope.record.reader import ActivationStore
    from neuroscope.sae.evaluate import heldout_contexts
    from neuroscope.transcoders.io import load_transcoders
    from neuroscope.transcoders.record import read_pairs, record_pairs
    from neuroscope.transcoders.train import layer_metrics

    cfg = cfg or QualityConfig()
    p = Path(path)
    tset = load_transcoders(p, model)
    held = Path(acts) if acts is not None else p / "acts" / "heldout"
    if (held / "manifest.json").exists():
        store = ActivationStore(held)
    else:
        data = str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
        store = record_pairs(
            model, tset.layers, data, "heldout", cfg.heldout_tokens, cfg.ctx_len, held, False
        )
    per_layer = []
    for layer in tset.layers:
        x, y, _ = read_pairs(store, layer)
        per_layer.append({"layer": layer, **layer_metrics(tset[layer], x, y)})
    result = QualityResult(model.cfg.name, str(p), per_layer)
    if whole_model:
        contexts = heldout_contexts(store, cfg.ce_contexts, f"blocks.{tset.layers[0]}.hook_mlp_out")
        result.whole_model = whole_model_quality(
            model, tset, contexts, store.special_token_ids, cfg.batch_size
        )
    return result
