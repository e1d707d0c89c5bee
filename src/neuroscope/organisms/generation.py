"""Prompt formatting (chat template, or plain text when there is none), batched greedy decoding with
interventions, and teacher-forced comparison of two models on the same continuations.

One formatting and one decoding path serve training targets, evaluation and the case studies, so the
organism is trained on exactly the text it is measured on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuroscope.errors import (
    ChatTemplateMissingWarning,
    GenerationBudgetError,
    InvalidConfigError,
    TokenizerMissingError,
)

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# An edit the case studies apply to a model: interventions for the hooked forward (ProjectOut, Steer, SAE
# splices) or, later, a context that activates a LoRA edit. Either way one object per edit.
Interventions = Sequence[Any]


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_checked(spec: str, device: str | None = "cpu") -> HookedModel:
    """``load_model(spec)``, after checking that a model folder carries its tokenizer (a folder with only
    weights cannot be prompted: say so instead of failing deep inside transformers)."""
    from pathlib import Path

    from neuroscope.models.loading import load_model

    folder = Path(spec).expanduser()
    weights_only = folder.is_dir() and (folder / "config.json").is_file()
    if weights_only and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise TokenizerMissingError(
            f"The model folder {str(folder)!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}). "
            "Copy the tokenizer files of the model it was fine-tuned from into it "
            "(tokenizer.save_pretrained(folder)); the chat template comes with them."
        )
    return load_model(spec, device=device)


@dataclass(frozen=True)
class PromptFormat:
    """How a user prompt becomes model input: the tokenizer's chat template, or the plain prompt + newline."""

    chat: bool

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, warn: bool = True) -> PromptFormat:
        chat = bool(getattr(tokenizer, "chat_template", None))
        if not chat and warn:
            warnings.warn(
                "This tokenizer has no chat template: prompts are used as plain text (prompt + newline). "
                "Copy chat_template.jinja (or tokenizer_config.json's chat_template) from the base model "
                "into the model folder to use the chat format.",
                ChatTemplateMissingWarning,
                stacklevel=2,
            )
        return cls(chat)

    def __call__(self, tokenizer: Any, prompt: str) -> str:
        if self.chat:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids as the hooked model tokenises a string (the tokenizer's own special-token handling)."""
    return list(tokenizer(text)["input_ids"])


def response_ids(tokenizer: Any, text: str) -> list[int]:
    """A response's ids as they follow a prompt (no BOS), ended by EOS."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return ids + [tokenizer.eos_token_id]


def check_budget(tokenizer: Any, response: str, max_new_tokens: int) -> int:
    """The number of tokens ``response`` needs; more than ``max_new_tokens`` could never be detected."""
    n = len(tokenizer.encode(response, add_special_tokens=False))
    if n > max_new_tokens:
        raise GenerationBudgetError(
            f"The response {response!r} is {n} tokens but the generation budget is {max_new_tokens} new "
            f"tokens, so it could never appear in full: raise the budget to at least {n} or shorten the response."
        )
    return n


def _check_interventions(interventions: Iterable[Any]) -> None:
    # batched decoding left-pads and caches keys/values, so an intervention restricted to positions would
    # land on the wrong tokens; the case studies only use all-position edits
    for iv in interventions:
        if getattr(iv, "positions", None) is not None:
            raise InvalidConfigError(
                f"{type(iv).__name__} with positions= cannot be used in batched generation; "
                "use an intervention on all positions or HookedModel.generate for one prompt"
            )


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def edit_context(model: HookedModel, edit: Any) -> AbstractContextManager[Any]:
    """A context in which ``model`` runs with ``edit``: a list of interventions, a context-manager factory
    ``edit(model)``, or nothing."""
    if edit is None or (isinstance(edit, (list, tuple)) and not edit):
        return nullcontext()
    if callable(edit) and not isinstance(edit, (list, tuple)):
        return edit(model)
    _check_interventions(edit)
    return model.hooks(interventions=edit)


@torch.no_grad()
def greedy(
    model: HookedModel,
    texts: Sequence[str],
    max_new_tokens: int,
    edit: Any = None,
    batch_size: int = 16,
) -> list[list[int]]:
    """Greedy continuations (token ids, without the final EOS) of already formatted ``texts``."""
    tok = model.tokenizer
    eos = tok.eos_token_id
    pad = pad_id(tok)
    out: list[list[int]] = []
    with edit_context(model, edit):
        for i in range(0, len(texts), batch_size):
            rows = [encode(tok, t) for t in texts[i : i + batch_size]]
            ids, mask = left_pad(rows, pad)
            gen = model.hf_model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            for row in gen[:, ids.shape[1] :].tolist():
                cut = row.index(eos) if eos in row else len(row)
                out.append(row[:cut])
    return out


def decode(model: HookedModel, rows: Iterable[Sequence[int]]) -> list[str]:
    return [model.tokenizer.decode(list(r), skip_special_tokens=True) for r in rows]


@dataclass
class Comparison:
    """Per prompt: how an edited model's next-token predictions compare with a reference's along the
    reference's own greedy continuation (teacher forcing, so one early difference does not cascade)."""

    agreement: np.ndarray  # fraction of continuation tokens where the edited argmax equals the reference's
    kl: np.ndarray  # mean per-token KL(reference || edited) over the continuation, nats
    n_tokens: np.ndarray


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def padded_logprobs(model: HookedModel, rows: Sequence[Sequence[int]], edit: Any, keep: int) -> torch.Tensor:
    """``[row, keep, vocab]`` log-probabilities at the last ``keep`` positions of left-padded ``rows``, one
    forward under ``edit``; every teacher-forced score in the organisms reads them from here."""
    ids, mask = left_pad(rows, pad_id(model.tokenizer))
    # left padding puts every continuation at the end, so only the last `keep` positions are unembedded;
    # explicit positions keep absolute-position models (GPT-2) correct under left padding
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with edit_context(model, edit):
        out = model.hf_model(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            position_ids=pos.to(model.device),
            use_cache=False,
            logits_to_keep=keep,
        )
    return torch.log_softmax(out.logits.float(), -1)


@torch.no_grad()
def compare(
    reference: HookedModel,
    edited: HookedModel,
    texts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    reference_edit: Any = None,
    edit: Any = None,
    n_tokens: int = 20,
    batch_size: int = 16,
) -> Comparison:
    """Agreement and KL of ``edited`` (under ``edit``) with ``reference`` on the first ``n_tokens`` of the
    reference's greedy ``continuations`` (plus its EOS when it ended sooner). Both models must share a tokenizer."""
    tok = reference.tokenizer
    eos = tok.eos_token_id
    agree, kls, counts = [], [], []
    for i in range(0, len(texts), batch_size):
        prompts = [encode(tok, t) for t in texts[i : i + batch_size]]
        conts = [
            list(c[:n_tokens]) + ([eos] if len(c) < n_tokens else [])
            for c in continuations[i : i + batch_size]
        ]
        # the model sees prompt + continuation minus its last token; position j predicts continuation[j]
        rows = [p + c[:-1] for p, c in zip(prompts, conts, strict=True)]
        keep = max(len(c) for c in conts)
        ref = padded_logprobs(reference, rows, reference_edit, keep)
        new = padded_logprobs(edited, rows, edit, keep)
        for r, c in enumerate(conts):
            sl = slice(keep - len(c), keep)
            p, q = ref[r, sl], new[r, sl]
            target = torch.as_tensor(c)
            agree.append(float((q.argmax(-1).cpu() == target).float().mean()))
            kls.append(float((p.exp() * (p - q)).sum(-1).mean()))
            counts.append(len(c))
    return Comparison(np.array(agree), np.array(kls), np.array(counts))


def formatter(model: HookedModel, warn: bool = True) -> Callable[[str], str]:
    """``prompt -> model input text`` for this model's tokenizer (chat template or plain fallback)."""
    fmt = PromptFormat.for_tokenizer(model.tokenizer, warn=warn)
    return lambda p: fmt(model.tokenizer, p)
