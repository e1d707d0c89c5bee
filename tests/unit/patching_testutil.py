"""The reference an activation-patching sweep is checked against: one forward per patch through
``interventions.Patch`` (``patching.patch_one``), nothing shared between patches."""

from __future__ import annotations

import time

import torch

from neuroscope.analysis import patching


def patch_loop(model, setup, site="resid_pre", layers=None, lean=False) -> patching.PatchingResult:
    units = sorted(patching._units(model, site, setup.clean.shape[1], layers))
    t0 = time.perf_counter()
    names = sorted({patching.hook_for(site, u[0]) for u in units})
    with torch.no_grad():
        _, clean = model.run_with_cache(setup.clean, names=names)
    lds = torch.tensor([patching.patch_one(model, setup, site, u, clean, lean) for u in units])
    seconds = time.perf_counter() - t0
    return patching._result(model, setup, site, lds, units, layers, seconds, "loop", len(units) + 1)
