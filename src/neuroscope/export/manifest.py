"""``manifest.json`` of an ONNX split export: what each file is, and its SHA-256 (checked before use)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuroscope.errors import CorruptDataError, ResourceNotFoundError

FORMAT = "neuroscope-onnx-split"
VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.json"


def _hash(path: Path) -> str:
    from neuroscope.models.loading import file_sha256

    return file_sha256(path)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Hash every file under ``folder`` (but the manifest) into ``manifest["files"]`` and write it."""
    from neuroscope.record.writer import write_json_atomic

    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp"):
            rel = p.relative_to(folder).as_posix()
            files[rel] = {"sha256": _hash(p), "bytes": p.stat().st_size}
    manifest["files"] = files
    write_json_atomic(folder / MANIFEST, manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ResourceNotFoundError(
            f"{path} is missing: {folder} is not an ONNX export (run `neuroscope export-onnx --out {folder}`)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptDataError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptDataError(
            f"{path} is not a NeuroScope ONNX split manifest (format {FORMAT!r} expected)."
        )
    if manifest.get("version") != VERSION:
        raise CorruptDataError(
            f"{path}: manifest version {manifest.get('version')!r}, this reader knows {VERSION}."
        )
    return manifest


def model_files(manifest: dict[str, Any]) -> list[str]:
    """The files the two parts are made of (each ``.onnx`` and its external data)."""
    out: list[str] = []
    for part in manifest["parts"].values():
        out += [part["file"], *part.get("external_data", [])]
    for key, part in (manifest.get("kv_parts") or {}).items():
        if key in ("a", "b"):
            out += [part["file"], *part.get("external_data", [])]
    return out


def verify_files(folder: str | Path, manifest: dict[str, Any], names: list[str] | None = None) -> None:
    """Check size and SHA-256 of ``names`` (default: every listed file); a mismatch names the file."""
    folder = Path(folder)
    listed = manifest.get("files", {})
    for rel in names if names is not None else list(listed):
        entry = listed.get(rel)
        path = folder / rel
        if entry is None:
            raise CorruptDataError(f"{rel} is not listed in {folder / MANIFEST}: the export is incomplete.")
        if not path.is_file():
            raise CorruptDataError(f"{path} is missing (listed in {MANIFEST}).")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CorruptDataError(
                f"{path} is {size} bytes but {MANIFEST} says {entry['bytes']}: the file is corrupted or "
                "belongs to another export."
            )
        digest = _hash(path)
        if digest != entry["sha256"]:
            raise CorruptDataError(
                f"{path} has SHA-256 {digest[:16]}… but {MANIFEST} says {entry['sha256'][:16]}…: the file is "
                "corrupted or belongs to another export."
            )


def update_manifest(folder: str | Path, key: str, value: Any) -> dict[str, Any]:
    """Set one top-level entry (e.g. the validation figures), keeping the file hashes as they are."""
    from neuroscope.record.writer import write_json_atomic

    manifest = read_manifest(folder)
    manifest[key] = value
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest
