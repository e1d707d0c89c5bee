"""File-level checks for untrusted folders: confined paths, no pickles, intact safetensors headers."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath

from neuroscope.errors import TruncatedFileError, UnsafeFormatError, UnsafePathError

# formats that can execute code when loaded (pickle, torch.save zips, joblib, numpy object arrays)
REFUSED_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5"}
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise UnsafePathError(
            f"{what} name {name!r} is not allowed: use 1-64 letters, digits, '_', '-', '.' (no '..', no '/')."
        )
    return name


def confined(root: Path, rel: str, what: str = "path") -> Path:
    """``root / rel`` if it stays inside ``root`` (relative, no ``..``, no symlink out); else UnsafePathError."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePathError(f"{what} {rel!r} is not a relative path.")
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or win.is_absolute() or win.drive or rel.startswith(("/", "\\")):
        raise UnsafePathError(f"{what} {rel!r} is absolute: paths in a bundle are relative to the bundle.")
    if ".." in posix.parts or ".." in win.parts:
        raise UnsafePathError(f"{what} {rel!r} climbs out of the bundle with '..'.")
    base = root.resolve()
    target = (root / rel).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{what} {rel!r} resolves to {target}, outside {base} (a symlink out?).")
    return target


def walk(root: Path) -> list[str]:
    """Every file under ``root`` (relative posix paths); a symlink that leaves ``root`` is refused."""
    base = root.resolve()
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            target = p.resolve()
            if target != base and base not in target.parents:
                raise UnsafePathError(f"{rel} is a symlink to {target}, outside the bundle.")
        if p.is_file():
            out.append(rel)
    return out


def check_format(path: Path, rel: str) -> None:
    """Refuse pickle-based weight files by suffix and by content."""
    if path.suffix.lower() in REFUSED_SUFFIXES:
        raise UnsafeFormatError(
            f"{rel} is a {path.suffix} file: weight files must be safetensors (pickle-based formats can run "
            "code when loaded, so they are refused, never opened)."
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if path.suffix == ".safetensors" and head.startswith(_PICKLE_MAGIC):
        raise UnsafeFormatError(
            f"{rel} is named .safetensors but holds a pickle/torch.save archive: refused."
        )


def check_safetensors(path: Path, rel: str) -> dict:
    """Parse the header and check every tensor's byte range lies inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise TruncatedFileError(f"{rel}: {size} bytes, shorter than a safetensors header length.")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise TruncatedFileError(
                f"{rel}: the header claims {n} bytes but the file has {size - 8} after the length: truncated."
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TruncatedFileError(f"{rel}: the safetensors header is not valid JSON ({e}).") from e
    if not isinstance(header, dict):
        raise TruncatedFileError(f"{rel}: the safetensors header is not a JSON object.")
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            lo, hi = (int(x) for x in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise TruncatedFileError(f"{rel}: tensor {name!r} has no valid data_offsets.") from e
        if not 0 <= lo <= hi:
            raise TruncatedFileError(f"{rel}: tensor {name!r} has offsets {lo}..{hi}.")
        end = max(end, hi)
    if 8 + n + end > size:
        raise TruncatedFileError(
            f"{rel}: tensors need {8 + n + end} bytes but the file has {size}: truncated."
        )
    return header
