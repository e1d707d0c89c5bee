"""The recorder on the bundled smollm2-135m: contexts start with <|endoftext|>, the forward stops after the
recorded layer, and the stored float16 activations are those of an ordinary full forward."""

from __future__ import annotations

import json

import torch

from neuroscope.record.datasets import iter_contexts, load_documents
from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import TraceConfig, record

N_DOCS = 12


def test_trace_layer_15_matches_the_full_forward(smollm, tmp_path, real_corpus):
    # the first held-out pages of the real corpus, short enough that several documents share a context
    docs = [json.loads(line) for line in (real_corpus / "heldout.jsonl").read_text().splitlines()[:200]]
    docs = sorted(docs, key=lambda d: len(d["text"]))[:N_DOCS]
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in docs))
    hook = "blocks.15.hook_resid_post"
    ran = {"block16": 0}
    handle = smollm.layer_module(16).register_forward_hook(
        lambda *a: ran.__setitem__("block16", ran["block16"] + 1)
    )
    try:
        cfg = TraceConfig(
            hooks=(hook,), data=str(data), tokens=512, ctx_len=128, batch_size=2, shard_tokens=256
        )
        res = record(smollm, cfg, tmp_path / "acts", progress=False)
    finally:
        handle.remove()
    assert ran["block16"] == 0 and res.tokens == 512 and res.n_shards == 2
    store = ActivationStore(tmp_path / "acts")
    assert store.d() == 576 and store.manifest["bos_token_id"] == 0 == store.manifest["separator_token_id"]
    got = store.read_all()
    ctxs = torch.stack(list(iter_contexts(load_documents(data), smollm.tokenizer, 128, 4)))
    assert bool((ctxs[:, 0] == 0).all()) and torch.equal(got.token_id, ctxs.reshape(-1))
    _, cache = smollm.run_with_cache(ctxs, names=[hook])
    want = cache[hook].reshape(-1, 576)
    torch.testing.assert_close(got.acts, want.half().float(), rtol=0, atol=0)
    # the separator really sits between documents, not only at the start
    assert int((got.token_id == 0).sum()) > 4
