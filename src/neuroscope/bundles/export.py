"""Write a bundle from SAEs and edits in memory (or folders), atomically: a temporary sibling folder renamed
into place when complete, so a failed export leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.bundles.files import check_name
from neuroscope.bundles.manifest import FORMAT, MANIFEST, VERSION, edit_entry, model_entry, sae_entry
from neuroscope.edits.edit import LoraEdit, load_edit
from neuroscope.edits.fingerprint import model_sha256, sae_sha256
from neuroscope.errors import InvalidConfigError, ModelMismatchError
from neuroscope.models.loading import file_sha256

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

FEATURE_FILES = ("features.parquet", "contexts.parquet", "meta.json")


@dataclass
class BundleContents:
    """What goes into (or came out of) a bundle."""

    saes: dict[str, SAE] = field(default_factory=dict)
    edits: dict[str, LoraEdit] = field(default_factory=dict)
    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    features: dict[str, Path] = field(default_factory=dict)  # SAE name -> a feature-store folder


def _unique(name: str, taken: set[str]) -> str:
    base, i = name, 2
    while name in taken:
        name = f"{base}-{i}"
        i += 1
    return name


def from_folders(
    sae_dirs: list[str | os.PathLike], lora_dirs: list[str | os.PathLike], labels: Mapping | None = None
) -> BundleContents:
    from neuroscope.sae.io import load_sae

    c = BundleContents()
    for d in sae_dirs:
        p = Path(d)
        name = _unique(check_name(p.resolve().name, "SAE"), set(c.saes))
        c.saes[name] = load_sae(p)
        if (p / "features" / "features.parquet").exists():
            c.features[name] = p / "features"
    for d in lora_dirs:
        p = Path(d)
        c.edits[_unique(check_name(p.resolve().name, "edit"), set(c.edits))] = load_edit(p)
    for sae_name, table in (labels or {}).items():
        c.labels[str(sae_name)] = {int(k): str(v) for k, v in dict(table).items()}
    return c


def export_bundle(
    model: HookedModel, contents: BundleContents, out: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write ``contents`` as a bundle at ``out``. Every edit must come from this model's weights and name
    an SAE of the bundle by its weights' hash (edits built by NeuroScope record both)."""
    from neuroscope.edits.host import EditHost
    from neuroscope.sae.io import save_sae

    out = Path(out)
    if out.exists() and not overwrite:
        raise InvalidConfigError(f"{out} exists: choose another --out or pass overwrite (--force).")
    mhash = model_sha256(model)
    by_hash = {sae_sha256(s): n for n, s in contents.saes.items()}
    host = EditHost.of(model)
    edits: dict[str, tuple[LoraEdit, str | None]] = {}
    for name, e in contents.edits.items():
        check_name(name, "edit")
        made_for = e.info.get("model_sha256")
        if made_for and made_for != mhash:
            raise ModelMismatchError(
                f"edit {name!r} was built on model {e.info.get('model', '?')} with weights {made_for[:12]}…, "
                f"not on {model.cfg.name} ({mhash[:12]}…): rebuild it on this model."
            )
        sae_name = by_hash.get(e.info.get("sae_sha256", ""))
        if e.info.get("sae_sha256") and sae_name is None:
            raise InvalidConfigError(
                f"edit {name!r} was built from an SAE that is not in the bundle (SAE hash "
                f"{e.info['sae_sha256'][:12]}…): add that SAE with --sae"
            )
        host.check(e, f"edit {name!r}")
        edits[name] = (e, sae_name)
    for sae_name in contents.labels:
        if sae_name not in contents.saes:
            raise InvalidConfigError(f"labels given for SAE {sae_name!r}, which is not in the bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        saes = {}
        for name, sae in contents.saes.items():
            check_name(name, "SAE")
            folder = save_sae(sae, tmp / "saes" / name)
            if name in contents.features:
                (folder / "features").mkdir()
                for f in FEATURE_FILES:
                    shutil.copyfile(contents.features[name] / f, folder / "features" / f)
            saes[name] = sae_entry(name, sae, sae_sha256(sae))
        edit_entries = {}
        for name, (e, sae_name) in edits.items():
            e.save(tmp / "lora" / name, with_info=False)
            edit_entries[name] = edit_entry(name, e, sae_name)
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model": model_entry(model),
            "saes": saes,
            "edits": edit_entries,
            "labels": {s: {str(k): v for k, v in sorted(t.items())} for s, t in contents.labels.items()},
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
