"""Analyses: pure functions over a HookedModel and prompts/caches that return result dataclasses.

Each result has ``.to_dict()`` (JSON-ready) and ``.figure()`` (a Plotly figure). Import the submodules
directly (``from neuroscope.analysis import patching``); nothing is loaded at import time.
"""
