"""Induction-head formation over a checkpoint series: per-head scores, in-context loss and training loss by step."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroscope.train.config import TrainConfig
from neuroscope.train.data import repeated_tokens
from neuroscope.train.loop import CONFIG_FILE, LOSS_LOG
from neuroscope.train.metrics import head_scores, in_context_loss
from neuroscope.train.model import list_checkpoints


@dataclass
class FormationResult:
    """Everything measured at each checkpoint, in step order. Score arrays are ``[checkpoint][layer][head]``."""

    steps: list[int]
    induction: list[list[list[float]]]
    prev_token: list[list[list[float]]]
    first_half_loss: list[float]
    repeated_half_loss: list[float]
    train_loss: list[float | None]
    seq_len: int
    n_sequences: int
    induction_head: tuple[int, int]
    prev_token_head: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def head_series(self, head: tuple[int, int], which: str = "induction") -> list[float]:
        table = self.induction if which == "induction" else self.prev_token
        return [s[head[0]][head[1]] for s in table]

    def in_context_ratio(self) -> list[float]:
        return [r / f for r, f in zip(self.repeated_half_loss, self.first_half_loss, strict=True)]

    def rise(self) -> dict[str, Any]:
        """Where the induction head's score and the in-context loss ratio each cover 10 % → 90 % of their change."""
        score = self.head_series(self.induction_head)
        ratio = self.in_context_ratio()
        s_span = _span(self.steps, score)
        r_span = _span(self.steps, [-r for r in ratio])
        jumps = [b - a for a, b in zip(score, score[1:], strict=False)]
        k = max(range(len(jumps)), key=jumps.__getitem__) if jumps else 0
        return {
            "score_first": score[0],
            "score_last": score[-1],
            "score_last_over_first": score[-1] / max(score[0], 1e-9),
            "score_span_10_90": s_span,
            "ratio_span_10_90": r_span,
            "largest_jump": {
                "from_step": self.steps[k],
                "to_step": self.steps[min(k + 1, len(self.steps) - 1)],
                "delta": jumps[k] if jumps else 0.0,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "induction": self.induction,
            "prev_token": self.prev_token,
            "first_half_loss": self.first_half_loss,
            "repeated_half_loss": self.repeated_half_loss,
            "train_loss": self.train_loss,
            "seq_len": self.seq_len,
            "n_sequences": self.n_sequences,
            "induction_head": list(self.induction_head),
            "prev_token_head": list(self.prev_token_head),
            "rise": self.rise(),
            **self.extra,
        }


def _span(steps: list[int], values: list[float]) -> dict[str, int | None]:
    """First steps at which ``values`` has covered 10 % and 90 % of its total change from the first checkpoint."""
    total = values[-1] - values[0]
    if total <= 0:
        return {"start": None, "end": None, "width": None}

    def first(frac: float) -> int:
        return next(s for s, v in zip(steps, values, strict=True) if v - values[0] >= frac * total)

    start, end = first(0.1), first(0.9)
    return {"start": start, "end": end, "width": end - start}


def _smoothed_train_loss(run: Path, steps: list[int], window: int = 20) -> list[float | None]:
    log = run / LOSS_LOG
    if not log.is_file():
        return [None] * len(steps)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r["loss"] for r in rows}
    out: list[float | None] = []
    for s in steps:
        vals = [by_step[t] for t in range(max(1, s - window + 1), s + 1) if t in by_step]
        out.append(sum(vals) / len(vals) if vals else None)
    return out


def analyse_checkpoints(
    run: str | Path,
    n_sequences: int = 64,
    seq_len: int | None = None,
    seed: int = 1234,
    progress: bool = False,
) -> FormationResult:
    """Load each checkpoint of a run folder and measure it on the same BOS + X + X batch."""
    from tqdm.auto import tqdm

    import neuroscope

    run = Path(run)
    cfg = TrainConfig.load(run / CONFIG_FILE) if (run / CONFIG_FILE).is_file() else TrainConfig()
    seq_len = seq_len or cfg.eval_seq_len
    ckpts = list_checkpoints(run)
    tokens = None
    steps, ind, prev, first, rep = [], [], [], [], []
    for step, folder in tqdm(ckpts, disable=not progress, desc="checkpoints"):
        model = neuroscope.load_model(str(folder), device="cpu")
        if tokens is None:
            tokens = repeated_tokens(n_sequences, seq_len, cfg.vocab, model.tokenizer.bos_token_id, seed)
        i_score, p_score = head_scores(model, tokens)
        loss = in_context_loss(model, tokens, seq_len)
        steps.append(step)
        ind.append(i_score.tolist())
        prev.append(p_score.tolist())
        first.append(loss.first_half)
        rep.append(loss.repeated_half)
    final_ind = torch.tensor(ind[-1])
    final_prev = torch.tensor(prev[-1])
    n_layers = final_ind.shape[0]
    # the induction head is the top scorer past layer 0; the prev-token head the top scorer in the layers below it
    later = final_ind[1:] if n_layers > 1 else final_ind
    li, hi = divmod(int(later.argmax()), later.shape[1])
    ind_head = (li + (1 if n_layers > 1 else 0), hi)
    below = final_prev[: max(ind_head[0], 1)]
    lp, hp = divmod(int(below.argmax()), below.shape[1])
    return FormationResult(
        steps=steps,
        induction=ind,
        prev_token=prev,
        first_half_loss=first,
        repeated_half_loss=rep,
        train_loss=_smoothed_train_loss(run, steps),
        seq_len=seq_len,
        n_sequences=n_sequences,
        induction_head=ind_head,
        prev_token_head=(lp, hp),
    )
