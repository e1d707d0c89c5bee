"""``tiny()`` for test modules that need a model outside a fixture.

Not imported from ``conftest``: with several conftest.py files in the tree, ``import conftest`` resolves to
whichever was loaded first (tests/browser/conftest.py in a full run)."""

from __future__ import annotations

import neuroscope as ns


def tiny(model_type: str = "llama") -> ns.HookedModel:
    return ns.load_model(f"tiny:{model_type}", device="cpu")
