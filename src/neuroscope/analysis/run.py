"""A run: one prompt's tokens, the activations its forward recorded, and the interventions it ran with.

The single-prompt analyses (logit lens, residual norms, trajectory PCA, direct logit attribution, gradient ×
input, attention patterns and head scores) accept a run as well as a prompt (``logit_lens(run)``,
``direct_logit_attribution(run, answer=...)``), so a caller that already holds a forward (the workbench's cached plain run, or a run it
recomputed only from the first intervened layer) gets the same numbers as the CLI without a forward of the
analysis's own. A run records only the hooks it was asked for; an analysis that needs more calls
:meth:`Run.ensure`, which runs the same tokens with the same interventions again for the missing hooks.

    run = Run.of(model, "When Mary and John went to the store, John gave a drink to")
    lens.logit_lens(run).top_tokens[-1][-1][0]
    residual.direct_logit_attribution(run, answer=" Mary", wrong=" John").total
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int

from neuroscope.analysis._util import token_id
from neuroscope.errors import InvalidConfigError
from neuroscope.models.cache import ActivationCache

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


def hook_layer(name: str, n_layers: int) -> int:
    """The decoder layer a hook belongs to: ``blocks.L.*`` -> L, embeddings -> -1, the final norm -> n_layers."""
    if name.startswith("blocks."):
        return int(name.split(".")[1])
    return -1 if "embed" in name else n_layers


@dataclass(eq=False)
class Run:
    """One prompt (batch of one) through ``model``: its token ids, an ActivationCache, the interventions that
    were active, and the next-token logits (last position, pre-softmax) when the forward produced them."""

    model: HookedModel
    ids: Int[torch.Tensor, "1 pos"]
    cache: ActivationCache
    interventions: tuple[Any, ...] = ()
    next_logits: Float[torch.Tensor, " d_vocab"] | None = None
    prompt: str | None = None

    @classmethod
    def of(
        cls,
        model: HookedModel,
        prompt: str | torch.Tensor,
        names: Iterable[str] | None = (),
        interventions: Sequence[Any] = (),
    ) -> Run:
        """Run ``prompt`` once with ``interventions``, recording ``names`` (``None``: every hook)."""
        ids = model.to_tokens(prompt)
        if ids.shape[0] != 1:
            raise InvalidConfigError(f"a Run holds one prompt; got a batch of {ids.shape[0]}")
        wanted = None if names is None else list(dict.fromkeys(names))
        logits, cache = model.run_with_cache(
            ids, names=wanted, interventions=list(interventions), logits_to_keep=1
        )
        assert logits is not None
        text = prompt if isinstance(prompt, str) else None
        return cls(model, ids, cache, tuple(interventions), logits[0, -1].detach().float(), text)

    @functools.cached_property
    def str_tokens(self) -> list[str]:
        return [self.model.tokenizer.decode([int(i)]) for i in self.ids[0]]

    @property
    def n_pos(self) -> int:
        return int(self.ids.shape[1])

    def position(self, position: int) -> int:
        """``position`` as an index from 0 (negative counts from the end), checked against the prompt."""
        pos = position if position >= 0 else self.n_pos + position
        if not 0 <= pos < self.n_pos:
            raise InvalidConfigError(f"position {position} is outside the prompt's {self.n_pos} tokens")
        return pos

    def ensure(self, names: Iterable[str]) -> Run:
        """Make sure the cache holds ``names``: missing hooks are recorded by running the same tokens with the
        same interventions again (stopping after the last layer they need). Returns the run itself."""
        m = self.model
        wanted = [m.resolve_hook_name(n) for n in names]
        missing = [n for n in dict.fromkeys(wanted) if n not in self.cache]
        if not missing:
            return self
        top = max(hook_layer(n, m.cfg.n_layers) for n in missing)
        stop = None if top >= m.cfg.n_layers else max(top + 1, 0)
        with torch.no_grad():
            _, extra = m.run_with_cache(
                self.ids, names=missing, interventions=list(self.interventions), stop_at_layer=stop
            )
        self.cache = ActivationCache({**dict(self.cache.items()), **dict(extra.items())}, m)
        return self

    def answer_id(self, answer: str | int | None, position: int = -1) -> int:
        """A vocabulary id for ``answer``; ``None`` means the run's own top prediction at ``position``."""
        if answer is not None:
            return token_id(self.model, answer)
        pos = self.position(position)
        if pos == self.n_pos - 1 and self.next_logits is not None:
            return int(self.next_logits.argmax())
        self.ensure(["ln_final.hook_normalized"])
        normalized = self.cache["ln_final.hook_normalized"][0, pos]
        return int(self.model.unembed(normalized).float().argmax())


def model_of(model_or_run: HookedModel | Run) -> HookedModel:
    return model_or_run.model if isinstance(model_or_run, Run) else model_or_run


def as_run(model_or_run: HookedModel | Run, prompt: str | torch.Tensor | None, names: Iterable[str]) -> Run:
    """The run an analysis works on: the given run (extended to ``names``), or a fresh run of ``prompt``."""
    if isinstance(model_or_run, Run):
        if prompt is not None:
            raise InvalidConfigError("give a Run, or a model and a prompt, not both")
        return model_or_run.ensure(names)
    if prompt is None:
        raise InvalidConfigError("give a prompt (or a Run in place of the model)")
    with torch.no_grad():
        return Run.of(model_or_run, prompt, names=names)
