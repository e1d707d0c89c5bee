"""Text corpora: local files to documents, documents to fixed-length token contexts.

The default offline corpus is the English prose of the Python documentation as Debian ships it
(apt package ``python3-doc``, which installs ``/usr/share/doc/python3.X/html``). Only ``<p>`` paragraphs
are kept, so code samples, tables and navigation are dropped; each HTML page becomes one document, and a
page goes to the held-out split when the SHA-256 of its relative path falls in the held-out bucket, so the
split is the same on every machine and does not depend on file order or on how many pages there are.
"""

from __future__ import annotations

import glob
import hashlib
import html.parser
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from neuroscope.errors import EmptyCorpusError, InvalidConfigError, ResourceNotFoundError

DEFAULT_DOC_GLOB = "/usr/share/doc/python3.*/html"
INSTALL_HINT = "Install the default corpus source with: apt-get install -y python3-doc"
CORPUS_FILE = "corpus.json"
# relative to the working directory, like the Makefile's `corpus` target that fills it
DEFAULT_CORPUS_DIR = "data/corpus"


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


@dataclass(frozen=True)
class CorpusInfo:
    source: str
    apt_package: str
    root: str
    heldout_fraction: float
    n_train_docs: int
    n_heldout_docs: int
    train_chars: int
    heldout_chars: int
    train_sha256: str
    heldout_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the default corpus ------------------------------------------------------------------------------------
class _ParagraphParser(html.parser.HTMLParser):
    """Collect the text of ``<p>`` elements that are not inside ``<pre>``/navigation/footers."""

    SKIP = {"pre", "script", "style", "nav", "footer"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "p":
            self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "p" and self._buf is not None:
            text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
            # very short paragraphs are headings, labels and "Note" markers rather than prose
            if len(text.split()) >= 6:
                self.paragraphs.append(text)
            self._buf = None

    def handle_data(self, data: str) -> None:
        if self._buf is not None and not self._skip:
            self._buf.append(data)


def html_paragraphs(raw: str) -> list[str]:
    parser = _ParagraphParser()
    parser.feed(raw)
    parser.close()
    return parser.paragraphs


def find_default_root() -> Path:
    """The newest ``python3.X`` HTML tree that really holds the docs (several ``*/html`` are symlinks to it,
    and other packages ship near-empty ``html`` folders)."""
    found: dict[Path, tuple[int, ...]] = {}
    for p in glob.glob(DEFAULT_DOC_GLOB):
        m = re.search(r"python(\d+)\.(\d+)/html$", p)
        real = Path(p).resolve()
        if m and (real / "library").is_dir():
            found[real] = max(found.get(real, (0, 0)), (int(m.group(1)), int(m.group(2))))
    if not found:
        raise ResourceNotFoundError(f"No Python documentation found at {DEFAULT_DOC_GLOB}. {INSTALL_HINT}")
    return max(found, key=lambda r: found[r])


def is_heldout(key: str, fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return bucket < fraction


def prepare_corpus(
    out: str | os.PathLike, root: str | os.PathLike | None = None, heldout_fraction: float = 0.1
) -> CorpusInfo:
    """Write ``train.jsonl``, ``heldout.jsonl`` and ``corpus.json`` under ``out`` (deterministic)."""
    if not 0.0 < heldout_fraction < 1.0:
        raise InvalidConfigError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    root_path = Path(root) if root is not None else find_default_root()
    if not root_path.is_dir():
        raise ResourceNotFoundError(f"Corpus source folder {root_path} does not exist. {INSTALL_HINT}")
    pages = sorted(p for p in root_path.rglob("*.html") if "_static" not in p.parts)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "heldout": []}
    for page in pages:
        rel = page.relative_to(root_path).as_posix()
        paras = html_paragraphs(page.read_text(encoding="utf-8", errors="replace"))
        if not paras:
            continue
        split = "heldout" if is_heldout(rel, heldout_fraction) else "train"
        splits[split].append({"id": rel, "text": "\n\n".join(paras)})
    if not splits["train"] or not splits["heldout"]:
        raise EmptyCorpusError(f"No prose paragraphs found under {root_path}. {INSTALL_HINT}")
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    digests, chars = {}, {}
    for split, docs in splits.items():
        blob = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
        _atomic_write(out_path / f"{split}.jsonl", blob)
        digests[split], chars[split] = hashlib.sha256(blob).hexdigest(), sum(len(d["text"]) for d in docs)
    info = CorpusInfo(
        source="python-docs",
        apt_package="python3-doc",
        root=str(root_path),
        heldout_fraction=heldout_fraction,
        n_train_docs=len(splits["train"]),
        n_heldout_docs=len(splits["heldout"]),
        train_chars=chars["train"],
        heldout_chars=chars["heldout"],
        train_sha256=digests["train"],
        heldout_sha256=digests["heldout"],
    )
    _atomic_write(out_path / CORPUS_FILE, json.dumps(info.to_dict(), indent=2).encode())
    return info


def ensure_default_corpus(out: str | os.PathLike = DEFAULT_CORPUS_DIR) -> Path:
    """The prepared default corpus at ``out``, preparing it first when it is absent."""
    path = Path(out)
    if not (path / CORPUS_FILE).exists():
        prepare_corpus(path)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- reading text --------------------------------------------------------------------------------------
TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


def resolve_data(path: str | os.PathLike, split: str = "train") -> Path:
    """A prepared corpus folder means its ``{split}.jsonl``; anything else is used whole, as the train split
    (asking for ``heldout`` of plain text is refused rather than silently recording the same text)."""
    p = Path(path)
    if not p.exists():
        raise ResourceNotFoundError(
            f"Corpus path {p} does not exist. Prepare one with `neuroscope corpus prepare`."
        )
    if p.is_dir() and (p / CORPUS_FILE).exists():
        if split not in ("train", "heldout"):
            raise InvalidConfigError(f"split must be 'train' or 'heldout', got {split!r}")
        return p / f"{split}.jsonl"
    if split != "train":
        raise InvalidConfigError(
            f"{p} is not a prepared corpus (no {CORPUS_FILE}), so it has no {split!r} split; "
            "give the held-out text as its own --data, or prepare a corpus with `neuroscope corpus prepare`."
        )
    return p


def load_documents(path: str | os.PathLike) -> Iterator[Document]:
    """Documents from a ``.txt``/``.md`` file (one document), ``.jsonl`` (``text`` field), ``.parquet``
    (``text`` column) or a folder of those (sorted, recursive)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
        if not files:
            raise EmptyCorpusError(
                f"The corpus folder {p} holds no {'/'.join(TEXT_SUFFIXES)} files: give a folder or file with text."
            )
    elif p.exists():
        if p.suffix not in TEXT_SUFFIXES:
            raise InvalidConfigError(f"Corpus file {p} is not one of {', '.join(TEXT_SUFFIXES)}.")
        files = [p]
    else:
        raise ResourceNotFoundError(f"Corpus path {p} does not exist.")
    for f in files:
        if f.suffix == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if line.strip():
                        rec = json.loads(line)
                        yield Document(str(rec.get("id", f"{f.name}:{i}")), rec["text"])
        elif f.suffix == ".parquet":
            import pyarrow.parquet as pq

            texts = pq.read_table(f, columns=["text"]).column("text").to_pylist()
            for i, t in enumerate(texts):
                yield Document(f"{f.name}:{i}", t or "")
        else:
            yield Document(f.name, f.read_text(encoding="utf-8", errors="replace"))


DOC_BOUNDARY = "<|endoftext|>"


def _token_id(tokenizer: Any, token: str) -> int | None:
    # an absent token maps to unk, so check the round trip (SmolLM2's unk *is* <|endoftext|>)
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tokenizer.convert_ids_to_tokens(int(tid)) != token:
        return None
    return int(tid)


def context_special_ids(tokenizer: Any) -> tuple[int, int | None]:
    """``(start, separator)``: the token that starts every context and the one placed between documents.

    A tokenizer that prepends a BOS itself (Llama, Gemma, the tiny models) was trained with it: contexts start
    with that BOS and documents end with EOS. A tokenizer that adds nothing (GPT-2, SmolLM2, Qwen) saw
    ``<|endoftext|>`` between pretraining documents, so that token does both jobs; the chat markers of an
    instruct model's ``bos``/``eos`` (SmolLM2-Instruct's ``<|im_start|>``/``<|im_end|>``) are not used.
    """
    ids = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is not None and ids and ids[0] == bos:
        return int(bos), (int(eos) if eos is not None else None)
    boundary = _token_id(tokenizer, DOC_BOUNDARY)
    if boundary is not None:
        return boundary, boundary
    for tid in (eos, bos):
        if tid is not None:
            return int(tid), int(tid)
    raise InvalidConfigError(
        "The tokenizer has neither a BOS, an EOS nor <|endoftext|> to start contexts with."
    )


def context_bos_id(tokenizer: Any) -> int:
    """The token that starts every context (see :func:`context_special_ids`)."""
    return context_special_ids(tokenizer)[0]


def iter_contexts(
    docs: Iterable[Document],
    tokenizer: Any,
    ctx_len: int,
    max_contexts: int | None = None,
    source: str = "The corpus",
    skip: tuple[int, int] = (0, 0),
) -> Iterator[Int[torch.Tensor, " ctx"]]:
    """Pack documents (separated by EOS) into contexts of ``ctx_len`` tokens, each starting with BOS.

    Deterministic for a given corpus and tokenizer; context ``i`` is the same on every run, which is what
    lets the recorder resume by context index. ``skip=(d, t)`` starts at a cursor from
    :func:`context_cursors`: documents before ``d`` are not tokenized, and the first ``t`` tokens of
    document ``d`` are dropped, so a worker recording one shard reads only from where that shard begins.
    """
    if ctx_len < 2:
        raise InvalidConfigError(f"ctx_len must be >= 2, got {ctx_len}")
    bos, sep = context_special_ids(tokenizer)
    body = ctx_len - 1
    buf: list[int] = []
    n = 0
    any_text = False
    skip_docs, skip_tokens = skip
    for i, doc in enumerate(docs):
        if i < skip_docs or not doc.text.strip():
            continue
        any_text = True
        buf.extend(_doc_tokens(tokenizer, doc, sep)[skip_tokens if i == skip_docs else 0 :])
        while len(buf) >= body:
            yield torch.tensor([bos] + buf[:body], dtype=torch.long)
            del buf[:body]
            n += 1
            if max_contexts is not None and n >= max_contexts:
                return
    if not any_text:
        raise EmptyCorpusError(f"{source} has no text: every document in it is empty.")
    if n == 0:
        raise EmptyCorpusError(
            f"{source} has only {len(buf)} tokens, fewer than one context of {ctx_len}: add text or lower ctx_len."
        )


def _doc_tokens(tokenizer: Any, doc: Document, sep: int | None) -> list[int]:
    ids = list(tokenizer(doc.text, add_special_tokens=False)["input_ids"])
    return ids + [sep] if sep is not None else ids


def context_cursors(
    docs: Iterable[Document], tokenizer: Any, ctx_len: int, starts: Iterable[int], n_contexts: int
) -> tuple[dict[int, tuple[int, int]], int]:
    """Where contexts ``starts`` begin in the corpus, as ``skip`` cursors for :func:`iter_contexts`
    (document index, token offset in it), and how many whole contexts the corpus holds (counted up to
    ``n_contexts``; fewer means the corpus is too short). One tokenization pass, stopping once both are known."""
    _, sep = context_special_ids(tokenizer)
    body = ctx_len - 1
    wanted = sorted(set(starts))
    cursors: dict[int, tuple[int, int]] = {}
    pos = 0  # tokens of the packed stream (BOS excluded) before the current document
    k = 0
    for i, doc in enumerate(docs):
        if k == len(wanted) and pos >= n_contexts * body:
            break
        if not doc.text.strip():
            continue
        n = len(_doc_tokens(tokenizer, doc, sep))
        while k < len(wanted) and wanted[k] * body < pos + n:
            cursors[wanted[k]] = (i, wanted[k] * body - pos)
            k += 1
        pos += n
    return cursors, pos // body
