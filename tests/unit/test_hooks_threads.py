"""Hooks installed on one thread while another thread runs a forward (the attack search runs beside the model
worker): torch records a pre-hook and its with_kwargs flag in two steps, so a forward can call a just-installed
hook without kwargs. The dispatcher must treat that call as a no-op rather than fail the other forward."""

from __future__ import annotations

import threading
import time

import torch

import neuroscope as ns
from neuroscope.interventions import Ablate
from neuroscope.models.hooks import _STATE, HookState


def test_pre_hook_called_without_kwargs_is_a_no_op():
    model = ns.load_model("tiny:llama", device="cpu")
    dispatch = next(d for d in model._registry._dispatch.values() if d.pre)
    x = torch.randn(1, 3, model.cfg.d_model)
    token = _STATE.set(HookState())
    try:
        assert dispatch._pre_hook(dispatch.module, (x,)) is None
    finally:
        _STATE.reset(token)


def test_forwards_beside_hook_installs_on_another_thread():
    model = ns.load_model("tiny:llama", device="cpu")
    prompt = "threads share one model"
    with torch.no_grad():
        want = model.run_with_hooks(prompt, interventions=[Ablate(heads=[(1, 0)])])
    errors: list[BaseException] = []
    stop = time.monotonic() + 3.0

    def installer() -> None:  # acquires and releases every dispatcher, over and over
        names = model.hook_names()
        try:
            while time.monotonic() < stop:
                with torch.no_grad():
                    model.run_with_cache(prompt, names=names)
        except BaseException as e:
            errors.append(e)

    def forwarder() -> None:
        try:
            while time.monotonic() < stop:
                with torch.no_grad():
                    got = model.run_with_hooks(prompt, interventions=[Ablate(heads=[(1, 0)])])
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=installer), threading.Thread(target=forwarder)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[:1]


def test_frozen_norms_and_scale_capture_act_only_on_their_own_thread():
    """A provenance graph freezes norm scales with module hooks while the attack search runs a forward of its own
    on another thread: that forward must see the plain model, and must not overwrite the recorded scales."""
    from neuroscope.graphs.linear import capture_scales, frozen_norms

    model = ns.load_model("tiny:llama", device="cpu")
    with torch.no_grad():
        want = model.run_with_hooks("another thread's prompt")
        with capture_scales(model, [0, 1]) as scales:
            model.run_with_hooks("the graph's own prompt, longer than the other")
    shapes = {k: tuple(v.shape) for k, v in scales.items()}
    got: list[torch.Tensor] = []
    with torch.no_grad(), frozen_norms(model, scales), capture_scales(model, [0, 1]) as again:
        t = threading.Thread(target=lambda: got.append(model.run_with_hooks("another thread's prompt")))
        t.start()
        t.join()
    torch.testing.assert_close(got[0], want, rtol=0, atol=0)
    assert again == {} and {k: tuple(v.shape) for k, v in scales.items()} == shapes
