"""Where a prepared suite lives and whether a cached one can be trusted.

One folder per model weights (``<root>/<name>-<sha256 of the weights, 16 hex>``)::

    .lock           flock: the one process that prepares (another one waits on it, then reads the cache)
    progress.json   the preparing process's stage (a waiting server shows it)
    work/           the suite being built; resumable after kill -9 (recordings continue, trained layers stay)
    suite/          the finished suite: work/ renamed in one step once whole, with prepared.json

A server attaches only ``suite/`` and only when its ``prepared.json`` names this format, package version,
model weights and plan, and every SAE in it loads: anything else is set aside and rebuilt, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.prepare.plan import PreparePlan
    from neuroscope.sae.suite import SAESuite

FORMAT = 1
META_FILE = "prepared.json"


def default_root() -> Path:
    """``$NEUROSCOPE_CACHE/prepared`` (``~/.cache/neuroscope/prepared``): beside the converted models."""
    from neuroscope.models.loading import cache_root

    return cache_root() / "prepared"


@dataclass(frozen=True)
class PrepareDirs:
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def suite(self) -> Path:
        return self.root / "suite"

    @classmethod
    def for_model(cls, root: str | os.PathLike, name: str, weights_sha256: str) -> PrepareDirs:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:64] or "model"
        return cls(Path(root) / f"{safe}-{weights_sha256[:16]}")


def expected_meta(model_name: str, weights_sha256: str, plan: PreparePlan) -> dict[str, Any]:
    from neuroscope import __version__

    return {
        "format": FORMAT,
        "neuroscope": __version__,
        "model": model_name,
        "weights_sha256": weights_sha256,
        "plan": plan.to_dict(),
    }


def mismatch(found: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Why a cached suite's ``prepared.json`` does not fit, in words; None when it fits."""
    for key, what in (
        ("format", "cache format"),
        ("neuroscope", "NeuroScope version"),
        ("weights_sha256", "model weights"),
        ("model", "model"),
        ("plan", "suite sizes"),
    ):
        if found.get(key) != want[key]:
            return f"it was made for another {what} ({_short(found.get(key))}, now {_short(want[key])})"
    return None


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:16] + "…"


@dataclass
class CacheState:
    """``ready`` (suite loaded), ``missing`` or ``stale`` (``reason`` says why it cannot be used)."""

    state: str
    reason: str = ""
    suite: SAESuite | None = None


def check(dirs: PrepareDirs, want: dict[str, Any], model: HookedModel | None = None) -> CacheState:
    """Whether ``dirs.suite`` holds a whole suite made for ``want``; loads it (every SAE checked) when so."""
    from neuroscope.errors import NeuroscopeError
    from neuroscope.sae.suite import SAESuite

    meta_file = dirs.suite / META_FILE
    if not dirs.suite.exists():
        return CacheState("missing")
    try:
        found = json.loads(meta_file.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return CacheState("stale", f"its {META_FILE} cannot be read ({type(e).__name__}: {e})")
    why = mismatch(found, want)
    if why:
        return CacheState("stale", why)
    try:
        suite = SAESuite.load(dirs.suite, model)
        layer = int(want["plan"]["feature_layer"])
        if suite.features(layer) is None:
            raise ValueError(f"the layer-{layer} SAE has no feature store")
    except (NeuroscopeError, OSError, ValueError, KeyError, RuntimeError) as e:
        return CacheState("stale", f"it is damaged ({type(e).__name__}: {e})")
    return CacheState("ready", suite=suite)


def set_aside(path: Path) -> None:
    """Remove a folder that cannot be used, renaming it first so that no reader sees it half deleted."""
    if not path.exists():
        return
    trash = path.with_name(f"{path.name}.discarded-{os.getpid()}-{time.time_ns()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def read_progress(dirs: PrepareDirs) -> dict[str, Any] | None:
    try:
        d = json.loads(dirs.progress.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
