"""8-bit and 4-bit models: loading, weights read back in floating point, and what autograd can still do.

Quantization goes through transformers' own ``BitsAndBytesConfig`` path (bitsandbytes has a CPU backend, so
the same code runs on a laptop and a GPU), or through torchao's int8 weight-only quantization where
bitsandbytes is not installed. The Hugging Face modules keep their names and run their own forward, so every
hook point stays where it was: a quantized ``o_proj`` is still the module whose input is ``hook_z``.

Weight accessors (``W_O``, ``W_out``, ``W_U``, ``W_E`` …) read weights through :func:`dequantized_weight`:
the int8 rows times their scales, the 4-bit blocks through their quantization state, and, for a module whose
weights ``device_map`` offloaded to CPU or disk, the weights fetched for the duration of the read.

bitsandbytes and torchao are imported only here, and only when a quantized model is asked for.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from neuroscope.errors import GradientsUnavailableError, InvalidConfigError, QuantizationUnavailableError

MODES = ("int8", "nf4")
BACKENDS = ("bitsandbytes", "torchao")


@dataclass(frozen=True)
class QuantInfo:
    """How a loaded model is quantized. ``gradients``: whether a backward pass through its quantized
    layers reaches their inputs (probed once at load, not assumed); ``weight_bytes``: bytes held by the
    model's parameters and buffers, quantization states included."""

    mode: str
    backend: str
    gradients: bool
    weight_bytes: int
    quantized_modules: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise InvalidConfigError(f"quantize must be one of {', '.join(MODES)} (or None), got {mode!r}")


def pick_backend(mode: str, backend: str | None = None) -> str:
    """bitsandbytes when installed (int8 and nf4), else torchao (int8 only); a clear error otherwise."""
    check_mode(mode)
    if backend is not None and backend not in BACKENDS:
        raise InvalidConfigError(
            f"quantization backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    candidates = [backend] if backend else list(BACKENDS)
    for name in candidates:
        if name == "torchao" and mode != "int8":
            continue
        if importlib.util.find_spec(name) is not None:
            return name
    need = "bitsandbytes" if mode == "nf4" or backend == "bitsandbytes" else "bitsandbytes or torchao"
    raise QuantizationUnavailableError(
        f"quantize={mode!r} needs {need}, which is not installed in this environment. "
        "Install it with: pip install 'neuroscope[scale]' (bitsandbytes; its CPU backend needs x86-64 with AVX2)."
    )


def bnb_config(mode: str, compute_dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
    )


class _DropCastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def quiet_bnb() -> None:
    """bitsandbytes logs on every int8 matmul that fp32 inputs are cast to fp16 for quantization: expected,
    and it would bury everything else a run prints; only that notice is dropped."""
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in log.filters):
        log.addFilter(_DropCastNotice())


def torchao_int8(hf_model: nn.Module) -> None:
    """torchao's int8 weight-only quantization of every linear layer except the unembedding (which
    transformers' bitsandbytes path also leaves in floating point)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    get_out = getattr(hf_model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None

    def linear_not_unembed(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and module is not out

    quantize_(hf_model, Int8WeightOnlyConfig(), filter_fn=linear_not_unembed)


def _kind(weight: Any) -> str:
    name = type(weight).__name__
    if name == "Int8Params":
        return "int8"
    if name == "Params4bit":
        return "4bit"
    if isinstance(weight, torch.Tensor) and type(weight) not in (torch.Tensor, nn.Parameter):
        return "subclass"  # torchao's quantized tensors
    return "plain"


def is_quantized(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return w is not None and _kind(w) != "plain"


def _int8_scales(module: nn.Module, weight: Any) -> torch.Tensor | None:
    # the row scales live on the weight until the first forward, which moves them to the module's state
    scb = getattr(weight, "SCB", None)
    if scb is None:
        scb = getattr(getattr(module, "state", None), "SCB", None)
    return scb


def _dequantize(module: nn.Module, weight: Any) -> torch.Tensor:
    kind = _kind(weight)
    if kind == "int8":
        import bitsandbytes.functional as F

        scb = _int8_scales(module, weight)
        if scb is None:
            raise QuantizationUnavailableError(
                f"The int8 weight of {type(module).__name__} has no row scales (SCB) to dequantize it with."
            )
        return F.int8_vectorwise_dequant(weight.data, scb)
    if kind == "4bit":
        import bitsandbytes.functional as F

        data, state = weight.data, weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):
            # on CPUs with AVX512-BF16 the first inference forward repacks the weight for the CPU kernel
            # (and changes its quantization state in place); undo that on copies, never on the live module
            packed_absmax = state.absmax  # [K / blocksize, N] bfloat16 in the packed layout
            data, state = F._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
            if not getattr(state, "original_nested", False):
                # the inverse leaves a non-nested absmax in its packed (transposed) layout; restore row order
                state.absmax = packed_absmax.T.reshape(-1).float()
        return F.dequantize_4bit(data, state)
    if kind == "subclass":
        return cast(torch.Tensor, weight.dequantize())
    return cast(torch.Tensor, weight)


def dequantized_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """``module.<name>`` as a floating-point tensor in the module's own layout (``[out, in]`` for
    ``nn.Linear``). Plain weights are returned as they are (a view, no copy); quantized ones are
    dequantized; weights that ``device_map`` offloaded are fetched and copied out."""
    hook = getattr(module, "_hf_hook", None)
    if hook is not None and getattr(hook, "offload", False):
        from accelerate.utils import align_module_device

        with align_module_device(module):
            return _dequantize(module, getattr(module, name)).detach().clone()
    return _dequantize(module, getattr(module, name))


def _tensor_bytes(t: torch.Tensor) -> int:
    # a torchao quantized tensor reports its logical (floating-point) size; count the tensors it holds
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = flatten()
        return sum(_tensor_bytes(getattr(t, n)) for n in names if getattr(t, n, None) is not None)
    return t.numel() * t.element_size()


def weight_bytes(hf_model: nn.Module) -> int:
    """Bytes held by parameters, buffers and quantization states (scales, absmax, codebooks)."""
    total = sum(_tensor_bytes(t) for t in hf_model.buffers())
    for module in hf_model.modules():
        for t in module.parameters(recurse=False):
            total += _tensor_bytes(t)
            state = getattr(t, "quant_state", None)
            if state is not None:
                for part in (getattr(state, "absmax", None), getattr(state, "code", None)):
                    if isinstance(part, torch.Tensor):
                        total += part.numel() * part.element_size()
            scb = _int8_scales(module, t) if _kind(t) == "int8" else None
            if isinstance(scb, torch.Tensor):
                total += scb.numel() * scb.element_size()
    return total


def probe_gradients(hf_model: nn.Module) -> bool:
    """Whether a backward pass through the first quantized layer reaches its input (finite, not all zero)."""
    for module in hf_model.modules():
        if not is_quantized(module) or not isinstance(module, nn.Linear):
            continue
        dtype = next((p.dtype for p in hf_model.parameters() if p.is_floating_point()), torch.float32)
        device = next(hf_model.parameters()).device
        x = torch.randn(2, module.in_features, dtype=dtype, device=device, requires_grad=True)
        try:
            with torch.enable_grad():
                out = module(x)
                (grad,) = torch.autograd.grad(out.float().sum(), x)
        except (RuntimeError, NotImplementedError, TypeError):
            return False
        return bool(torch.isfinite(grad).all() and grad.abs().sum() > 0)
    return True


def quant_info(hf_model: nn.Module, mode: str, backend: str) -> QuantInfo:
    return QuantInfo(
        mode=mode,
        backend=backend,
        gradients=probe_gradients(hf_model),
        weight_bytes=weight_bytes(hf_model),
        quantized_modules=sum(1 for m in hf_model.modules() if is_quantized(m)),
    )


def keep_differentiable(hf_model: nn.Module) -> None:
    """Keep 4-bit layers on bitsandbytes' dequantize-then-matmul path on CPUs too.

    On a CPU with AVX512-BF16, a 4-bit layer's first inference forward repacks its weight for a bf16 kernel
    (``gemv_4bit``) that has no backward: gradients through it are silently wrong afterwards (measured here:
    gradient × input on a tiny model at cosine −0.96 to the right one). That kernel is about 1.6× faster on
    this machine; an interpretability session needs gradients it can trust, so it is switched off."""
    for module in hf_model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            setattr(module, "support_avx512bf16_for_cpu", False)  # noqa: B010  (an instance flag, not a module)


def cpu_packed_4bit(hf_model: nn.Module) -> bool:
    return any(
        getattr(getattr(getattr(m, "weight", None), "quant_state", None), "packing_format_for_cpu", False)
        for m in hf_model.modules()
    )


def require_gradients(model: Any, what: str) -> None:
    """Raise :class:`GradientsUnavailableError` when ``model`` is quantized by a backend whose layers give
    no gradient to their inputs, or wrong ones; the analyses that differentiate through the model call
    this first."""
    info: QuantInfo | None = getattr(model, "quantization", None)
    if info is None:
        return
    if not info.gradients:
        raise GradientsUnavailableError(what, info.mode, info.backend)
    if cpu_packed_4bit(model.hf_model):
        raise GradientsUnavailableError(
            what,
            info.mode,
            info.backend,
            "has 4-bit weights repacked for bitsandbytes' CPU inference kernel, which has no backward",
        )
