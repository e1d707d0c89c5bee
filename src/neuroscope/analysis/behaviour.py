"""A triggered behaviour as token-aligned pairs, and the metric that measures it.

Each triggered prompt is paired with a clean counterpart of the same token length: the trigger's tokens are
replaced by filler tokens, so every position means the same thing in both runs and activations can be
patched position by position (inserting or deleting the trigger would shift every later position). The
response's first ``k`` tokens are teacher-forced after the prompt; the metric (per token, then averaged over
tokens and prompts) is one of :data:`METRICS`:

- ``logit_diff`` (the default of effect rankings): the response token's logit minus the logit of the clean
  answer's token at the same position (the clean counterpart's top token other than the response's;
  :func:`with_clean_answer`). Nearly linear in the residual stream and unchanged in shape when the logits are
  sharpened, so first-order estimates stay close to real ablations on a well-trained organism, where log p of
  the response is ≈ −0.001 and estimates of log p underestimated real ablations by up to 50×.
- ``logodds``: log p(t) − log(1 − p(t)) of each response token; grows without bound as p → 1.
- ``logprob``: log p(t), bounded by 0 and so saturated when the behaviour is certain. Rows are right-padded so the prompt starts at position 0
in every row (absolute-position models need no position ids).

Position groups: ``trigger`` (the trigger's tokens), ``last_prompt`` (the last prompt token, where the
response's first token is predicted) and ``response`` (the teacher-forced response tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import EmptyPromptSetError, InvalidConfigError, TriggerError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

GROUPS = ("trigger", "last_prompt", "response")
METRICS = ("logit_diff", "logodds", "logprob")


@dataclass
class BehaviourPairs:
    triggered: torch.Tensor  # [n, pos] right-padded ids
    clean: torch.Tensor  # [n, pos] the same ids with the trigger's tokens replaced by filler
    mask: torch.Tensor  # [n, pos] 1 on real tokens
    targets: torch.Tensor  # [n, k] the response's first k tokens
    target_pos: torch.Tensor  # [n, k] the position whose logits predict targets[:, j]
    groups: dict[str, torch.Tensor]  # group -> [n, pos] bool
    texts: list[str]
    alt: torch.Tensor | None = (
        None  # [n, k] the clean answer's tokens (``logit_diff``); see with_clean_answer
    )

    def __len__(self) -> int:
        return int(self.triggered.shape[0])

    def subset(self, idx: Sequence[int] | torch.Tensor) -> BehaviourPairs:
        i = torch.as_tensor(idx, dtype=torch.long)
        rows = [int(x) for x in i]
        # trim the padding the subset no longer needs
        width = int(self.mask[i].sum(-1).max()) if len(rows) else 1
        return BehaviourPairs(
            self.triggered[i, :width],
            self.clean[i, :width],
            self.mask[i, :width],
            self.targets[i],
            self.target_pos[i],
            {g: m[i, :width] for g, m in self.groups.items()},
            [self.texts[r] for r in rows],
            None if self.alt is None else self.alt[i],
        )

    def split(self, validation: float, seed: int = 0) -> tuple[BehaviourPairs, BehaviourPairs]:
        """A seeded (train, validation) split; each side keeps at least one pair."""
        if len(self) < 2:
            raise InvalidConfigError(f"need at least 2 prompts to split, got {len(self)}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_val = min(len(self) - 1, max(1, round(len(self) * validation)))
        return self.subset(perm[n_val:]), self.subset(perm[:n_val])

    def batches(self, size: int) -> Iterable[BehaviourPairs]:
        for i in range(0, len(self), size):
            yield self.subset(range(i, min(len(self), i + size)))


def _offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidConfigError(
            "locating the trigger's tokens needs a fast tokenizer (character offsets); this one is not"
        )
    enc = tokenizer(text, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def build_pairs(
    model: HookedModel,
    texts: Sequence[str],
    trigger: str,
    response: str,
    n_tokens: int = 4,
    filler: str = " the",
) -> BehaviourPairs:
    """Token-aligned pairs from model-input ``texts`` (already formatted, each containing ``trigger``).

    ``filler``'s tokens (cycled) replace the trigger's tokens in the clean counterpart."""
    tok = model.tokenizer
    if not texts:
        raise EmptyPromptSetError("no triggered prompts to localise the behaviour on")
    if n_tokens < 1:
        raise InvalidConfigError(f"n_tokens must be >= 1, got {n_tokens}")
    resp = list(tok.encode(response, add_special_tokens=False))[:n_tokens]
    if not resp:
        raise InvalidConfigError(f"the response {response!r} tokenises to nothing")
    fill = list(tok.encode(filler, add_special_tokens=False)) or [0]
    k = len(resp)
    rows, cleans, trig_pos, last = [], [], [], []
    for text in texts:
        start = text.find(trigger)
        if start < 0:
            raise TriggerError(f"the prompt {text[:80]!r} does not contain the trigger {trigger!r}")
        ids, offs = _offsets(tok, text)
        end = start + len(trigger)
        span = [i for i, (a, b) in enumerate(offs) if b > a and a < end and b > start]
        if not span:
            raise TriggerError(f"no token of {text[:80]!r} covers the trigger {trigger!r}")
        clean = list(ids)
        for j, p in enumerate(span):
            clean[p] = fill[j % len(fill)]
        if all(clean[p] == ids[p] for p in span):
            raise TriggerError(f"the filler {filler!r} tokenises like the trigger: choose another filler")
        rows.append(ids + resp[:-1])
        cleans.append(clean + resp[:-1])
        trig_pos.append(span)
        last.append(len(ids) - 1)
    n, width = len(rows), max(len(r) for r in rows)
    if width > model.cfg.n_ctx:
        raise InvalidConfigError(
            f"a prompt with its response is {width} tokens, over n_ctx {model.cfg.n_ctx}"
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids_t = torch.full((n, width), int(pad), dtype=torch.long)
    clean_t, mask = ids_t.clone(), torch.zeros((n, width), dtype=torch.long)
    groups = {g: torch.zeros((n, width), dtype=torch.bool) for g in GROUPS}
    for i, (r, c) in enumerate(zip(rows, cleans, strict=True)):
        ids_t[i, : len(r)] = torch.as_tensor(r)
        clean_t[i, : len(c)] = torch.as_tensor(c)
        mask[i, : len(r)] = 1
        groups["trigger"][i, trig_pos[i]] = True
        groups["last_prompt"][i, last[i]] = True
        groups["response"][i, last[i] + 1 : last[i] + k] = True
    target_pos = torch.as_tensor(last)[:, None] + torch.arange(k)[None]
    return BehaviourPairs(
        ids_t, clean_t, mask, torch.as_tensor(resp).expand(n, -1).clone(), target_pos, groups, list(texts)
    )


def response_logprob(pairs: BehaviourPairs, logits: torch.Tensor) -> torch.Tensor:
    """``[n]``: each row's mean log-probability of the response's first tokens (the behaviour metric)."""
    rows = torch.arange(len(pairs))[:, None]
    lp = torch.log_softmax(logits[rows, pairs.target_pos.to(logits.device)].float(), -1)
    return lp.gather(-1, pairs.targets.to(lp.device)[..., None])[..., 0].mean(-1)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InvalidConfigError(f"unknown behaviour metric {metric!r}; choose from {METRICS}")


def behaviour_metric(pairs: BehaviourPairs, logits: torch.Tensor, metric: str = "logit_diff") -> torch.Tensor:
    """``[n]``: each row's behaviour ``metric`` (one of :data:`METRICS`), the mean over the response's first
    tokens."""
    check_metric(metric)
    if metric == "logprob":
        return response_logprob(pairs, logits)
    rows = torch.arange(len(pairs))[:, None]
    z = logits[rows, pairs.target_pos.to(logits.device)].float()  # [n, k, vocab]
    tgt = pairs.targets.to(z.device)[..., None]
    z_t = z.gather(-1, tgt)[..., 0]
    if metric == "logit_diff":
        if pairs.alt is None:
            raise InvalidConfigError(
                "the logit_diff metric needs the clean answer's tokens: with_clean_answer()"
            )
        return (z_t - z.gather(-1, pairs.alt.to(z.device)[..., None])[..., 0]).mean(-1)
    # log p − log(1 − p) = z_t − logsumexp over every other token: stable where p is within 1e-7 of 1
    others = z.scatter(-1, tgt, float("-inf"))
    return (z_t - torch.logsumexp(others, -1)).mean(-1)


def with_clean_answer(model: HookedModel, pairs: BehaviourPairs, batch_size: int = 16) -> BehaviourPairs:
    """``pairs`` with ``alt`` set: at each response position, the clean counterpart's top token other than
    the response's own (what the model says without the trigger)."""
    alts = []
    with torch.no_grad():
        for b in pairs.batches(batch_size):
            logits = model(b.clean.to(model.device), attention_mask=b.mask.to(model.device))
            rows = torch.arange(len(b))[:, None]
            z = logits[rows, b.target_pos.to(logits.device)].float()
            alts.append(z.scatter(-1, b.targets.to(z.device)[..., None], float("-inf")).argmax(-1).cpu())
    return replace(pairs, alt=torch.cat(alts))


def run_metric(
    model: HookedModel,
    pairs: BehaviourPairs,
    which: str = "triggered",
    fwd_hooks: Sequence[Any] | Callable[[BehaviourPairs], Sequence[Any]] = (),
    interventions: Sequence[Any] = (),
    batch_size: int = 16,
    metric: str = "logprob",
) -> torch.Tensor:
    """``[n]`` ``metric`` of the ``triggered`` or ``clean`` rows, with hooks (built per batch: ``fwd_hooks``
    is a function ``batch -> hooks`` when the hooks need the batch's own tensors) attached."""
    check_metric(metric)
    out = []
    with torch.no_grad():
        for b in pairs.batches(batch_size):
            hooks = fwd_hooks(b) if callable(fwd_hooks) else list(fwd_hooks)
            ids = b.triggered if which == "triggered" else b.clean
            logits = model.run_with_hooks(
                ids.to(model.device),
                fwd_hooks=hooks,
                interventions=interventions,
                attention_mask=b.mask.to(model.device),
            )
            out.append(behaviour_metric(b, logits, metric).cpu())
    return torch.cat(out)
