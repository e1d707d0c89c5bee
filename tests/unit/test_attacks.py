"""Adversarial search on tiny random models: losses fall, runs are seeded, success is verified for real."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import neuroscope as ns
from neuroscope.attacks import Attack, AttackConfig, run_attack
from neuroscope.attacks import runner as runner_module
from neuroscope.attacks.problem import AttackProblem
from neuroscope.attacks.verify import Verification
from neuroscope.cli import main
from neuroscope.errors import (
    EmptyTargetError,
    GradientsUnavailableError,
    InvalidConfigError,
    SearchWidthError,
    SuffixLengthError,
    TargetTooLongError,
)

PROMPT, TARGET = "Hello", "a"
SMALL = dict(width=32, suffix_len=8, steps=40, topk=16, elites=4, max_new_tokens=8)
METHODS = ("gcg", "genetic", "gradient-free")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny forwards on one torch thread: with two, OpenMP's spinning threads on a busy 2-core machine make
    them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def greedy(model: ns.HookedModel, text: str, n: int) -> str:
    """An independent greedy decoder (full forward per token, no KV cache) to check the library's verdict."""
    ids = model.to_tokens(text)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(ids)[0, -1].argmax())
            if nxt == model.tokenizer.eos_token_id:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return model.tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_the_loss_and_verifies_its_success(tiny_llama, method):
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(method=method, **SMALL))
    best = [s.best_loss for s in r.history]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:], strict=False))  # the best never gets worse
    assert r.best_loss < r.init_loss - 1.0
    assert r.success and r.success_step == len(r.history)  # early stop at the verified step
    # the kept suffix, rendered and tokenised afresh, makes an independent greedy decoder say the target
    text = r.rendered_prompt
    assert text == tiny_llama.format_chat([{"role": "user", "content": PROMPT + r.best_suffix}])
    assert tiny_llama.to_tokens(text)[0, -(len(r.best_suffix_ids) + 1) : -1].numel() > 0
    out = greedy(tiny_llama, text, 4)
    assert out.startswith(TARGET) and r.verified_output.startswith(out)


@pytest.mark.parametrize("method", METHODS)
def test_runs_are_seeded_and_deterministic(tiny_llama, method):
    cfg = AttackConfig(method=method, **{**SMALL, "steps": 4, "early_stop": False})
    a, b = (run_attack(tiny_llama, PROMPT, "ab", cfg) for _ in range(2))
    assert a.losses == b.losses and a.to_dict()["best_suffixes"] == b.to_dict()["best_suffixes"]
    c = run_attack(tiny_llama, PROMPT, "ab", dataclasses.replace(cfg, seed=1))
    assert c.to_dict()["best_suffixes"] != a.to_dict()["best_suffixes"]


def test_early_stop_never_reports_an_unverified_success(tiny_llama, monkeypatch):
    """Teacher-forced matches happen, but if decoding disagrees nothing counts as success."""
    calls: list[str] = []

    def refuse(model, problem, suffix, max_new_tokens):
        text = suffix if isinstance(suffix, str) else problem.decode(suffix)
        calls.append(text)
        return Verification(text, problem.render(text), "not the target", False)

    monkeypatch.setattr(runner_module, "verify", refuse)
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(method="gcg", **{**SMALL, "steps": 6}))
    assert sum(s.matched for s in r.history) > 0 and len(calls) > 1  # matches were found and checked
    assert not r.success and r.success_step is None and r.seconds_to_success is None
    assert len(r.history) == 6 and not any(s.verified for s in r.history)


def test_without_early_stop_the_kept_suffix_is_the_verified_one(tiny_llama):
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(**{**SMALL, "early_stop": False, "steps": 8}))
    assert r.success and len(r.history) == 8 and r.success_step is not None
    assert greedy(tiny_llama, r.rendered_prompt, 2).startswith(TARGET)
    assert r.to_dict()["history"][r.success_step - 1]["verified"]


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_losses_equal_a_full_forward_on_every_adapter(any_tiny, prefix_cache):
    cfg = AttackConfig(suffix_len=5, prefix_cache=prefix_cache)
    a = Attack(any_tiny, PROMPT, "abc", cfg)
    cands = a.problem.init_ids.repeat(3, 1)
    cands[1, 0], cands[2, 3] = 70, 80
    got = a.scorer.scores(cands).losses
    seqs = torch.stack([a.problem.sequence(c) for c in cands])
    t = len(a.problem.target_ids)
    logp = torch.log_softmax(any_tiny(seqs)[:, -t - 1 : -1].float(), -1)
    want = -logp.gather(-1, a.problem.target_ids.expand(3, -1)[..., None]).squeeze(-1).mean(-1)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_token_gradient_equals_the_one_hot_gradient(tiny_llama):
    a = Attack(tiny_llama, PROMPT, "abc", AttackConfig(suffix_len=5))
    suffix = a.problem.init_ids
    got = a.scorer.gradient(suffix)
    seq = a.problem.sequence(suffix)
    start = len(a.problem.before_ids)
    W = tiny_llama.W_E.detach()
    onehot = torch.nn.functional.one_hot(suffix, W.shape[0]).float().requires_grad_(True)
    embeds = W[seq].clone()
    embeds = torch.cat([embeds[:start], onehot @ W, embeds[start + len(suffix) :]])
    logits = tiny_llama.hf_model(inputs_embeds=embeds[None]).logits[0]
    t = len(a.problem.target_ids)
    loss = torch.nn.functional.cross_entropy(logits[-t - 1 : -1], a.problem.target_ids)
    (want,) = torch.autograd.grad(loss, onehot)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_retokenisation_filter_rejects_a_suffix_that_becomes_another_token(tiny_llama):
    problem = AttackProblem(tiny_llama, PROMPT, TARGET, AttackConfig(suffix_len=7))
    tok = tiny_llama.tokenizer
    plain = torch.tensor(tok("abcdefg", add_special_tokens=False)["input_ids"])
    # the bytes of "<|eos|>" re-tokenise to the single special token, so the user could never send them
    special = torch.tensor(tok.convert_tokens_to_ids(list("<|eos|>")))
    assert problem.retokenizes(torch.stack([plain, special])).tolist() == [True, False]
    assert not problem.allowed[tok.eos_token_id] and problem.allowed[plain].all()


def test_plain_prompts_put_the_suffix_after_the_text(tiny_llama):
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(**{**SMALL, "chat": False}))
    assert not r.chat and r.rendered_prompt == PROMPT + r.best_suffix
    assert r.success and greedy(tiny_llama, r.rendered_prompt, 2).startswith(TARGET)


def test_a_model_without_gradients_is_refused_for_gcg_only():
    model = ns.load_model("tiny:llama", device="cpu")
    norm = model.hf_model.get_submodule(model.adapter.final_norm)
    norm.register_forward_hook(lambda mod, args, out: out.detach())
    with pytest.raises(GradientsUnavailableError, match="genetic.*gradient-free"):
        Attack(model, PROMPT, TARGET, AttackConfig(**SMALL))
    for method in ("genetic", "gradient-free"):
        r = run_attack(model, PROMPT, TARGET, AttackConfig(method=method, **{**SMALL, "steps": 3}))
        assert r.best_loss < r.init_loss


@pytest.mark.parametrize(
    "kwargs, target, error",
    [
        ({}, "", EmptyTargetError),
        ({}, "   ", EmptyTargetError),
        ({"max_new_tokens": 3}, "abcd", TargetTooLongError),
        ({"suffix_len": 0}, TARGET, SuffixLengthError),
        ({"suffix_len": 101}, TARGET, SuffixLengthError),
        ({"init_suffix": " "}, TARGET, SuffixLengthError),
        ({"width": 0}, TARGET, SearchWidthError),
        ({"method": "genetic", "width": 0}, TARGET, SearchWidthError),
        ({"method": "nope"}, TARGET, InvalidConfigError),
        ({"chat": True, "init_suffix": "x" * 101}, TARGET, SuffixLengthError),
    ],
)
def test_bad_input_has_named_errors(tiny_llama, kwargs, target, error):
    with pytest.raises(error) as e:
        Attack(tiny_llama, PROMPT, target, AttackConfig(**kwargs))
    assert str(e.value)


def test_population_error_names_the_population():
    with pytest.raises(SearchWidthError, match="population 0"):
        AttackConfig(method="genetic", width=0)


def test_cli_writes_the_run_as_json(tmp_path, capsys):
    out = tmp_path / "attack.json"
    argv = ["attack", "--model", "tiny:llama", "--prompt", PROMPT, "--target", TARGET, "--steps", "40"]
    argv += ["--width", "32", "--suffix-len", "8", "--topk", "16", "--max-new-tokens", "8", "--no-progress"]
    assert main(argv + ["--json", str(out), "--html", str(tmp_path / "f.html")]) == 0
    d = json.loads(out.read_text())
    assert {"best_suffix", "verified_output", "success", "steps", "losses", "seconds"} <= set(d)
    assert d["success"] and d["verified_output"].startswith(TARGET) and len(d["losses"]) == d["steps"]
    assert len(d["best_suffixes"]) == d["steps"] and "success at step" in capsys.readouterr().out


def test_cli_reports_bad_input_as_one_line(capsys):
    assert main(["attack", "--model", "tiny:llama", "--target", "", "--no-progress"]) == 2
    assert "target is empty" in capsys.readouterr().err


def test_result_figure_has_the_loss_curve(tiny_llama):
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(**SMALL))
    fig = r.figure()
    assert list(fig.data[0].y) == r.losses


def test_mellowmax_is_a_soft_maximum_of_the_token_losses(tiny_llama):
    ce = Attack(tiny_llama, PROMPT, "abc", AttackConfig(suffix_len=5))
    cands = ce.problem.init_ids.repeat(2, 1)
    cands[1, 2] = 90
    seqs = torch.stack([ce.problem.sequence(c) for c in cands])
    logp = torch.log_softmax(tiny_llama(seqs)[:, -4:-1].float(), -1)
    nll = -logp.gather(-1, ce.problem.target_ids.expand(2, -1)[..., None]).squeeze(-1)
    for alpha in (0.5, 4.0):
        mm = Attack(
            tiny_llama, PROMPT, "abc", AttackConfig(suffix_len=5, loss="mellowmax", mellowmax_alpha=alpha)
        )
        got = mm.scorer.scores(cands).losses
        want = (torch.logsumexp(alpha * nll, -1) - torch.log(torch.tensor(3.0))) / alpha
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
        assert bool((got >= nll.mean(-1) - 1e-6).all() and (got <= nll.max(-1).values + 1e-6).all())
    r = run_attack(tiny_llama, PROMPT, TARGET, AttackConfig(**{**SMALL, "loss": "mellowmax"}))
    assert r.success and r.best_loss < r.init_loss
