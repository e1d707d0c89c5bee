"""Corpus reading, the default-corpus preparation, and packing text into BOS-led contexts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from neuroscope.errors import EmptyCorpusError, InvalidConfigError, ResourceNotFoundError
from neuroscope.record import datasets as ds

PAGE = """<html><body><nav><p>Navigation links that are long enough to count</p></nav>
<h1>Title</h1><p>The first paragraph of {name} has enough words to be prose.</p>
<pre>print("code is dropped even when it is long enough to count")</pre>
<p>Short one.</p><p>A second   paragraph
of {name} spans lines and keeps its words.</p><footer><p>Footer text long enough to be counted here</p></footer>
</body></html>"""


class StubTokenizer:
    """Characters as token ids 10.., with configurable special tokens, shaped like a HF tokenizer."""

    def __init__(self, bos=None, eos=None, adds_bos=False, vocab_extra=()):
        self.bos_token_id, self.eos_token_id, self.adds_bos = bos, eos, adds_bos
        self.vocab = {t: i for i, t in enumerate(vocab_extra)}
        self.all_special_ids = [i for i in (bos, eos) if i is not None]

    def __call__(self, text, add_special_tokens=True):
        ids = [10 + ord(c) % 50 for c in text]
        if add_special_tokens and self.adds_bos:
            ids = [self.bos_token_id, *ids]
        return {"input_ids": ids}

    def convert_tokens_to_ids(self, token):
        return self.vocab.get(token, 0)

    def convert_ids_to_tokens(self, tid):
        inv = {v: k for k, v in self.vocab.items()}
        return inv.get(tid, "<unk>")


def fake_docs_tree(root, n_pages=40):
    html = root / "python3.99" / "html"
    (html / "library").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "skip.html").write_text(PAGE.format(name="static"))
    for i in range(n_pages):
        (html / "library" / f"mod{i:02d}.html").write_text(PAGE.format(name=f"module {i}"))
    return html


def test_html_paragraphs_keep_prose_and_drop_code_navigation_and_labels():
    paras = ds.html_paragraphs(PAGE.format(name="x"))
    assert paras == [
        "The first paragraph of x has enough words to be prose.",
        "A second paragraph of x spans lines and keeps its words.",
    ]


def test_prepare_corpus_is_deterministic_and_splits_by_page(tmp_path):
    root = fake_docs_tree(tmp_path)
    a = ds.prepare_corpus(tmp_path / "a", root=root, heldout_fraction=0.25)
    b = ds.prepare_corpus(tmp_path / "b", root=root, heldout_fraction=0.25)
    assert a.train_sha256 == b.train_sha256 and a.heldout_sha256 == b.heldout_sha256
    assert a.n_train_docs + a.n_heldout_docs == 40 and a.n_heldout_docs > 0 and a.n_train_docs > 0
    train = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (tmp_path / "a" / "heldout.jsonl").read_text().splitlines()]
    assert not {d["id"] for d in train} & {d["id"] for d in held}
    assert all(ds.is_heldout(d["id"], 0.25) for d in held) and not any(
        ds.is_heldout(d["id"], 0.25) for d in train
    )
    assert all("_static" not in d["id"] for d in train + held)
    assert json.loads((tmp_path / "a" / ds.CORPUS_FILE).read_text())["apt_package"] == "python3-doc"
    # a prepared folder resolves to its split's file
    assert ds.resolve_data(tmp_path / "a", "heldout") == tmp_path / "a" / "heldout.jsonl"


def test_default_root_and_ensure_default_corpus(tmp_path, monkeypatch):
    fake_docs_tree(tmp_path)
    monkeypatch.setattr(ds, "DEFAULT_DOC_GLOB", str(tmp_path / "python3.*" / "html"))
    assert ds.find_default_root() == (tmp_path / "python3.99" / "html").resolve()
    out = ds.ensure_default_corpus(tmp_path / "corpus")
    assert (out / "train.jsonl").exists() and (out / "heldout.jsonl").exists()
    monkeypatch.setattr(ds, "DEFAULT_DOC_GLOB", str(tmp_path / "nothing" / "html"))
    with pytest.raises(ResourceNotFoundError, match="apt-get install -y python3-doc"):
        ds.find_default_root()


def test_load_documents_from_txt_jsonl_parquet_and_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"id": "x", "text": "json one"}) + "\n\n" + json.dumps({"text": "two"})
    )
    pq.write_table(pa.table({"text": ["pq one", "pq two"]}), tmp_path / "sub" / "c.parquet")
    (tmp_path / "ignored.bin").write_bytes(b"\0")
    docs = list(ds.load_documents(tmp_path))
    assert [d.text for d in docs] == ["plain text", "json one", "two", "pq one", "pq two"]
    assert docs[1].doc_id == "x" and docs[2].doc_id == "b.jsonl:2"
    assert [d.text for d in ds.load_documents(tmp_path / "a.txt")] == ["plain text"]


def test_empty_and_missing_corpora_give_clear_errors(tmp_path):
    with pytest.raises(EmptyCorpusError, match=r"holds no .*\.txt.*files"):
        list(ds.load_documents(tmp_path))
    (tmp_path / "empty.txt").write_text("  \n")
    tok = StubTokenizer(bos=1, eos=2, adds_bos=True)
    with pytest.raises(EmptyCorpusError, match=r"The corpus .*empty.txt has no text"):
        list(
            ds.iter_contexts(
                ds.load_documents(tmp_path / "empty.txt"),
                tok,
                8,
                source=f"The corpus {tmp_path / 'empty.txt'}",
            )
        )
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(EmptyCorpusError, match="only 4 tokens, fewer than one context of 8"):
        list(ds.iter_contexts(ds.load_documents(tmp_path / "short.txt"), tok, 8))
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        ds.resolve_data(tmp_path / "nope")
    with pytest.raises(InvalidConfigError, match="not a prepared corpus .* no 'heldout' split"):
        ds.resolve_data(tmp_path / "short.txt", "heldout")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InvalidConfigError, match="not one of"):
        list(ds.load_documents(tmp_path / "x.csv"))


@pytest.mark.parametrize(
    ("tok", "expected"),
    [
        (StubTokenizer(bos=1, eos=2, adds_bos=True), (1, 2)),  # Llama/Gemma: the BOS the tokenizer adds
        (StubTokenizer(bos=1, eos=2, vocab_extra=("<|endoftext|>",)), (0, 0)),  # SmolLM2-Instruct, GPT-2
        (StubTokenizer(bos=None, eos=5), (5, 5)),  # only an EOS
    ],
)
def test_context_start_and_separator_per_tokenizer(tok, expected):
    assert ds.context_special_ids(tok) == expected


def test_contexts_start_with_bos_and_pack_documents_with_separators(tiny_llama):
    tok = tiny_llama.tokenizer
    bos, sep = ds.context_special_ids(tok)
    assert (bos, sep) == (tok.bos_token_id, tok.eos_token_id)
    docs = [ds.Document(str(i), f"document number {i} " * (i + 1)) for i in range(12)]
    ctxs = list(ds.iter_contexts(docs, tok, 16))
    assert all(c.shape == (16,) and int(c[0]) == bos for c in ctxs)
    stream = [t for d in docs for t in [*tok(d.text, add_special_tokens=False)["input_ids"], sep]]
    bodies = torch.cat([c[1:] for c in ctxs]).tolist()
    assert bodies == stream[: len(bodies)] and len(stream) - len(bodies) < 15
    assert [c.tolist() for c in ds.iter_contexts(docs, tok, 16, max_contexts=3)] == [
        c.tolist() for c in ctxs[:3]
    ]
