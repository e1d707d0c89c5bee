"""Verify an untrusted bundle completely before anything of it touches the model, then attach all of it or
none. Every refusal is its own error class (``neuroscope.errors``), raised before the first attachment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.bundles.export import BundleContents
from neuroscope.bundles.files import check_format, check_name, check_safetensors, confined, walk
from neuroscope.bundles.manifest import FORMAT, MANIFEST, SUPPORTED_VERSIONS
from neuroscope.edits.closed_form import check_features
from neuroscope.edits.fingerprint import model_sha256, sae_sha256
from neuroscope.errors import (
    BundleVersionError,
    ChecksumMismatchError,
    CorruptDataError,
    HookWidthMismatchError,
    ModelMismatchError,
    RankOutOfRangeError,
    ResourceNotFoundError,
    UnknownFeatureError,
)
from neuroscope.models.loading import file_sha256

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class VerifiedBundle:
    path: Path
    manifest: dict[str, Any]
    contents: BundleContents
    model_matches: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "bundle": str(self.path),
            "model": m["model"],
            "model_matches": self.model_matches,
            "saes": m["saes"],
            "edits": m["edits"],
            "labels": m.get("labels", {}),
            "warnings": self.warnings,
        }


def _read_manifest(root: Path) -> dict[str, Any]:
    f = root / MANIFEST
    if not root.is_dir():
        raise ResourceNotFoundError(f"Bundle folder {root} does not exist.")
    if not f.is_file():
        raise ResourceNotFoundError(f"No {MANIFEST} in {root}: not a NeuroScope bundle.")
    try:
        m = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptDataError(f"{f} is not valid JSON: {e}") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleVersionError(
            f"{f} is not a {FORMAT} manifest (format {m.get('format') if isinstance(m, dict) else None!r})."
        )
    if m.get("version") not in SUPPORTED_VERSIONS:
        raise BundleVersionError(
            f"{f} has manifest version {m.get('version')!r}; this NeuroScope reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}: upgrade NeuroScope or re-export the bundle."
        )
    for key, kind in (("model", dict), ("saes", dict), ("edits", dict), ("files", dict)):
        if not isinstance(m.get(key), kind):
            raise CorruptDataError(f"{f}: '{key}' must be a JSON object.")
    return m


def _check_files(root: Path, m: dict[str, Any]) -> None:
    listed: dict[str, str] = m["files"]
    for rel in listed:
        confined(root, rel, "file")
    for section in ("saes", "edits"):
        for name, entry in m[section].items():
            check_name(name, section[:-1])
            if not isinstance(entry, dict):
                raise CorruptDataError(f"manifest {section}.{name} must be an object")
            confined(root, str(entry.get("path", "")), f"{section}.{name}.path")
    present = walk(root)
    for rel in present:
        check_format(root / rel, rel)
    present_set = set(present) - {MANIFEST}
    missing = sorted(set(listed) - present_set)
    unlisted = sorted(present_set - set(listed))
    if missing:
        raise ChecksumMismatchError(f"the manifest lists files the bundle lacks: {', '.join(missing[:5])}")
    if unlisted:
        raise ChecksumMismatchError(
            f"files not covered by the manifest's checksums: {', '.join(unlisted[:5])} (refused: anything "
            "unlisted could have been added after export)"
        )
    for rel, digest in listed.items():
        got = file_sha256(root / rel)
        if got != digest:
            raise ChecksumMismatchError(
                f"{rel}: SHA-256 {got[:16]}… differs from the manifest's {str(digest)[:16]}… (changed or corrupted)."
            )
        if rel.endswith(".safetensors"):
            check_safetensors(root / rel, rel)


def verify_bundle(path: str | os.PathLike, model: HookedModel, force: bool = False) -> VerifiedBundle:
    """Check everything (paths, formats, checksums, headers, model, SAE widths, adapters, ranks, feature ids)
    and load the parts into memory; attaches nothing."""
    from neuroscope.edits.edit import load_edit
    from neuroscope.edits.host import EditHost
    from neuroscope.sae.io import load_sae

    root = Path(path)
    m = _read_manifest(root)
    _check_files(root, m)
    warnings: list[str] = []
    made_for = m["model"].get("weights_sha256")
    ours = model_sha256(model)
    matches = made_for == ours
    if not matches:
        msg = (
            f"the bundle was made for model {m['model'].get('name', '?')!r} ({m['model'].get('model_type', '?')}, "
            f"weights {str(made_for)[:12]}…), not {model.cfg.name!r} (weights {ours[:12]}…)"
        )
        if not force:
            raise ModelMismatchError(msg + ": refused (pass --force to attach anyway).")
        warnings.append(msg + "; attached because of --force")
    contents = BundleContents()
    for name, entry in m["saes"].items():
        folder = confined(root, entry["path"])
        sae = load_sae(folder)
        hook = model.resolve_hook_name(sae.cfg.hook_name or str(entry.get("hook", "")))
        width = (
            model.cfg.d_model
            if hook.split(".")[-1].startswith(("hook_resid", "hook_attn_out", "hook_mlp_out", "hook_embed"))
            else None
        )
        if width is not None and sae.d_in != width:
            raise HookWidthMismatchError(
                f"SAE {name!r} reads {sae.d_in}-wide activations but {hook} of {model.cfg.name} is {width} wide."
            )
        if entry.get("width") not in (None, sae.d_sae):
            raise HookWidthMismatchError(
                f"SAE {name!r}: the manifest says width {entry['width']}, its file {sae.d_sae}."
            )
        contents.saes[name] = sae
        if (folder / "features" / "features.parquet").exists():
            contents.features[name] = folder / "features"
    host = EditHost.of(model)
    for name, entry in m["edits"].items():
        edit = load_edit(confined(root, entry["path"]))
        if entry.get("rank") not in (None, edit.rank):
            raise RankOutOfRangeError(
                f"edit {name!r}: the manifest says rank {entry['rank']}, its adapter {edit.rank}."
            )
        sae_name = entry.get("sae")
        if sae_name is not None:
            if sae_name not in contents.saes:
                raise CorruptDataError(
                    f"edit {name!r} names SAE {sae_name!r}, which the bundle does not hold."
                )
            try:
                check_features(contents.saes[sae_name], entry.get("features") or [])
            except UnknownFeatureError as e:
                raise UnknownFeatureError(f"edit {name!r}: {e}") from None
        host.check(edit, f"edit {name!r}")
        edit.info = {k: v for k, v in entry.items() if k not in ("path", "target_modules", "sae")}
        # provenance as NeuroScope's own edits carry it, so a re-export links the edit to its SAE again
        edit.info.update(model=m["model"].get("name"), model_sha256=made_for)
        if sae_name is not None:
            edit.info["sae_sha256"] = sae_sha256(contents.saes[sae_name])
        contents.edits[name] = edit
    for sae_name, table in (m.get("labels") or {}).items():
        if sae_name not in contents.saes or not isinstance(table, dict):
            raise CorruptDataError(f"labels for {sae_name!r}: no such SAE in the bundle")
        labels = {}
        for k, v in table.items():
            try:
                f = int(k)
            except ValueError:
                raise CorruptDataError(f"label key {k!r} of SAE {sae_name!r} is not a feature id") from None
            check_features(contents.saes[sae_name], [f])
            labels[f] = str(v)[:200]
        contents.labels[sae_name] = labels
    return VerifiedBundle(root, m, contents, matches, warnings)


@dataclass
class AttachedBundle:
    verified: VerifiedBundle
    edit_names: dict[str, str]  # bundle edit name -> name attached on the model

    @property
    def contents(self) -> BundleContents:
        return self.verified.contents

    def to_dict(self) -> dict[str, Any]:
        return {**self.verified.to_dict(), "attached_edits": self.edit_names}


def attach_bundle(verified: VerifiedBundle, model: HookedModel, prefix: str = "") -> AttachedBundle:
    """Attach every edit of a verified bundle to the model (named ``prefix + name``), or none of them."""
    from neuroscope.edits.host import EditHost

    host = EditHost.of(model)
    done: dict[str, str] = {}
    try:
        for name, edit in verified.contents.edits.items():
            host.add(prefix + name, edit)
            done[name] = prefix + name
    except BaseException:
        for attached in done.values():
            host.remove(attached)
        raise
    return AttachedBundle(verified, done)


def import_bundle(
    path: str | os.PathLike, model: HookedModel, force: bool = False, prefix: str = ""
) -> AttachedBundle:
    """Verify, then attach all or nothing."""
    return attach_bundle(verify_bundle(path, model, force), model, prefix)
