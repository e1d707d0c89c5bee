"""Labelled text sets for the downstream SAE benchmarks, built from local data only (no hub datasets).

- ``docs-section``: paragraphs of the prepared corpus (``data/corpus``: the prose of Debian's python3-doc),
  labelled by the documentation section of their page (the first folder of the page id: ``tutorial``,
  ``library``, ``reference``, ...). SAEBench's topic sets (ag_news, bias_in_bios professions) play this role.
- ``code-prose``: code samples (``<pre>`` blocks) against prose paragraphs of the same HTML pages. The prepared
  corpus keeps only prose, so both come from the python3-doc tree it was prepared from (``corpus.json``'s root).
- ``sentiment``: the shipped positive and negative sentences (``neuroscope/data/sentiment.json``).
- ``contrastive``: the shipped copying prompts (``contrastive_copying.json``), target against baseline.
- ``section-x-code`` (SCR only): tutorial against library reference, crossed with code against prose, so a
  probe can be trained on data where the two labels coincide (SAEBench's profession × gender).

Every set is sequence-level: one label per text; the benchmarks mean-pool a text's activations.
"""

from __future__ import annotations

import html.parser
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import InvalidConfigError, LabelledSetError, ResourceNotFoundError

# a class needs this many examples on each side of the split (a probe on fewer is noise)
MIN_TRAIN, MIN_TEST = 4, 2
DOC_SECTIONS = ("library", "whatsnew", "c-api", "howto", "reference", "tutorial", "faq")
DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Split:
    train: torch.Tensor  # indices into the set's texts
    test: torch.Tensor


@dataclass(frozen=True)
class LabelledSet:
    """Texts with one class label each (and, for SCR, a second binary label, ``spurious``)."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]
    source: str = ""
    spurious: tuple[int, ...] | None = None
    spurious_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise InvalidConfigError(
                f"labelled set {self.name!r}: {len(self.texts)} texts but {len(self.labels)} labels"
            )
        if any(not 0 <= y < len(self.classes) for y in self.labels):
            raise InvalidConfigError(
                f"labelled set {self.name!r}: a label is outside its {len(self.classes)} classes"
            )
        if self.spurious is not None and len(self.spurious) != len(self.texts):
            raise InvalidConfigError(
                f"labelled set {self.name!r}: the second label does not cover every text"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return {c: sum(1 for y in self.labels if y == i) for i, c in enumerate(self.classes)}

    def strata(self) -> dict[tuple[int, int], list[int]]:
        """Example indices by (label, second label); the second label is 0 when the set has none."""
        out: dict[tuple[int, int], list[int]] = {}
        for i, y in enumerate(self.labels):
            z = self.spurious[i] if self.spurious is not None else 0
            out.setdefault((y, z), []).append(i)
        return out

    def check(self, test_frac: float = 0.25, min_train: int = MIN_TRAIN, min_test: int = MIN_TEST) -> None:
        """Raise :class:`LabelledSetError` when the set cannot be split and probed."""
        present = [c for c, n in self.counts().items() if n > 0]
        if len(present) < 2:
            raise LabelledSetError(
                f"labelled set {self.name!r} has one class ({', '.join(present) or 'none'}): a probe needs "
                "examples of at least two classes."
            )
        if not 0 < test_frac < 1:
            raise InvalidConfigError(f"test_frac must be in (0, 1), got {test_frac}")
        for (y, z), idx in self.strata().items():
            n_test = max(min_test, round(len(idx) * test_frac))
            if len(idx) - n_test < min_train:
                what = self.classes[y] + (
                    f" / {self.spurious_classes[z]}" if self.spurious is not None else ""
                )
                raise LabelledSetError(
                    f"labelled set {self.name!r}: class {what!r} has {len(idx)} examples; the train/test split "
                    f"needs at least {min_train + min_test} ({min_train} to train, {min_test} to test)."
                )

    def split(
        self, test_frac: float = 0.25, seed: int = 0, min_train: int = MIN_TRAIN, min_test: int = MIN_TEST
    ) -> Split:
        """A seeded split, stratified by class (and by the second label when there is one)."""
        self.check(test_frac, min_train, min_test)
        gen = torch.Generator().manual_seed(seed)
        train, test = [], []
        for _, idx in sorted(self.strata().items()):
            perm = [idx[int(j)] for j in torch.randperm(len(idx), generator=gen)]
            n_test = max(min_test, round(len(idx) * test_frac))
            test += perm[:n_test]
            train += perm[n_test:]
        return Split(torch.tensor(sorted(train)), torch.tensor(sorted(test)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "n": len(self),
            "classes": self.counts(),
            "source": self.source,
        }
        if self.spurious is not None:
            out["second_label"] = {
                c: sum(1 for z in self.spurious if z == i) for i, c in enumerate(self.spurious_classes)
            }
        return out


def _sample(items: Sequence[Any], n: int, seed: int) -> list[Any]:
    items = list(items)
    if len(items) <= n:
        return items
    return random.Random(seed).sample(items, n)


# --- the documentation: prose paragraphs from the prepared corpus, code blocks from the HTML -----------------
def section_of(page_id: str) -> str:
    """``library/json.html`` -> ``library``; a page at the top of the tree -> ``root``."""
    return page_id.split("/", 1)[0] if "/" in page_id else "root"


def docs_section_set(
    corpus: str | Path = "data/corpus",
    sections: Sequence[str] = DOC_SECTIONS,
    per_class: int = 150,
    seed: int = 0,
) -> LabelledSet:
    from neuroscope.record.datasets import load_documents, resolve_data

    by_section: dict[str, list[str]] = {s: [] for s in sections}
    for split in ("train", "heldout"):
        for doc in load_documents(resolve_data(corpus, split)):
            s = section_of(doc.doc_id)
            if s in by_section:
                by_section[s] += [p for p in doc.text.split("\n\n") if p.strip()]
    present = [s for s in sections if by_section[s]]  # a corpus without some section has fewer classes
    texts, labels = [], []
    for i, s in enumerate(present):
        chosen = _sample(by_section[s], per_class, seed + i)
        texts += chosen
        labels += [i] * len(chosen)
    return LabelledSet(
        "docs-section",
        tuple(texts),
        tuple(labels),
        tuple(present),
        source=f"paragraphs of {corpus} by documentation section (page id's first folder)",
    )


class _PreParser(html.parser.HTMLParser):
    """The text of every ``<pre>`` block (code samples, with their ``>>>`` prompts)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._buf: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._depth += 1
            if self._depth == 1:
                self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self._depth:
            self._depth -= 1
            if self._depth == 0 and self._buf is not None:
                text = "".join(self._buf).strip("\n").rstrip()
                if len(text) >= 20:
                    self.blocks.append(text)
                self._buf = None

    def handle_data(self, data: str) -> None:
        if self._buf is not None:
            self._buf.append(data)


def docs_root(corpus: str | Path = "data/corpus") -> Path:
    """The python3-doc HTML tree the corpus was prepared from (its ``corpus.json``), else the newest installed."""
    from neuroscope.record.datasets import CORPUS_FILE, find_default_root

    info = Path(corpus) / CORPUS_FILE
    if info.is_file():
        root = Path(json.loads(info.read_text()).get("root", ""))
        if root.is_dir():
            return root
    return find_default_root()


@cache
def doc_blocks(root: str) -> tuple[tuple[str, str, str], ...]:
    """``(page id, "code" | "prose", text)`` for every code block and prose paragraph under ``root``."""
    from neuroscope.record.datasets import html_paragraphs

    base = Path(root)
    if not base.is_dir():
        raise ResourceNotFoundError(
            f"Documentation folder {base} does not exist (apt-get install -y python3-doc)."
        )
    out = []
    for page in sorted(p for p in base.rglob("*.html") if "_static" not in p.parts):
        rel = page.relative_to(base).as_posix()
        raw = page.read_text(encoding="utf-8", errors="replace")
        parser = _PreParser()
        parser.feed(raw)
        out += [(rel, "code", t) for t in parser.blocks]
        out += [(rel, "prose", t) for t in html_paragraphs(raw)]
    return tuple(out)


def code_prose_set(corpus: str | Path = "data/corpus", per_class: int = 200, seed: int = 0) -> LabelledSet:
    blocks = doc_blocks(str(docs_root(corpus)))
    code = _sample([t for _, k, t in blocks if k == "code"], per_class, seed)
    prose = _sample([t for _, k, t in blocks if k == "prose"], per_class, seed + 1)
    return LabelledSet(
        "code-prose",
        tuple(code + prose),
        tuple([0] * len(code) + [1] * len(prose)),
        ("code", "prose"),
        source=f"<pre> blocks against <p> paragraphs of {docs_root(corpus)}",
    )


def section_code_set(
    corpus: str | Path = "data/corpus",
    sections: tuple[str, str] = ("tutorial", "library"),
    per_quadrant: int = 120,
    seed: int = 0,
) -> LabelledSet:
    """SCR's set: target label = section (``sections``), second (spurious) label = code against prose."""
    blocks = doc_blocks(str(docs_root(corpus)))
    texts, labels, spurious = [], [], []
    for y, s in enumerate(sections):
        for z, kind in enumerate(("code", "prose")):
            pool = [t for page, k, t in blocks if k == kind and section_of(page) == s]
            chosen = _sample(pool, per_quadrant, seed + 2 * y + z)
            texts += chosen
            labels += [y] * len(chosen)
            spurious += [z] * len(chosen)
    return LabelledSet(
        "section-x-code",
        tuple(texts),
        tuple(labels),
        tuple(sections),
        source=f"{' / '.join(sections)} pages of {docs_root(corpus)}, code blocks and prose paragraphs",
        spurious=tuple(spurious),
        spurious_classes=("code", "prose"),
    )


# --- the shipped prompt sets -----------------------------------------------------------------------------------
def _read_json(name: str) -> dict[str, Any]:
    return json.loads((DATA_DIR / name).read_text())


def sentiment_set() -> LabelledSet:
    d = _read_json("sentiment.json")
    pos, neg = list(d["positive"]), list(d["negative"])
    return LabelledSet(
        "sentiment",
        tuple(pos + neg),
        tuple([0] * len(pos) + [1] * len(neg)),
        ("positive", "negative"),
        source="neuroscope/data/sentiment.json (positive, negative)",
    )


def contrastive_set() -> LabelledSet:
    d = _read_json("contrastive_copying.json")
    target = [e["prompt"] for e in d["target"]]
    baseline = [e["prompt"] if isinstance(e, dict) else str(e) for e in d["baseline"]]
    return LabelledSet(
        "contrastive",
        tuple(target + baseline),
        tuple([0] * len(target) + [1] * len(baseline)),
        ("target", "baseline"),
        source="neuroscope/data/contrastive_copying.json (target: the name can be copied; baseline)",
    )


def file_set(path: str | Path) -> LabelledSet:
    """A user's set: JSON Lines or a JSON list of ``{"text": ..., "label": ...}`` (see probes.read_labels)."""
    from neuroscope.analysis.probes import read_labels

    exs = read_labels(path)
    classes = tuple(sorted({lab for ex in exs for _, lab in ex.labels}))
    index = {c: i for i, c in enumerate(classes)}
    return LabelledSet(
        Path(path).stem,
        tuple(ex.text for ex in exs),
        tuple(index[ex.labels[0][1]] for ex in exs),
        classes,
        source=str(path),
    )


BUILTIN: dict[str, Callable[..., LabelledSet]] = {
    "docs-section": docs_section_set,
    "code-prose": code_prose_set,
    "sentiment": lambda corpus=None, per_class=None: sentiment_set(),
    "contrastive": lambda corpus=None, per_class=None: contrastive_set(),
}
PROBE_SETS = tuple(BUILTIN)


def load_set(spec: str, corpus: str | Path = "data/corpus", **size: int) -> LabelledSet:
    """A built-in set by name (``per_class`` sizes the docs sets), or a labelled file (``.json`` / ``.jsonl``)."""
    if spec in BUILTIN:
        return BUILTIN[spec](corpus=corpus, **size)
    if spec.endswith((".json", ".jsonl")):
        return file_set(spec)
    raise InvalidConfigError(
        f"Unknown labelled set {spec!r}: use one of {', '.join(PROBE_SETS)} or a .json/.jsonl file of "
        '{"text": ..., "label": ...} objects.'
    )
