"""ActivationStore: metadata, and a shuffled streaming iterator that visits every row exactly once."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import MANIFEST, TraceConfig, record


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tinymodels import tiny

    tmp = tmp_path_factory.mktemp("reader")
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    (tmp / "t.jsonl").write_text(
        "\n".join(json.dumps({"text": " ".join(rng.choice(words, 20 + 7 * i))}) for i in range(40)) + "\n"
    )
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TraceConfig(
            hooks=("blocks.0.hook_resid_post",),
            data=str(tmp / "t.jsonl"),
            tokens=2048,
            ctx_len=32,
            batch_size=4,
            shard_tokens=512,
            dtype="float32",
        )
        record(tiny("llama"), cfg, tmp / "acts", progress=False)
    finally:
        torch.set_num_threads(n)
    return ActivationStore(tmp / "acts")


def keys(batches):
    return [(int(d), int(p)) for b in batches for d, p in zip(b.doc_id, b.pos, strict=True)]


def test_metadata(store):
    assert store.hooks == ["blocks.0.hook_resid_post"] and store.d() == 64 == store.d(
        "blocks.0.hook_resid_post"
    )
    assert (
        store.n_tokens == 2048
        and store.complete
        and store.dtype == "float32"
        and store.model_name == "tiny:llama"
    )
    assert 256 in store.special_token_ids and len(store.row_groups()) == 2048 // (4 * 32)


@pytest.mark.parametrize(("exclude_special", "buffer_tokens"), [(False, 300), (True, 300), (False, 100_000)])
def test_shuffled_epoch_covers_every_row_exactly_once(store, exclude_special, buffer_tokens):
    everything = store.read_all()
    special = torch.isin(everything.token_id, torch.tensor(store.special_token_ids))
    want = (
        Counter(keys([everything]))
        if not exclude_special
        else Counter(
            (int(d), int(p))
            for d, p, s in zip(everything.doc_id, everything.pos, special, strict=True)
            if not s
        )
    )
    orders = []
    for seed in (0, 1):
        batches = list(
            store.iter_batches(64, seed=seed, buffer_tokens=buffer_tokens, exclude_special=exclude_special)
        )
        got = keys(batches)
        assert Counter(got) == want and max(Counter(got).values()) == 1
        assert all(b.acts.shape == (64, 64) for b in batches[:-1]) and 0 < batches[-1].acts.shape[0] <= 64
        orders.append(got)
    assert orders[0] != orders[1]  # seeds give different orders
    assert orders[0] != sorted(orders[0])  # and the order really is shuffled
    assert sum(want.values()) == (store.n_usable_tokens if exclude_special else store.n_tokens)


def test_rows_keep_their_activation_and_token(store):
    everything = store.read_all()
    index = {k: i for i, k in enumerate(keys([everything]))}
    for b in store.iter_batches(100, seed=3, buffer_tokens=500, exclude_special=False):
        rows = torch.tensor([index[k] for k in keys([b])])
        assert torch.equal(b.acts, everything.acts[rows]) and torch.equal(
            b.token_id, everything.token_id[rows]
        )


def test_unshuffled_order_drop_last_and_sample(store):
    plain = list(store.iter_batches(100, shuffle=False, exclude_special=False))
    assert keys(plain) == keys([store.read_all()])
    dropped = list(store.iter_batches(100, seed=0, exclude_special=False, drop_last=True))
    assert all(b.acts.shape[0] == 100 for b in dropped) and len(dropped) == 2048 // 100
    s = store.sample(500, seed=0)
    assert s.shape == (500, 64) and not torch.equal(s, store.read_all().acts[:500])


def test_usable_token_count_without_the_manifest_field(store, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(store.path, copy)
    m = json.loads((copy / MANIFEST).read_text())
    want = m.pop("n_usable_tokens")
    (copy / MANIFEST).write_text(json.dumps(m))
    assert ActivationStore(copy).n_usable_tokens == want
