"""Where the suffix sits: the rendered prompt split around it, the target, the tokens a suffix may use, and the
check that a candidate's rendered prompt re-tokenises to exactly the ids that are scored.

The scored sequence is ``before + suffix + after + target``. A candidate is only worth scoring when the text a
user would send (the prompt rendered with the decoded suffix) tokenises to ``before + suffix + after``: otherwise
its loss describes a prompt nobody can type, which is how a search "succeeds" on a suffix that then fails.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from neuroscope.errors import (
    EmptyPromptError,
    EmptyTargetError,
    InvalidConfigError,
    PromptTooLongError,
    SuffixLengthError,
    TargetTooLongError,
)

from .config import MAX_SUFFIX_LEN, AttackConfig

# Put where the suffix goes while the chat template renders; no template produces it on its own.
PLACEHOLDER = "\u2063NEUROSCOPE_SUFFIX\u2063"


class AttackProblem:
    """The fixed parts of one attack on one model: ``model`` is a :class:`~neuroscope.HookedModel`."""

    def __init__(self, model: Any, prompt: str, target: str, config: AttackConfig):
        if not target or not target.strip():
            raise EmptyTargetError()
        if not prompt or not prompt.strip():
            raise EmptyPromptError("The attack needs a prompt to append the suffix to.")
        self.model, self.tokenizer = model, model.tokenizer
        self.prompt, self.target = prompt, target
        tok = self.tokenizer
        self.chat = bool(getattr(tok, "chat_template", None)) if config.chat is None else config.chat
        if self.chat and not getattr(tok, "chat_template", None):
            raise InvalidConfigError(
                "chat=True, but this tokenizer has no chat template: use a plain prompt."
            )
        if self.chat:
            rendered = model.format_chat([{"role": "user", "content": prompt + PLACEHOLDER}])
            rendered = self._strip_bos_text(rendered)
            self.before_text, self.after_text = rendered.split(PLACEHOLDER)
        else:
            self.before_text, self.after_text = prompt, ""
        self.target_ids = self._ids(target, special=False)
        if len(self.target_ids) > config.max_new_tokens:
            raise TargetTooLongError(len(self.target_ids), config.max_new_tokens)
        self.before_ids = self._ids(self.before_text, special=True)
        self.after_ids = self._ids(self.after_text, special=False) if self.after_text else self.target_ids[:0]
        self.allowed = allowed_tokens(tok, model.cfg.d_vocab, config.ascii_only)
        self.init_ids = self._init_suffix(config)
        n = len(self.before_ids) + len(self.init_ids) + len(self.after_ids) + len(self.target_ids)
        if n > model.cfg.n_ctx:
            raise PromptTooLongError(n, model.cfg.n_ctx)

    # --- text <-> ids ---------------------------------------------------------------------------------
    def _strip_bos_text(self, text: str) -> str:
        """A template that writes the BOS text itself, with a tokenizer that also adds BOS, would give two."""
        bos, tok = self.tokenizer.bos_token, self.tokenizer
        if bos and text.startswith(bos):
            probe = tok("a")["input_ids"]
            if probe and probe[0] == tok.bos_token_id:
                return text[len(bos) :]
        return text

    def _ids(self, text: str, special: bool) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text, add_special_tokens=special)["input_ids"], dtype=torch.long)

    def _init_suffix(self, config: AttackConfig) -> torch.Tensor:
        if config.init_suffix is not None:
            ids = self._ids(config.init_suffix, special=False)
            if not 1 <= len(ids) <= MAX_SUFFIX_LEN:
                raise SuffixLengthError(len(ids), MAX_SUFFIX_LEN)
        else:
            ids = self._ids(" x" * config.suffix_len, special=False)[: config.suffix_len]
        if not bool(self.retokenizes(ids[None])[0]):
            raise InvalidConfigError(
                f"The initial suffix {self.decode(ids)!r} does not re-tokenise to itself inside the prompt; "
                "choose another init_suffix."
            )
        return ids

    def decode(self, suffix_ids: torch.Tensor) -> str:
        return self.tokenizer.decode([int(i) for i in suffix_ids])

    def render(self, suffix: torch.Tensor | str) -> str:
        """The text a user would send: the prompt (in its chat template) with the suffix in place."""
        text = suffix if isinstance(suffix, str) else self.decode(suffix)
        return self.before_text + text + self.after_text

    def prompt_with_suffix(self, suffix: torch.Tensor | str) -> str:
        """The user's message with the suffix appended (what goes in the chat's user turn)."""
        return self.prompt + (suffix if isinstance(suffix, str) else self.decode(suffix))

    def retokenizes(self, candidates: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: the rendered prompt of each ``[B, S]`` candidate tokenises to ``before+cand+after``."""
        tok = self.tokenizer
        texts = [self.render(t) for t in tok.batch_decode(candidates.tolist())]
        enc = tok(texts, add_special_tokens=True)["input_ids"]
        before, after = self.before_ids.tolist(), self.after_ids.tolist()
        rows = candidates.tolist()
        return torch.tensor([e == before + r + after for e, r in zip(enc, rows, strict=True)])

    def sequence(self, suffix: torch.Tensor) -> torch.Tensor:
        """``[S]`` suffix -> the full scored ids ``before + suffix + after + target``."""
        return torch.cat([self.before_ids, suffix, self.after_ids, self.target_ids])


def allowed_tokens(tokenizer: Any, d_vocab: int, ascii_only: bool) -> torch.Tensor:
    """``[d_vocab]`` bool: ids a suffix may use (never special tokens or ids beyond the tokenizer)."""
    return _allowed(tokenizer, d_vocab, ascii_only).clone()


@functools.lru_cache(maxsize=8)
def _allowed(tokenizer: Any, d_vocab: int, ascii_only: bool) -> torch.Tensor:
    n = min(len(tokenizer), d_vocab)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    mask = torch.zeros(d_vocab, dtype=torch.bool)
    for i, s in enumerate(texts):
        mask[i] = bool(s) and (not ascii_only or (s.isascii() and s.isprintable()))
    special = [i for i in tokenizer.all_special_ids if i is not None and 0 <= i < d_vocab]
    mask[special] = False
    return mask
