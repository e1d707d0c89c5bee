"""Import SAELens next to TransformerLens 4 (dev use: the round-trip test and the benchmark).

sae-lens 6.x declares ``transformer-lens<4`` and imports TransformerLens 3 module paths at import time
(``transformer_lens.HookedTransformer``, ``transformer_lens.components``) that TransformerLens 4 moved or
dropped. The SAE classes, their save/load and ``SAETrainer`` never use those objects, so we satisfy the
imports with placeholder modules (``HookedRootModule`` is the real one) instead of downgrading the pinned
transformer-lens. Nothing is patched until :func:`import_sae_lens` is called.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _MissingTransformerLensModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a placeholder only for ``transformer_lens.*`` modules that do not exist."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("transformer_lens."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                if finder.find_spec(fullname, path, target) is not None:
                    return None
            except (ImportError, AttributeError, ValueError):
                continue
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Placeholder(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ == "transformer_lens.HookedTransformer":
            from transformer_lens.HookedRootModule import HookedRootModule

            module.HookedRootModule = HookedRootModule  # type: ignore[attr-defined]


def import_sae_lens() -> types.ModuleType:
    """``import sae_lens``, installing the placeholder finder first if TransformerLens 4 needs it."""
    if "sae_lens" in sys.modules:
        return sys.modules["sae_lens"]
    if importlib.util.find_spec("sae_lens") is None:
        raise ModuleNotFoundError(
            "sae_lens is not installed: pip install --no-deps sae-lens (see pyproject dev extras)"
        )
    if not any(isinstance(f, _MissingTransformerLensModules) for f in sys.meta_path):
        sys.meta_path.append(_MissingTransformerLensModules())
    import sae_lens

    return sae_lens
