"""Every analysis subcommand on a tiny model: its JSON holds the library's numbers for the same arguments, and
the numbers mean what they say (checked by an independent route where one exists)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuroscope.cli import main
from neuroscope.errors import CorruptDataError, IndexOutOfRangeError, ResourceNotFoundError
from neuroscope.interventions import Patch

M = ["--model", "tiny:llama"]
IGNORED = {"seconds"}  # wall-clock fields differ between any two runs
IOI = ["--clean", "abcab", "--corrupted", "abdab", "--answer", "c", "--wrong", "d"]


def same(cli, lib, path="") -> None:
    """The CLI's JSON equals the library's result (after the same JSON round trip), floats to 1e-5."""
    if isinstance(lib, dict):
        assert isinstance(cli, dict) and set(cli) == set(lib), (path, set(cli) ^ set(lib))
        for k in lib:
            if k not in IGNORED:
                same(cli[k], lib[k], f"{path}.{k}")
    elif isinstance(lib, list):
        assert isinstance(cli, list) and len(cli) == len(lib), path
        for i, (a, b) in enumerate(zip(cli, lib, strict=True)):
            same(a, b, f"{path}[{i}]")
    elif isinstance(lib, float) and math.isnan(lib):
        assert isinstance(cli, float) and math.isnan(cli), path
    elif isinstance(lib, float):
        assert cli == pytest.approx(lib, rel=1e-5, abs=1e-5), path
    else:
        assert cli == lib, path


def run_cli(argv, tmp_path) -> dict:
    out = tmp_path / "r.json"
    assert main(argv + M + ["--json", str(out), "--html", str(tmp_path / "f.html")]) == 0
    assert "plotly" in (tmp_path / "f.html").read_text()[:5000].lower()
    return json.loads(out.read_text())


def roundtrip(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), default=str))


def test_lens(tmp_path, tiny_llama):
    from neuroscope.analysis.lens import logit_lens

    got = run_cli(["lens", "hello"], tmp_path)
    same(got, roundtrip(logit_lens(tiny_llama, "hello", k=5)))
    # the last layer's lens is the model's own distribution
    assert max(got["kl_to_final"][-1]) < 1e-5


def test_attention_patterns_and_classification(tmp_path, tiny_llama):
    from neuroscope.analysis import attention

    same(
        run_cli(["attention", "abcab"], tmp_path),
        roundtrip(attention.attention_patterns(tiny_llama, "abcab")),
    )
    got = run_cli(
        ["attention", "--n-seqs", "2", "--half-len", "8", "--ablate", "2", "--draws", "3"], tmp_path
    )
    cls = attention.classify_heads(tiny_llama, n_seqs=2, half_len=8, seed=0)
    abl = attention.induction_ablation(tiny_llama, cls, k=2, n_draws=3, seed=1)
    same(got, {"classification": roundtrip(cls), "induction_ablation": roundtrip(abl)})


def test_dla_adds_up(tmp_path, tiny_llama):
    from neuroscope.analysis.residual import direct_logit_attribution

    got = run_cli(["dla", "hello wor", "--answer", "l", "--wrong", "o"], tmp_path)
    same(got, roundtrip(direct_logit_attribution(tiny_llama, "hello wor", "l", "o")))
    assert sum(got["contributions"]) == pytest.approx(got["actual"], abs=1e-4)


def test_attribute_integrated_gradients_complete(tmp_path, tiny_llama):
    from neuroscope.analysis.attribution import gradient_x_input, integrated_gradients

    got = run_cli(["attribute", "hello wor", "--answer", "l", "--steps", "32"], tmp_path)
    same(got, roundtrip(integrated_gradients(tiny_llama, "hello wor", "l", None, steps=32, baseline="mean")))
    # completeness: the attributions add up to f(x) - f(baseline); 7.6e-6 relative measured at 32 steps
    gap = got["f_input"] - got["f_baseline"]
    assert abs(sum(got["attributions"]) - gap) / abs(gap) < 1e-4
    assert got["completeness_error"] < 1e-4
    got = run_cli(["attribute", "hello wor", "--answer", "l", "--method", "gxi"], tmp_path)
    same(got, roundtrip(gradient_x_input(tiny_llama, "hello wor", "l", None)))


@pytest.mark.parametrize("method", ["batched", "attribution"])
def test_patch_methods(method, tmp_path, tiny_llama):
    from neuroscope.analysis import patching

    setup = patching.prepare(tiny_llama, "abcab", "abdab", "c", "d")
    got = run_cli(["patch", *IOI, "--site", "z", "--method", method], tmp_path)
    fn = {
        "batched": patching.patch_sweep,
        "attribution": patching.attribution_patching,
    }[method]
    same(got, roundtrip(fn(tiny_llama, setup, "z")))
    if method != "attribution":
        # one head patched by hand through interventions.Patch gives the same normalised value
        _, clean = tiny_llama.run_with_cache(setup.clean, names=["blocks.1.attn.hook_z"])
        with torch.no_grad():
            logits = tiny_llama(
                setup.corrupted, interventions=[Patch("blocks.1.attn.hook_z", clean, heads=[2])]
            )
        assert got["values"][1][2] == pytest.approx(float(setup.normalise(setup.ld(logits))), abs=1e-5)


def test_patch_resid_pre_restores_the_clean_run_at_the_changed_position(tmp_path):
    got = run_cli(["patch", *IOI], tmp_path)
    # patching the clean residual at the only differing position (3, after BOS) before layer 0 is the clean
    # run; patching an unchanged position before layer 0 changes nothing
    assert got["cols"] == ["<|bos|>", "a", "b", "c", "a", "b"]
    assert got["values"][0] == pytest.approx([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], abs=1e-5)


def path_by_hand(model, setup, senders: set[tuple[int, int]]) -> float:
    """Path patching to the logits through interventions: senders' z clean, every other head's z frozen to
    the corrupted run, MLPs recomputed."""
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    _, clean = model.run_with_cache(setup.clean, names=names)
    _, corr = model.run_with_cache(setup.corrupted, names=names)
    ivs = []
    for l in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            ivs.append(Patch(names[l], clean if (l, h) in senders else corr, heads=[h]))
    with torch.no_grad():
        logits = model(setup.corrupted, interventions=ivs)
    return float(setup.normalise(setup.ld(logits)))


def test_patch_path_map_and_sender_sets(tmp_path, tiny_llama):
    from neuroscope.analysis import patching

    setup = patching.prepare(tiny_llama, "abcab", "abdab", "c", "d")
    n, h = tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads
    got = run_cli(["patch", *IOI, "--method", "path"], tmp_path)
    senders = [[(l, k)] for l in range(n) for k in range(h)]
    same(got, roundtrip(patching.path_patching(tiny_llama, setup, senders)))
    assert len(got["values"]) == n * h and got["receivers"] is None
    for (l, k), v in zip([s[0] for s in senders], got["values"], strict=True):
        assert v == pytest.approx(path_by_hand(tiny_llama, setup, {(l, k)}), abs=1e-5), (l, k)
    # sender sets: one row each, the set patched together
    got = run_cli(["patch", *IOI, "--method", "path", "--senders", "0.1,1.2", "1.0"], tmp_path)
    assert got["senders"] == [[[0, 1], [1, 2]], [[1, 0]]]
    assert got["values"][0] == pytest.approx(path_by_hand(tiny_llama, setup, {(0, 1), (1, 2)}), abs=1e-5)
    assert got["values"][1] == pytest.approx(path_by_hand(tiny_llama, setup, {(1, 0)}), abs=1e-5)


def test_patch_path_to_receivers(tmp_path, tiny_llama):
    from neuroscope.analysis import patching

    setup = patching.prepare(tiny_llama, "abcab", "abdab", "c", "d")
    argv = ["patch", *IOI, "--method", "path", "--senders", "0.1", "0.3", "--receivers", "1.1.q,1.0.k"]
    got = run_cli(argv, tmp_path)
    lib = patching.path_patching(tiny_llama, setup, [[(0, 1)], [(0, 3)]], [(1, 1, "q"), (1, 0, "k")])
    same(got, roundtrip(lib))
    assert got["receivers"] == [[1, 1, "q"], [1, 0, "k"]]
    # a sender in the receivers' own layer cannot reach them: nothing changes
    got = run_cli(["patch", *IOI, "--method", "path", "--senders", "1.3", "--receivers", "1.1.q"], tmp_path)
    assert got["values"][0] == pytest.approx(0.0, abs=1e-5)


def test_patch_path_rejects_bad_items(capsys):
    assert main(["patch", *IOI, "--method", "path", "--senders", "1-2", *M]) == 2
    assert "--senders takes LAYER.HEAD items" in capsys.readouterr().err
    assert main(["patch", *IOI, "--method", "path", "--receivers", "1.2", *M]) == 2
    assert "--receivers takes LAYER.HEAD.q|k|v items" in capsys.readouterr().err
    assert main(["patch", *IOI, "--method", "path", "--senders", "9.0", *M]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err


def test_neurons(tmp_path, tiny_llama):
    from neuroscope.analysis._util import load_data
    from neuroscope.analysis.neurons import max_activating

    got = run_cli(["neurons", "--hook", "blocks.1.mlp.hook_post", "--neuron", "3", "--k", "2"], tmp_path)
    lib = max_activating(
        tiny_llama, load_data("digits")["texts"], "blocks.1.mlp.hook_post", neuron=3, k=2, window=8
    )
    same(got, roundtrip(lib))
    acts = [e["activation"] for e in got["examples"]]
    assert acts == sorted(acts, reverse=True) and len(acts) == 2


def test_probe_digit_task_default(tmp_path, tiny_llama):
    from neuroscope.analysis._util import load_data
    from neuroscope.analysis.probes import probe_hook

    got = run_cli(["probe", "--hook", "blocks.1.hook_resid_pre"], tmp_path)
    same(got, roundtrip(probe_hook(tiny_llama, load_data("digits")["texts"], "blocks.1.hook_resid_pre")))
    assert got["n_classes"] == 2 and got["classes"] is None


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def token_rows(n: int = 40) -> list[dict]:
    """The label is the last character's identity: linearly readable from the embedding at that token."""
    rows = []
    for i in range(n):
        last = "xyz"[i % 3]
        rows.append({"text": f"{'abcdefgh'[i % 8]}{'pqrs'[i % 4]}{last}", "label": f"ends-{last}"})
    return rows


def test_probe_labels_file_any_hook(tmp_path, tiny_llama):
    from neuroscope.analysis.probes import probe_labelled

    labels = write_jsonl(tmp_path / "labels.jsonl", token_rows())
    got = run_cli(["probe", "--hook", "hook_embed", "--labels", labels], tmp_path)
    same(got, roundtrip(probe_labelled(tiny_llama, labels, "hook_embed")))
    assert got["classes"] == ["ends-x", "ends-y", "ends-z"] and got["n_classes"] == 3
    assert got["n_train"] + got["n_test"] == 40
    # each label is the token itself: a linear probe reads it perfectly, shuffled labels do not
    assert got["test_accuracy"] == 1.0 and got["train_accuracy"] == 1.0
    assert got["control_test_accuracy"] < 0.75
    # a deeper hook and the z hook (flattened over heads) work the same way
    got = run_cli(["probe", "--hook", "blocks.1.attn.hook_z", "--labels", labels], tmp_path)
    assert got["hook"] == "blocks.1.attn.hook_z" and got["n_train"] + got["n_test"] == 40


def test_probe_token_labels_and_positions(tmp_path, tiny_llama):
    from neuroscope.analysis.probes import labelled_dataset, read_labels

    # token-level labels: every position labelled with its own character class (vowel or not)
    rows = []
    for w in ("banana", "kiwi", "apple", "grape", "melon", "lemon", "mango", "peach"):
        ids = tiny_llama.to_str_tokens(w)
        rows.append(
            {
                "prompt": w,
                "token_labels": [[p, "vowel" if t in "aeiou" else "other"] for p, t in enumerate(ids) if t],
            }
        )
    rows.append({"text": "abc", "label": 7, "position": 0})
    exs = read_labels(write_jsonl(tmp_path / "t.jsonl", rows))
    x, y, classes = labelled_dataset(tiny_llama, exs, "hook_embed")
    assert classes == ["7", "other", "vowel"]
    # the activation of each labelled token is the embedding of that token
    _, cache = tiny_llama.run_with_cache("banana", names=["hook_embed"])
    assert torch.allclose(x[: len("banana")], cache["hook_embed"][0, : len("banana")].float())
    _, cache = tiny_llama.run_with_cache("abc", names=["hook_embed"])
    assert torch.allclose(x[-1], cache["hook_embed"][0, 0].float()) and int(y[-1]) == 0
    # a JSON list (and {"examples": [...]}) reads the same as JSON Lines
    (tmp_path / "t.json").write_text(json.dumps({"examples": rows}))
    assert read_labels(tmp_path / "t.json") == exs


def test_bad_label_files_name_the_problem(tmp_path, tiny_llama):
    from neuroscope.analysis.probes import probe_labelled, read_labels

    with pytest.raises(ResourceNotFoundError):
        read_labels(tmp_path / "missing.jsonl")
    cases = {
        "notjson.jsonl": "{oops",
        "nolabel.jsonl": json.dumps({"text": "abc"}),
        "notext.jsonl": json.dumps({"label": 1}),
        "badpairs.jsonl": json.dumps({"text": "abc", "token_labels": [[0]]}),
        "badlabel.jsonl": json.dumps({"text": "abc", "label": [1]}),
        "empty.json": "[]",
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
        with pytest.raises(CorruptDataError, match=name):
            read_labels(tmp_path / name)
    far = write_jsonl(tmp_path / "far.jsonl", [{"text": "ab", "label": "x", "position": 40}] * 2)
    with pytest.raises(IndexOutOfRangeError):
        probe_labelled(tiny_llama, far, "hook_embed")


def test_geometry(tmp_path, tiny_llama):
    from neuroscope.analysis import geometry

    got = run_cli(["geometry", "--token", "a", "--k", "3"], tmp_path)
    same(got, roundtrip(geometry.nearest_neighbours(tiny_llama, "a", k=3)))
    assert got["neighbours"][0][2] >= got["neighbours"][-1][2]
    got = run_cli(["geometry", "--trajectory", "hello"], tmp_path)
    same(got, roundtrip(geometry.trajectory_pca(tiny_llama, "hello")))
    assert len(got["coords"]) == tiny_llama.cfg.n_layers + 1


def test_steer(tmp_path, tiny_llama):
    from neuroscope.analysis import steering
    from neuroscope.analysis._util import load_data

    got = run_cli(["steer", "--layer", "1", "--alphas=-1,0,1", "--generate", "0"], tmp_path)
    data = load_data("sentiment")
    vec = steering.steering_vector(tiny_llama, data["positive"], data["negative"], 1)
    lib = steering.steering_sweep(
        tiny_llama,
        vec,
        1,
        data["neutral"],
        data["positive_words"],
        data["negative_words"],
        alphas=[-1.0, 0.0, 1.0],
        n_generate=0,
    )
    same(got, roundtrip(lib))
    assert got["delta"][1] == pytest.approx(0.0, abs=1e-6)  # alpha 0 changes nothing


def test_experiment_subcommand(tmp_path, tiny_llama):
    from neuroscope.analysis._util import load_data
    from neuroscope.analysis.experiments import ContrastiveConfig, contrastive_experiment

    out = tmp_path / "exp"
    argv = [
        "experiment",
        *M,
        "--k",
        "2",
        "--n-random",
        "4",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0
    got = json.loads((out / "result.json").read_text())
    data = load_data("contrastive_copying")
    lib = contrastive_experiment(
        tiny_llama, data["target"], data["baseline"], ContrastiveConfig(k=2, n_random=4)
    )
    same(json.loads((tmp_path / "r.json").read_text()), roundtrip(lib))
    assert got["top_heads"] == roundtrip(lib)["top_heads"]
    # a permutation p-value over 4 random draws is (count + 1) / 5
    assert got["p_value"] * 5 == pytest.approx(round(got["p_value"] * 5)) and 0 < got["p_value"] <= 1
    assert f"p-value (one-sided) | {got['p_value']:.4g} |" in (out / "report.md").read_text()
