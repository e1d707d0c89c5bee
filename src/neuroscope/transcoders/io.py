"""Transcoder sets on disk, in the layout circuit-tracer 0.5 loads (``load_transcoder_set`` via its
``config.yaml``), plus NeuroScope's own manifest for the checks circuit-tracer does not make.

A folder holds ``layer_{l}.safetensors`` per layer with circuit-tracer's tensor names and orientations
(``W_enc [d_tc, d_in]`` and ``W_skip [d_out, d_in]``, applied as ``F.linear``; ``W_dec [d_tc, d_out]``;
``b_enc``, ``b_dec``; ``activation_function.threshold`` for JumpReLU), ``config.yaml`` (``model_kind:
transcoder_set``, ``feature_input_hook``, ``feature_output_hook``, ``activation``, ``k``, ``transcoders``:
the file of each layer in order) and ``transcoders.json`` (model, widths, activation, hooks, layers, and
what training and evaluation recorded). Files are written to a temporary name and renamed into place, so a
killed run never leaves a half-written layer. See docs/transcoders/README.md."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import (
    CorruptDataError,
    ResourceNotFoundError,
    TranscoderMismatchError,
    UnsafeFormatError,
    UnsafePathError,
)
from neuroscope.transcoders.model import HOOK_IN, HOOK_OUT, Transcoder, TranscoderConfig, TranscoderSet

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

MANIFEST = "transcoders.json"
CT_CONFIG = "config.yaml"
FORMAT = 1


def layer_file(layer: int) -> str:
    return f"layer_{int(layer)}.safetensors"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def transcoder_state(tc: Transcoder) -> dict[str, torch.Tensor]:
    """The tensors of one layer file, in circuit-tracer's names and orientations."""
    state = {
        "W_enc": tc.W_enc.detach().t(),
        "W_dec": tc.W_dec.detach(),
        "b_enc": tc.b_enc.detach(),
        "b_dec": tc.b_dec.detach(),
    }
    if tc.W_skip is not None:
        state["W_skip"] = tc.W_skip.detach().t()
    if tc.cfg.activation == "jumprelu":
        state["activation_function.threshold"] = tc.threshold.detach()
    return {k: v.float().contiguous().cpu() for k, v in state.items()}


def save_transcoder(tc: Transcoder, folder: str | os.PathLike) -> Path:
    """Write ``layer_{l}.safetensors`` atomically (circuit-tracer's layout)."""
    from safetensors.torch import save_file

    out = Path(folder) / layer_file(tc.layer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(transcoder_state(tc), str(tmp))
    os.replace(tmp, out)
    return out


def ct_config(folder: Path, cfg: TranscoderConfig, layers: list[int]) -> str:
    """circuit-tracer's config.yaml. Its loader needs every layer from 0 to the last, reads ``transcoders``
    as paths as given (so they are absolute here), ``activation``/``k`` for TopK and ReLU, and finds a
    JumpReLU threshold in the weights."""
    lines = [
        "model_kind: transcoder_set",
        f"model_name: {cfg.model_name}",
        "feature_input_hook: ln2.hook_normalized",
        "feature_output_hook: hook_mlp_out",
        f"scan: neuroscope/{cfg.model_name}/{'skip-' if cfg.skip else ''}{cfg.activation}-{cfg.d_tc}",
    ]
    if cfg.activation in ("topk", "relu"):
        lines.append(f"activation: {cfg.activation}")
    if cfg.activation == "topk":
        lines.append(f"k: {cfg.k}")
    lines.append("transcoders:")
    lines += [f"  - {json.dumps(str((folder / layer_file(l)).resolve()))}" for l in layers]
    return "\n".join(lines) + "\n"


def write_manifest(
    folder: str | os.PathLike, cfg: TranscoderConfig, layers: list[int], extra: dict[str, Any] | None = None
) -> None:
    """``transcoders.json`` and circuit-tracer's ``config.yaml`` for the layers finished so far."""
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    info = {
        "format": FORMAT,
        "model": cfg.model_name,
        "d_in": cfg.d_in,
        "d_tc": cfg.d_tc,
        "activation": cfg.activation,
        "k": cfg.k,
        "skip": cfg.skip,
        "hook_in": HOOK_IN,
        "hook_out": HOOK_OUT,
        "layers": sorted(layers),
        "files": {str(l): layer_file(l) for l in sorted(layers)},
        **(extra or {}),
    }
    _atomic_write_text(p / MANIFEST, json.dumps(info, indent=2))
    _atomic_write_text(p / CT_CONFIG, ct_config(p, cfg, sorted(layers)))


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    p = Path(folder)
    if not (p / MANIFEST).is_file():
        raise ResourceNotFoundError(
            f"{p} holds no {MANIFEST}: train transcoders there with `neuroscope train-transcoders --out {p}`."
        )
    try:
        info: dict[str, Any] = json.loads((p / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise CorruptDataError(f"{p / MANIFEST} is not valid JSON: {e}") from e
    return info


def _confined(root: Path, name: str) -> Path:
    f = (root / name).resolve()
    if not f.is_relative_to(root.resolve()):
        raise UnsafePathError(f"{name!r} in {root / MANIFEST} points outside {root}.")
    if f.suffix != ".safetensors":
        raise UnsafeFormatError(f"{name!r} in {root / MANIFEST} is not a .safetensors file; refused.")
    return f


def load_transcoder(path: Path, cfg: TranscoderConfig) -> Transcoder:
    """One layer file, every tensor's shape checked against ``cfg`` (no pickle: safetensors only)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ResourceNotFoundError(f"Transcoder file {path} is missing.")
    state = load_file(str(path))
    d_in, d_tc = cfg.d_in, cfg.d_tc
    want = {"W_enc": (d_tc, d_in), "W_dec": (d_tc, d_in), "b_enc": (d_tc,), "b_dec": (d_in,)}
    if cfg.skip:
        want["W_skip"] = (d_in, d_in)
    if cfg.activation == "jumprelu":
        want["activation_function.threshold"] = (d_tc,)
    for key, shape in want.items():
        if key not in state:
            raise TranscoderMismatchError(f"{path} has no tensor {key!r} (a {cfg.activation} transcoder needs it).")
        if tuple(state[key].shape) != shape:
            raise TranscoderMismatchError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape} "
                f"(d_in={d_in}, d_tc={d_tc} from {MANIFEST})."
            )
    extra = sorted(set(state) - set(want))
    if extra:
        raise TranscoderMismatchError(f"{path} holds tensors {extra} this {cfg.activation} transcoder does not have.")
    tc = Transcoder(cfg)
    with torch.no_grad():
        tc.W_enc.copy_(state["W_enc"].t())
        tc.W_dec.copy_(state["W_dec"])
        tc.b_enc.copy_(state["b_enc"])
        tc.b_dec.copy_(state["b_dec"])
        if tc.W_skip is not None:
            tc.W_skip.copy_(state["W_skip"].t())
        if cfg.activation == "jumprelu":
            tc.threshold.copy_(state["activation_function.threshold"])
    return tc


def config_of(info: dict[str, Any], layer: int) -> TranscoderConfig:
    return TranscoderConfig(
        d_in=int(info["d_in"]),
        d_tc=int(info["d_tc"]),
        layer=layer,
        activation=str(info["activation"]),
        k=None if info.get("k") is None else int(info["k"]),
        skip=bool(info.get("skip", False)),
        model_name=str(info.get("model", "")),
    )


def check_set_model(info: dict[str, Any], model: HookedModel, where: Path) -> None:
    """Refuse, by name, a set trained on another model, of another width, or on other hooks."""
    name = str(info.get("model", ""))
    if name and name != model.cfg.name:
        raise TranscoderMismatchError(f"The transcoders in {where} were trained on {name!r}, not on {model.cfg.name!r}.")
    if int(info["d_in"]) != model.cfg.d_model:
        raise TranscoderMismatchError(
            f"The transcoders in {where} take width {info['d_in']} but {model.cfg.name} has d_model={model.cfg.d_model}."
        )
    if (info.get("hook_in"), info.get("hook_out")) != (HOOK_IN, HOOK_OUT):
        raise TranscoderMismatchError(
            f"The transcoders in {where} map {info.get('hook_in')} -> {info.get('hook_out')}; "
            f"NeuroScope's replacement model needs {HOOK_IN} -> {HOOK_OUT}."
        )
    for layer in info.get("layers", []):
        if not 0 <= int(layer) < model.cfg.n_layers:
            raise TranscoderMismatchError(
                f"The transcoders in {where} include layer {layer}; {model.cfg.name} has {model.cfg.n_layers} layers."
            )


def load_transcoders(path: str | os.PathLike, model: HookedModel | None = None) -> TranscoderSet:
    """Load a transcoder folder written by :func:`write_manifest`/:func:`save_transcoder`. With ``model``,
    a set from another model, width or hook pair is refused (:class:`TranscoderMismatchError`)."""
    p = Path(path)
    if not p.is_dir():
        raise ResourceNotFoundError(f"Transcoder folder {p} does not exist.")
    info = read_manifest(p)
    if int(info.get("format", 0)) != FORMAT:
        raise CorruptDataError(f"{p / MANIFEST} has format {info.get('format')!r}; this NeuroScope reads {FORMAT}.")
    if model is not None:
        check_set_model(info, model, p)
    files = dict(info.get("files", {}))
    layers = sorted(int(l) for l in info.get("layers", []))
    if not layers:
        raise ResourceNotFoundError(f"{p / MANIFEST} lists no finished layers.")
    tcs = {}
    for layer in layers:
        tcs[layer] = load_transcoder(_confined(p, str(files.get(str(layer), layer_file(layer)))), config_of(info, layer))
    return TranscoderSet(str(info.get("model", "")), tcs)
