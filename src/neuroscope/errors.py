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


class QuantizationUnavailableError(NeuroscopeError, ImportError):
    """A quantized load was asked for but no backend that can do it is installed; the message says which."""


class GradientsUnavailableError(NeuroscopeError, RuntimeError):
    """An analysis needs gradients through the model, and this quantized model's layers give none."""

    def __init__(self, what: str, mode: str, backend: str, reason: str = ""):
        self.what, self.mode, self.backend = what, mode, backend
        why = reason or "gives no gradient to its layers' inputs"
        super().__init__(
            f"{what} needs gradients through the model, but this {mode} model quantized by {backend} {why}. "
            "Load it without quantize (or through neuroscope.load_model with bitsandbytes, whose int8 and nf4 "
            "layers pass gradients) to run it."
        )


class RayUnavailableError(NeuroscopeError, ImportError):
    """Distributed recording was asked for but Ray Data is not installed, or the cluster cannot be reached."""


# --- edits and bundles (files from someone else are untrusted: each refusal has its own class) -------------
class RankOutOfRangeError(NeuroscopeError, ValueError):
    """A LoRA edit's rank is outside 4..16, or too small for the directions it must hold."""


class UnknownFeatureError(NeuroscopeError, IndexError):
    """A feature id that the SAE does not have; the message gives the valid range."""


class BundleError(NeuroscopeError, ValueError):
    """A bundle (saes/ + lora/ + manifest.json) was refused; nothing from it was attached."""


class UnsafePathError(BundleError):
    """A path in a bundle (or from the UI) escapes its root: ``..``, absolute, or a symlink out."""


class UnsafeFormatError(BundleError):
    """A weight file that is not safetensors (pickle, ``.bin``, ``.pt``): refused, never unpickled."""


class ChecksumMismatchError(BundleError):
    """A file's SHA-256 differs from the manifest's, or a file is missing from / unlisted in it."""


class ModelMismatchError(BundleError):
    """The bundle was made for other weights (refused unless forced); the message names that model."""


class BundleVersionError(BundleError):
    """The manifest's format or version is not one this NeuroScope reads."""


class HookWidthMismatchError(BundleError):
    """An SAE's width differs from the width of the hook it is attached to."""


class AdapterTargetError(BundleError):
    """A LoRA adapter targets modules the model lacks (or with shapes it does not have)."""


class TruncatedFileError(CorruptDataError):
    """A safetensors file whose header or data ends early."""


class ExportArchitectureError(UnsupportedArchitectureError):
    """The ONNX split exporter has not been tested on this architecture; the message lists those it has."""

    def __init__(self, model_type: str, tested: Iterable[str]):
        NeuroscopeError.__init__(
            self,
            f"The ONNX split exporter does not handle architecture {model_type!r}. "
            f"Tested architectures: {', '.join(sorted(tested))}.",
        )
        self.model_type = model_type


class ExportedLengthError(PromptTooLongError):
    """A prompt is longer than the sequence length an ONNX export accepts."""

    def __init__(self, n_tokens: int, max_length: int):
        NeuroscopeError.__init__(
            self,
            f"The prompt is {n_tokens} tokens long but this ONNX export accepts at most {max_length} "
            "(manifest max_length; re-export with a larger --max-length).",
        )
        self.n_tokens, self.n_ctx = n_tokens, max_length


class EmptyTargetError(NeuroscopeError, ValueError):
    def __init__(self) -> None:
        super().__init__("The attack target is empty: give the text the model should start its answer with.")


class TargetTooLongError(NeuroscopeError, ValueError):
    def __init__(self, n_tokens: int, budget: int):
        self.n_tokens, self.budget = n_tokens, budget
        super().__init__(
            f"The target is {n_tokens} tokens long but the generation budget is {budget} new tokens: "
            f"shorten the target or raise max_new_tokens to at least {n_tokens}."
        )


class SuffixLengthError(NeuroscopeError, ValueError):
    def __init__(self, length: int, limit: int):
        self.length, self.limit = length, limit
        super().__init__(f"Suffix length {length} is out of range: give 1..{limit} tokens.")


class SearchWidthError(NeuroscopeError, ValueError):
    def __init__(self, what: str, value: int):
        self.what, self.value = what, value
        super().__init__(f"{what} {value} is out of range: it must be at least 1.")


class InputGradientsUnavailableError(GradientsUnavailableError):
    """The model gives no gradient with respect to its input embeddings, which GCG's candidate ranking needs."""

    def __init__(self, detail: str = ""):
        NeuroscopeError.__init__(
            self,
            "This model gives no gradient of the loss with respect to its input embeddings, which `gcg` needs"
            + (f" ({detail})" if detail else "")
            + ". Use a gradient-free method instead: --method genetic or --method gradient-free.",
        )


class SearchBusyError(NeuroscopeError, RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "A search is already running on this server (one at a time): stop it or wait for it to finish."
        )


class SAENotInSuiteError(NeuroscopeError, KeyError):
    """A graph needs an SAE at a layer the suite does not have; the message lists the layers it has."""

    def __init__(self, layer: int, available: Sequence[int], why: str = ""):
        self.layer, self.available = layer, list(available)
        have = ", ".join(str(l) for l in self.available) or "none"
        super().__init__(
            f"The SAE suite has no SAE at layer {layer}{' (' + why + ')' if why else ''}; it has layers {have}. "
            "Train one with `neuroscope train-sae-suite --layers ...` or lower --depth."
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SAEMismatchError(NeuroscopeError, ValueError):
    """An SAE was trained for another model, another hook or another width than the one asked for."""


class GraphDepthError(InvalidConfigError):
    """A provenance depth outside 1..4."""

    def __init__(self, depth: int, lo: int = 1, hi: int = 4):
        self.depth = depth
        super().__init__(f"depth must be in {lo}..{hi} layers upstream, got {depth}.")


class TaskFileError(NeuroscopeError, ValueError):
    """A contrastive task file is malformed (missing fields, clean/corrupted of different token lengths,
    answers that are not single tokens); the message names the pair."""


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


class LiveEditsAttachedError(NeuroscopeError, ValueError):
    """The model carries live LoRA edits (the feature laboratory's peft layers, chosen per request row), which
    an exporter cannot trace as a plain model; export a freshly loaded or merged model instead."""


class SAEArchitectureError(InvalidConfigError):
    """An SAE architecture's own parameters (threshold, bandwidth, prefixes, ...) are invalid."""


class MatryoshkaPrefixError(SAEArchitectureError):
    """Matryoshka prefix widths that are missing, not strictly increasing, or outside 1..d_sae."""


# --- SAE benchmarks ----------------------------------------------------------------------------------------
class SyntheticConfigError(InvalidConfigError):
    """A synthetic ground-truth benchmark config with an impossible or unknown value; the message names the
    config, the field, the value and the range it must lie in."""


class FiringProbabilityError(SyntheticConfigError):
    """A firing probability (``max_prob``, ``min_prob``, ``probability``) outside [0, 1], or a minimum above
    its maximum."""


class DictionaryOverflowError(SyntheticConfigError):
    """More active features, hierarchy nodes or nested widths than the dictionary that must hold them (a
    target L0 above the SAE width, a hierarchy needing more features than the synthetic model has)."""


class BenchDependencyError(NeuroscopeError, ImportError):
    """A benchmark needs an optional package (sae-lens, scipy) that is not installed; the message says how to
    install it."""


# --- the workbench's prepared SAE suite --------------------------------------------------------------------
class PrepareDiskSpaceError(NeuroscopeError, OSError):
    """Not enough free disk space to prepare the workbench's default SAE suite; the message says how much
    it needs, where, and how to go on without it."""

    def __init__(self, where: str, need: int, free: int | None):
        self.where, self.need, self.free = where, need, free
        have = f"{free / 1e6:.0f} MB are free" if free is not None else "the disk is full"
        super().__init__(
            f"Not enough disk space to prepare the SAE suite in {where}: it needs about {need / 1e6:.0f} MB and "
            f"{have}. Free some space (or point NEUROSCOPE_PREPARE_DIR elsewhere) and restart, or start with "
            "--no-prepare; everything that needs no SAE works meanwhile."
        )


class PrepareModelChangedError(NeuroscopeError, RuntimeError):
    """The preparing process loaded other weights than the server that started it."""


class DistillationFailedError(NeuroscopeError, RuntimeError):
    """A distilled LoRA diverged (a non-finite loss), did not get closer to the hooked edit than doing
    nothing, or moved clean text more than its budget allows. ``figures`` holds the measured numbers; no
    adapter is returned and nothing stays attached to the model."""

    def __init__(self, message: str, figures: dict | None = None):
        super().__init__(message)
        self.figures = dict(figures or {})


# --- model diffing ---------------------------------------------------------------------------------------
class BaseModelMismatchError(NeuroscopeError, ValueError):
    """A base model that cannot be diffed against the tuned model: another architecture, tokenizer or width.
    Raised before any work; ``kind`` is ``architecture``, ``width`` or ``tokenizer`` and the message says
    what differs."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind
        super().__init__(
            f"The base model has another {kind} than the tuned model: {detail}. Diff a fine-tune against the "
            "model it was fine-tuned from (same architecture, widths and tokenizer)."
        )


class PromptSetMissingError(NeuroscopeError, ValueError):
    """A prompt file without one of the prompt kinds the analysis needs (``triggered`` or ``clean``); the
    message names the missing kind and the file."""


class PromptSetKindMissingError(EmptyPromptSetError):
    """An evaluation prompt file without its ``triggered`` or its ``clean`` prompts; the message says which."""


class NoPromptSetError(EmptyPromptSetError):
    """The evaluation panel was asked for the organism's prompts on a server that serves no organism."""


class LabelledSetError(InvalidConfigError):
    """A labelled set for the SAE benchmarks cannot be probed: it has one class, or a class has too few
    examples for the train/test split; the message names the set, the class and the count."""


class TranscoderMismatchError(SAEMismatchError):
    """A transcoder set was trained for another model, another width or other hooks than the one asked for
    (or its files disagree with its manifest); the message names what differs."""


# --- attribution graphs on transcoders -------------------------------------------------------------------
class ThresholdError(InvalidConfigError):
    """A pruning threshold outside (0, 1]; the message names the threshold and the value given."""

    def __init__(self, name: str, value: float):
        self.name, self.value = name, value
        super().__init__(
            f"{name} must be in (0, 1] (a share of the total influence to keep), got {value}: use e.g. 0.8."
        )


class GraphPromptTooLongError(PromptTooLongError):
    """A prompt longer than an attribution graph's token limit (its memory grows with the prompt)."""

    def __init__(self, n_tokens: int, limit: int):
        self.n_tokens, self.n_ctx = n_tokens, limit
        ValueError.__init__(
            self,
            f"The prompt is {n_tokens} tokens long (with the prepended special token) but attribution graphs "
            f"are limited to {limit} tokens: shorten it, or raise max_tokens if memory allows.",
        )
