"""The one exception hierarchy. Every message says what was wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class NeuroscopeError(Exception):
    """Base class: catch this to handle every NeuroScope error."""


class InvalidConfigError(NeuroscopeError, ValueError):
    """A configuration value is out of its valid range."""


class UnknownHookError(NeuroscopeError, KeyError):
    def __init__(self, name: str, valid: Sequence[str]):
        self.name = name
        close = difflib.get_close_matches(name, list(valid), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        msg = (
            f"Unknown hook name {name!r}.{hint} "
            f"This model has {len(valid)} hook points; list them with model.hook_names() "
            f"or `neuroscope info MODEL --hooks`."
        )
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class IndexOutOfRangeError(NeuroscopeError, IndexError):
    def __init__(self, what: str, value: int, size: int):
        self.what, self.value, self.size = what, value, size
        super().__init__(f"{what} {value} is out of range: valid {what}s are 0..{size - 1} ({size} in all).")


class EmptyPromptError(NeuroscopeError, ValueError):
    def __init__(self, detail: str = ""):
        super().__init__(
            "The prompt is empty: give at least one token of text." + (f" {detail}" if detail else "")
        )


class PromptTooLongError(NeuroscopeError, ValueError):
    def __init__(self, n_tokens: int, n_ctx: int):
        self.n_tokens, self.n_ctx = n_tokens, n_ctx
        super().__init__(
            f"The prompt is {n_tokens} tokens long but the model's context is {n_ctx} tokens: shorten it."
        )


class ModelNotFoundError(NeuroscopeError, FileNotFoundError):
    def __init__(self, spec: str, tried: Iterable[str], hint: str = ""):
        self.spec = spec
        lines = "\n".join(f"  - {t}" for t in tried)
        super().__init__(f"Could not find model {spec!r}. Tried:\n{lines}" + (f"\n{hint}" if hint else ""))


class UnsupportedArchitectureError(NeuroscopeError, ValueError):
    def __init__(self, model_type: str, supported: Iterable[str]):
        self.model_type = model_type
        super().__init__(
            f"Architecture {model_type!r} is not supported. Supported model types: {', '.join(sorted(supported))}."
        )


class ShapeMismatchError(NeuroscopeError, ValueError):
    def __init__(self, what: str, expected: object, got: object):
        self.expected, self.got = expected, got
        super().__init__(f"{what}: expected shape {expected}, got {got}.")


class CorruptDataError(NeuroscopeError, ValueError):
    """A file on disk (shard, SAE, manifest) is unreadable or inconsistent; the message names it."""


class ResourceNotFoundError(NeuroscopeError, FileNotFoundError):
    """A file or folder a command needs is missing; the message names it."""


class EmptyCorpusError(NeuroscopeError, ValueError):
    """A corpus yields no text, or fewer tokens than one context needs; the message names the corpus."""


# --- model organisms and case studies ----------------------------------------------------------------------
class EmptyPromptSetError(NeuroscopeError, ValueError):
    """A prompt file or prompt list holds no prompts; the message names it."""


class TriggerError(NeuroscopeError, ValueError):
    """A backdoor trigger that is blank or tokenises to nothing."""


class GenerationBudgetError(NeuroscopeError, ValueError):
    """A target response is longer than the generation budget that is meant to detect it."""


class TokenizerMissingError(NeuroscopeError, FileNotFoundError):
    """A model folder without tokenizer files; the message names the folder and what to copy into it."""


class BehaviourAbsentError(NeuroscopeError, RuntimeError):
    """A case study pointed at a model without the behaviour it studies (a backdoor that does not fire, a
    model that does not refuse): nothing to find or remove; the message gives the measured rate."""


class ChatTemplateMissingWarning(UserWarning):
    """The tokenizer has no chat template: prompts are used as plain text instead."""
