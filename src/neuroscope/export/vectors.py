"""The steering-vector store (a folder the workbench reads with ``--vectors-dir``) and vectors in an export.

A stored vector is ``NAME.safetensors`` (tensor ``vector``, metadata ``layer``). A store is a folder that
others may hand over, so nothing in it is unpickled: a ``*.pt`` file is refused with a named error that says
how to convert it. In an export the chosen vectors travel as ``vectors.json`` (float32 values as JSON
numbers, which round-trip exactly), for the browser and for Python alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neuroscope.errors import CorruptDataError, ResourceNotFoundError, ShapeMismatchError


@dataclass(frozen=True)
class StoredVector:
    name: str
    layer: int  # the layer it was made at (its blocks.{layer}.hook_resid_pre)
    vector: torch.Tensor  # [d_model], float32, CPU
    source: str

    def check_width(self, d_model: int) -> None:
        if self.vector.ndim != 1 or self.vector.shape[0] != d_model:
            raise ShapeMismatchError(f"steering vector {self.name!r}", (d_model,), tuple(self.vector.shape))

    def describe(self, applied_layer: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "norm": float(self.vector.norm()),
            "source": self.source,
        }
        if applied_layer is not None:
            d["applied_at"] = f"blocks.{applied_layer}.hook_resid_pre"
            if applied_layer != self.layer:
                d["note"] = f"made at layer {self.layer}, applied between the parts at layer {applied_layer}"
        return d


def _read_one(path: Path) -> StoredVector:
    if path.suffix != ".safetensors":
        raise CorruptDataError(
            f"{path}: steering vectors are read from safetensors only (a pickle is never loaded). Convert it "
            "once where you trust it: neuroscope.export.vectors.save_vector(folder, name, layer, tensor)."
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            vec = f.get_tensor("vector") if "vector" in f.keys() else None  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types for a garbled header
        raise CorruptDataError(f"{path}: not a readable safetensors file ({e}).") from e
    layer_s = meta.get("layer")
    layer = int(layer_s) if layer_s is not None and layer_s.lstrip("-").isdigit() else None
    if not isinstance(vec, torch.Tensor) or layer is None:
        raise CorruptDataError(
            f"{path}: expected NAME.safetensors with a tensor 'vector' and metadata 'layer'."
        )
    return StoredVector(path.stem, int(layer), vec.detach().float().cpu(), str(path))


def read_vector_store(folder: str | Path) -> dict[str, StoredVector]:
    """Every vector in the store folder, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResourceNotFoundError(f"The steering-vector folder {folder} does not exist.")
    out: dict[str, StoredVector] = {}
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.safetensors")]):
        v = _read_one(path)
        out[v.name] = v
    return out


def select_vectors(folder: str | Path, names: list[str]) -> list[StoredVector]:
    store = read_vector_store(folder)
    missing = [n for n in names if n not in store]
    if missing:
        raise ResourceNotFoundError(
            f"No steering vector named {', '.join(map(repr, missing))} in {folder}; "
            f"it has: {', '.join(sorted(store)) or 'none'}."
        )
    return [store[n] for n in names]


def save_vector(folder: str | Path, name: str, layer: int, vector: torch.Tensor) -> Path:
    """Write ``NAME.safetensors`` into the store (the format :func:`read_vector_store` reads first)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file(
        {"vector": vector.detach().float().cpu().contiguous()}, str(path), metadata={"layer": str(layer)}
    )
    return path


def vectors_json(vectors: list[StoredVector] | tuple, applied_layer: int) -> str:
    return json.dumps(
        {"vectors": [{**v.describe(applied_layer), "values": v.vector.tolist()} for v in vectors]}
    )


def read_export_vectors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The vectors of an export (``vectors.json``), by name."""
    path = Path(folder) / "vectors.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {v["name"]: torch.tensor(v["values"], dtype=torch.float32) for v in data["vectors"]}


def read_vector(path: str | Path) -> StoredVector:
    """One stored vector file (``NAME.safetensors``: tensor ``vector``, metadata ``layer``); never unpickles."""
    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"The vector file {p} does not exist (or is not a file).")
    return _read_one(p)
