"""The recorder: shard and manifest contents, several hooks in one pass, the early stop, resume, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from neuroscope.errors import CorruptDataError, EmptyCorpusError, InvalidConfigError, ResourceNotFoundError
from neuroscope.record import cli
from neuroscope.record.datasets import iter_contexts, load_documents
from neuroscope.record.reader import ActivationStore
from neuroscope.record.writer import MANIFEST, TraceConfig, file_sha256, record, resolve_hooks, stop_layer_for

WORDS = ["residual", "stream", "attention", "head", "feature", "circuit", "neuron", "logit", "token", "layer"]


def corpus(path, n_docs=30, seed=0):
    rng = np.random.default_rng(seed)
    lines = [
        json.dumps({"id": f"d{i}", "text": " ".join(rng.choice(WORDS, 12 + 5 * i))}) for i in range(n_docs)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    # tiny matrices gain nothing from threads, and on a busy machine extra threads cost several times over
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def text(tmp_path):
    return corpus(tmp_path / "text.jsonl")


def trace(model, text, out, hooks=("blocks.1.hook_resid_post",), **kw):
    kw = {"tokens": 1000, "ctx_len": 32, "batch_size": 3, "shard_tokens": 256, "dtype": "float32", **kw}
    cfg = TraceConfig(hooks=tuple(hooks), data=str(text), **kw)
    return record(model, cfg, out, progress=False), cfg


def rows(out, hook):
    files = sorted(out.glob("shard-*.parquet"))
    return pq.read_table(files, columns=["doc_id", "pos", "token_id", hook]) if files else None


def test_shards_and_manifest(tiny_llama, text, tmp_path):
    out = tmp_path / "acts"
    res, cfg = trace(tiny_llama, text, out)
    hook = "blocks.1.hook_resid_post"
    m = json.loads((out / MANIFEST).read_text())
    assert res.tokens == m["tokens"] == 32 * 32 == cfg.n_contexts * 32  # 1000 tokens -> 32 whole contexts
    assert m["complete"] and m["model"] == "tiny:llama" and m["hooks"] == [hook] and m["hook"] == hook
    assert m["d"] == m["columns"][hook]["d"] == 64 and m["dtype"] == "float32" and m["ctx_len"] == 32
    assert [s["rows"] for s in m["shards"]] == [256, 256, 256, 256] and res.n_shards == 4
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [s["file"] for s in m["shards"]])
    for s in m["shards"]:
        f = out / s["file"]
        assert file_sha256(f) == s["sha256"] and f.stat().st_size == s["bytes"]
        assert pq.ParquetFile(f).metadata.num_rows == s["rows"]
    t = pq.read_table(out / m["shards"][0]["file"])
    assert t.schema.field(hook).type.list_size == 64 and str(t.schema.field(hook).type.value_type) == "float"
    assert t.schema.names == ["doc_id", "pos", "token_id", hook]
    # row r is (context r // 32, position r % 32), its token and its activation from an ordinary forward
    ctxs = torch.stack(list(iter_contexts(load_documents(text), tiny_llama.tokenizer, 32, 32)))
    tab = rows(out, hook)
    np.testing.assert_array_equal(tab.column("doc_id").to_numpy(), np.repeat(np.arange(32), 32))
    np.testing.assert_array_equal(tab.column("pos").to_numpy(), np.tile(np.arange(32), 32))
    np.testing.assert_array_equal(tab.column("token_id").to_numpy(), ctxs.reshape(-1).numpy())
    _, cache = tiny_llama.run_with_cache(ctxs, names=[hook])
    acts = np.stack(tab.column(hook).to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(acts, cache[hook].reshape(-1, 64).numpy(), rtol=1e-5, atol=1e-5)
    bos, sep = m["bos_token_id"], m["separator_token_id"]
    assert bos == tiny_llama.tokenizer.bos_token_id and sep == tiny_llama.tokenizer.eos_token_id
    n_special = int(np.isin(tab.column("token_id").to_numpy(), m["special_token_ids"]).sum())
    assert m["n_special_tokens"] == n_special > 32 and m["n_usable_tokens"] == 1024 - n_special


def test_several_hooks_in_one_pass_equal_run_with_cache(any_tiny, text, tmp_path):
    m = any_tiny
    hooks = (
        "hook_embed",
        "blocks.0.hook_resid_pre",
        "blocks.0.attn.hook_z",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_resid_post",
    )
    res, _ = trace(m, text, tmp_path / "acts", hooks=hooks, tokens=256, shard_tokens=128)
    store = ActivationStore(tmp_path / "acts")
    assert store.hooks == list(hooks) and store.n_tokens == 256
    ctxs = torch.stack(list(iter_contexts(load_documents(text), m.tokenizer, 32, 8)))
    _, cache = m.run_with_cache(ctxs, names=list(hooks))
    for h in hooks:
        got = store.read_all(h)
        want = cache[h].reshape(ctxs.numel(), -1)
        assert store.d(h) == want.shape[1]
        torch.testing.assert_close(got.acts, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.token_id, ctxs.reshape(-1))
    with pytest.raises(InvalidConfigError, match="holds several hooks"):
        store.d()


def test_forward_stops_after_the_last_recorded_layer(tiny_llama, text, tmp_path):
    m = tiny_llama
    n = m.cfg.n_layers
    assert stop_layer_for(["blocks.0.hook_resid_post"], n) == 1
    assert stop_layer_for(["blocks.1.hook_resid_pre", "hook_embed"], n) == 1
    assert stop_layer_for(["hook_embed"], n) == 0
    assert (
        stop_layer_for([f"blocks.{n - 1}.hook_mlp_out"], n) == n
    )  # skips only the final norm and unembedding
    assert stop_layer_for(["ln_final.hook_normalized"], n) is None
    calls = {"last_block": 0, "unembed": 0}
    h1 = m.layer_module(n - 1).register_forward_hook(
        lambda *a: calls.__setitem__("last_block", calls["last_block"] + 1)
    )
    h2 = m.hf_model.get_output_embeddings().register_forward_hook(
        lambda *a: calls.__setitem__("unembed", calls["unembed"] + 1)
    )
    try:
        trace(m, text, tmp_path / "a", hooks=(f"blocks.{n - 2}.hook_resid_post",), tokens=64)
        assert calls == {"last_block": 0, "unembed": 0}
        trace(m, text, tmp_path / "b", hooks=(f"blocks.{n - 1}.hook_resid_post",), tokens=64)
        assert calls["last_block"] > 0 and calls["unembed"] == 0
    finally:
        h1.remove()
        h2.remove()


def test_resolve_hooks_from_layers_and_short_names(tiny_llama):
    assert resolve_hooks(tiny_llama, [0, 1], ["resid_post", "mlp_out"]) == (
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_mlp_out",
    )
    assert resolve_hooks(tiny_llama, [], ["blocks.1.attn.hook_z"]) == ("blocks.1.attn.hook_z",)
    with pytest.raises(InvalidConfigError, match="give --layer"):
        resolve_hooks(tiny_llama, [], ["resid_post"])


def test_resume_reuses_complete_shards_and_fills_the_rest(tiny_llama, text, tmp_path):
    hook = "blocks.1.hook_resid_post"
    clean, _ = trace(tiny_llama, text, tmp_path / "clean")
    out = tmp_path / "acts"
    trace(tiny_llama, text, out)
    m = json.loads((out / MANIFEST).read_text())
    # the state a kill leaves: last shard half written (temp file), third renamed but not yet in the manifest
    (out / m["shards"][3]["file"]).rename(out / (m["shards"][3]["file"] + ".tmp"))
    m["shards"], m["complete"] = m["shards"][:2], False
    (out / MANIFEST).write_text(json.dumps(m))
    res, _ = trace(tiny_llama, text, out)
    assert (res.shards_reused, res.shards_recorded) == (3, 1)
    assert not list(out.glob("*.tmp"))
    assert rows(out, hook).equals(rows(tmp_path / "clean", hook))
    m2 = json.loads((out / MANIFEST).read_text())
    assert m2["complete"] and m2["tokens"] == clean.tokens and len(m2["shards"]) == 4
    again, _ = trace(tiny_llama, text, out)  # complete: nothing to do
    assert (again.shards_reused, again.shards_recorded) == (4, 0)


def test_asking_for_more_or_fewer_tokens_extends_or_trims(tiny_llama, text, tmp_path):
    hook = "blocks.1.hook_resid_post"
    trace(tiny_llama, text, tmp_path / "clean", tokens=1400)
    out = tmp_path / "acts"
    trace(tiny_llama, text, out, tokens=900)  # shards [0,8) [8,16) [16,24) [24,29)
    res, _ = trace(
        tiny_llama, text, out, tokens=1400
    )  # [24,29) is replaced by [24,32), then [32,40), [40,44)
    assert (res.shards_reused, res.shards_recorded) == (3, 3)
    assert rows(out, hook).equals(rows(tmp_path / "clean", hook))
    res, _ = trace(tiny_llama, text, out, tokens=500)
    assert res.tokens == 512 and len(list(out.glob("shard-*.parquet"))) == 2 == res.n_shards


def test_resume_rerecords_a_truncated_shard_with_a_warning(tiny_llama, text, tmp_path):
    hook = "blocks.1.hook_resid_post"
    trace(tiny_llama, text, tmp_path / "clean")
    out = tmp_path / "acts"
    trace(tiny_llama, text, out)
    victim = sorted(out.glob("shard-*.parquet"))[1]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=victim.name):
        res, _ = trace(tiny_llama, text, out)
    assert res.shards_recorded == 1 and rows(out, hook).equals(rows(tmp_path / "clean", hook))


def test_other_settings_on_the_same_folder_are_refused(tiny_llama, text, tmp_path):
    trace(tiny_llama, text, tmp_path / "acts")
    with pytest.raises(InvalidConfigError, match=r"different settings \(ctx_len"):
        trace(tiny_llama, text, tmp_path / "acts", ctx_len=16)


def test_corrupt_shard_error_names_the_shard(tiny_llama, text, tmp_path):
    out = tmp_path / "acts"
    trace(tiny_llama, text, out)
    store = ActivationStore(out)
    assert store.verify(checksums=True) == 1024
    victim = out / store.shards[2]["file"]
    data = bytearray(victim.read_bytes())
    data[-12:-8] = b"\xff\xff\xff\x7f"  # garble the footer length
    victim.write_bytes(bytes(data))
    for action in (lambda s: s.verify(), lambda s: s.read_all(), lambda s: list(s.iter_batches(100))):
        with pytest.raises(CorruptDataError, match=victim.name):
            action(ActivationStore(out))
    good = out / store.shards[0]["file"]
    raw = bytearray(good.read_bytes())
    raw[100] ^= 0xFF
    good.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match=f"{good.name} does not match its checksum"):
        ActivationStore(out).verify(checksums=True)
    victim.unlink()
    with pytest.raises(CorruptDataError, match=f"{victim.name} is listed in the manifest but missing"):
        ActivationStore(out).verify()


def test_missing_manifest_and_empty_corpus_errors(tiny_llama, tmp_path):
    (tmp_path / "acts").mkdir()
    with pytest.raises(ResourceNotFoundError, match=r"No manifest.json in .*acts.*neuroscope trace"):
        ActivationStore(tmp_path / "acts")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(EmptyCorpusError, match=r"The corpus .*empty.txt has no text"):
        trace(tiny_llama, tmp_path / "empty.txt", tmp_path / "out")
    small = corpus(tmp_path / "small.jsonl", n_docs=3)
    with pytest.raises(InvalidConfigError, match=r"holds only \d+ contexts .* Ask for at most --tokens"):
        trace(tiny_llama, small, tmp_path / "out2", tokens=100_000)
    assert not list((tmp_path / "out2").glob("*.tmp"))
    with pytest.raises(InvalidConfigError, match="longer than tiny:llama's context"):
        trace(tiny_llama, small, tmp_path / "out3", ctx_len=100_000, shard_tokens=100_000)


def test_cli_trace_with_parquet_out_and_float16(text, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [
        "trace",
        "--model",
        "tiny:llama",
        "--layer",
        "1",
        "--data",
        str(text),
        "--tokens",
        "200",
        "--ctx-len",
        "16",
        "--shard-tokens",
        "64",
        "--out",
        "acts.parquet",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    store = ActivationStore(tmp_path / "acts.parquet")
    assert out["tokens"] == store.n_tokens == store.verify() == 208 and store.dtype == "float16"
    assert store.hooks == ["blocks.1.hook_resid_post"] and (tmp_path / "acts.parquet").is_dir()
    # the folder reads as one Parquet dataset (the manifest beside the shards is skipped)
    assert pads.dataset(tmp_path / "acts.parquet", exclude_invalid_files=True).count_rows() == 208
    assert cli.main(["trace", "--model", "tiny:llama", "--data", str(text), "--out", "x"]) == 2
    assert "give --layer" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(argv) == 0  # resumed: already complete
