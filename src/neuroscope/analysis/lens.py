"""Logit lens (and an optional tuned lens): read the residual stream before every layer as a next-token guess."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float

from neuroscope.analysis import figures
from neuroscope.analysis._util import tolist
from neuroscope.analysis.run import Run, as_run, model_of
from neuroscope.errors import InvalidConfigError, ResourceNotFoundError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# logits decoded per unembedding read: 2**24 floats (64 MiB) per [rows, pos, vocab] temporary
LENS_CHUNK = 2**24


@dataclass
class LensResult:
    """Per layer (``labels``: ``0_pre`` .. ``final_post``) × position: top-k tokens and the convergence to the output."""

    str_tokens: list[str]
    labels: list[str]
    top_tokens: list[list[list[str]]]  # [layer][pos][k]
    top_ids: list[list[list[int]]]
    top_probs: list[list[list[float]]]
    kl_to_final: list[list[float]]  # [layer][pos] KL(final || layer), nats
    final_token_rank: list[list[int]]  # [layer][pos] rank of the model's top token in this layer's guess
    # kept for checks, not serialised; None when asked not to keep them (keep_probs=False)
    probs: Float[torch.Tensor, "layer pos vocab"] | None = field(repr=False)
    lens: str = "logit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lens": self.lens,
            "str_tokens": self.str_tokens,
            "labels": self.labels,
            "top_tokens": self.top_tokens,
            "top_ids": self.top_ids,
            "top_probs": self.top_probs,
            "kl_to_final": self.kl_to_final,
            "final_token_rank": self.final_token_rank,
        }

    def figure(self):
        text = [
            [repr(self.top_tokens[l][p][0])[1:-1] for p in range(len(self.str_tokens))]
            for l in range(len(self.labels))
        ]
        return figures.heatmap(
            self.kl_to_final,
            x=self.str_tokens,
            y=self.labels,
            text=text,
            diverging=False,
            title=f"{self.lens} lens: top token per layer (colour: KL to the final distribution, nats)",
            xlabel="position",
            ylabel="layer",
        )


def logit_lens(
    model: HookedModel | Run,
    prompt: str | None = None,
    k: int = 5,
    tuned: TunedLens | None = None,
    keep_probs: bool = True,
) -> LensResult:
    """Decode the residual stream before each layer (and the final one) through the final norm and unembedding.

    ``model`` may be a :class:`~neuroscope.analysis.run.Run` (then no ``prompt``): the lens reads its cache, so
    an intervened run gives the intervened lens. ``keep_probs=False`` drops the ``[layer, pos, vocab]``
    probabilities (hundreds of MB for a long prompt on a real vocabulary) once top-k, KL and ranks are read.
    """
    if k < 1:
        raise InvalidConfigError(f"k must be >= 1, got {k}")
    run = as_run(model, prompt, model_of(model).resid_stream_names())
    m = run.model
    with torch.no_grad():
        stack, labels = run.cache.accumulated_resid(return_labels=True)  # [layer+1, 1, pos, d]
        resid = stack[:, 0]
        if tuned is not None:
            resid = tuned.translate(resid)
        final_lp = torch.log_softmax(m.unembed(m.apply_ln_final(resid[-1])).float(), -1)  # [pos, vocab]
        final_p, final_top = final_lp.exp(), final_lp.argmax(-1)
        # rows in chunks of about LENS_CHUNK logits: each chunk reads the [d_model, d_vocab] unembedding once
        # (row by row it would be read once per layer), and its [rows, pos, vocab] temporaries stay bounded
        step = max(1, LENS_CHUNK // (resid.shape[1] * m.cfg.d_vocab))
        tops_p, tops_i, kls, ranks, kept = [], [], [], [], []
        for i in range(0, resid.shape[0], step):
            chunk = resid[i : i + step]
            lp = torch.log_softmax(m.unembed(m.apply_ln_final(chunk)).float(), -1)  # [rows, pos, vocab]
            top_lp, top_i = lp.topk(k, dim=-1)  # log is monotone: the top-k of the probabilities
            tops_p.append(top_lp.exp())
            tops_i.append(top_i)
            # KL(final || row), written as a difference first so the final row's is exactly 0
            kls.append(torch.einsum("rpv,pv->rp", final_lp - lp, final_p).clamp_min(0))
            target = lp.gather(-1, final_top[None, :, None].expand(lp.shape[0], -1, 1))
            ranks.append((lp > target).sum(-1))
            if keep_probs:
                kept.append(lp.exp())
    decode = m.tokenizer.decode
    top_i = torch.cat(tops_i)
    return LensResult(
        str_tokens=run.str_tokens,
        labels=labels,
        top_tokens=[[[decode([int(i)]) for i in row] for row in layer] for layer in top_i],
        top_ids=tolist(top_i),
        top_probs=tolist(torch.cat(tops_p)),
        kl_to_final=tolist(torch.cat(kls)),
        final_token_rank=tolist(torch.cat(ranks)),
        probs=torch.cat(kept) if keep_probs else None,
        lens="logit" if tuned is None else "tuned",
    )


class TunedLens(torch.nn.Module):
    """Per-layer affine translators ``h + A_l h + b_l`` (initialised to the identity) before the logit lens."""

    def __init__(self, n_layers: int, d_model: int):
        super().__init__()
        self.translators = torch.nn.ModuleList(torch.nn.Linear(d_model, d_model) for _ in range(n_layers))
        for t in self.translators:
            assert isinstance(t, torch.nn.Linear)
            torch.nn.init.zeros_(t.weight)
            torch.nn.init.zeros_(t.bias)

    def translate(
        self, stack: Float[torch.Tensor, "layer ... d_model"]
    ) -> Float[torch.Tensor, "layer ... d_model"]:
        outs = [h + t(h) for h, t in zip(stack[: len(self.translators)], self.translators, strict=False)]
        return torch.stack(outs + list(stack[len(self.translators) :]))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "n_layers": len(self.translators),
                "d_model": self.translators[0].in_features,
                "state": self.state_dict(),
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TunedLens:
        if not Path(path).exists():
            raise ResourceNotFoundError(f"No tuned lens at {path}")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        lens = cls(blob["n_layers"], blob["d_model"])
        lens.load_state_dict(blob["state"])
        return lens


def train_tuned_lens(
    model: HookedModel,
    texts: list[str],
    steps: int = 50,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
) -> tuple[TunedLens, list[float]]:
    """Fit the translators to minimise KL(final || lens) over ``texts``; returns the lens and the loss curve."""
    if not texts:
        raise InvalidConfigError("train_tuned_lens needs at least one text")
    n = model.cfg.n_layers
    names = model.resid_stream_names()
    lens = TunedLens(n, model.cfg.d_model).to(model.device, model.dtype)
    opt = torch.optim.Adam(lens.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    frozen = [p for p in model.hf_model.parameters() if p.requires_grad]
    for p in frozen:  # only the translators learn; restored below
        p.requires_grad_(False)
    try:
        _fit(model, lens, opt, texts, names, steps, batch_size, gen, losses)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return lens, losses


def _fit(model, lens, opt, texts, names, steps, batch_size, gen, losses) -> None:
    n = model.cfg.n_layers
    for _ in range(steps):
        idx = torch.randint(0, len(texts), (min(batch_size, len(texts)),), generator=gen).tolist()
        batch = [texts[i] for i in idx]
        tokens = model.tokenize(batch)
        with torch.no_grad():
            logits, cache = model.run_with_cache(batch, names=names)
            stack = cache.accumulated_resid()[:-1]
            target = torch.log_softmax(logits.float(), -1)
        mask = (
            torch.ones(stack.shape[1:3], device=stack.device)
            if tokens.attention_mask is None
            else tokens.attention_mask.float()
        )
        pred = torch.log_softmax(model.unembed(model.apply_ln_final(lens.translate(stack))).float(), -1)
        kl = (target.exp() * (target - pred)).sum(-1)  # [layer, batch, pos]
        loss = (kl * mask).sum() / (mask.sum() * n)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
