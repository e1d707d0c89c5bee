"""Keep a model load quiet and offline: it prints what the user asked for and reaches for no hub.

Two libraries import a quantization back end on every load, whether or not anything is quantized:
transformers' ``modeling_utils`` imports its torchao quantizer (and so torchao) whenever torchao is installed,
and ``import peft`` imports bitsandbytes whenever that is installed. Neither has a switch for it, and
NeuroScope only quantizes through them on request (:mod:`neuroscope.models.quantize`). On import:

- torchao tries every ``_C*.so`` it ships and logs each one that cannot load here (CUDA-only and
  other-Python builds); its int8 weight-only path, the only one NeuroScope uses, needs none of them;
- torchao registers two enums with ``torch.utils._pytree``, which torch now logs as deprecated;
- bitsandbytes' CPU backend, on a CPU with AVX512-BF16, asks the ``kernels`` package for a hub kernel
  (``kernels-community/quantization-bitsandbytes``) for its fused 4-bit forward. NeuroScope switches that
  path off for every 4-bit layer (``quantize.keep_differentiable``: it has no backward), so the kernel is
  never used. ``HF_HUB_OFFLINE=1``, huggingface_hub's documented switch that ``kernels`` honours, stops the
  reach for the hub; the lookup in the local cache then fails and both libraries log it.

Where a documented switch exists it is used (:func:`offline_by_default`); the rest are warnings no switch
turns off, so :func:`quiet_imports` drops exactly those records, by logger and message, and nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

# The bitsandbytes CPU kernel repository on the hub (see the module docstring).
BNB_HUB_KERNEL = "kernels-community/quantization-bitsandbytes"


def offline_by_default() -> None:
    """NeuroScope never downloads (models come from the bundled wheel, a local folder or the local cache);
    make that hold for the libraries it imports too, unless the user set the switch themselves. It must run
    before huggingface_hub is imported (it reads the variable once), so the CLI calls it first thing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _torchao_so(record: logging.LogRecord) -> bool:
    msg = record.getMessage()
    return msg.startswith("Failed to load ") and "torchao/_C" in msg


def _torchao_enum(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return (
        "is an Enum subclass and is now natively supported" in str(record.msg)
        and bool(args)
        and str(getattr(args[0], "__module__", "")).startswith("torchao")
    )


def _bnb_hub_kernel(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


def _offline_trust_check(record: logging.LogRecord) -> bool:
    msg = record.getMessage()
    return msg.startswith("Skipping publisher trust check for") and BNB_HUB_KERNEL in msg


class _Drop(logging.Filter):
    def __init__(self, match: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self.match = match

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.match(record)


# logger name → the records dropped there (a logger's filters see only the records logged on it)
_FILTERS = {
    "torchao": _torchao_so,
    "torch.utils._pytree": _torchao_enum,
    "bitsandbytes.backends.cpu.ops": _bnb_hub_kernel,
    "kernels._internals.hf_hub": _offline_trust_check,
}


def quiet_imports() -> None:
    """Drop the import-time notices listed in the module docstring (idempotent). Call it before
    transformers' modelling code or peft is first imported: the records are logged once, on import."""
    for name, match in _FILTERS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.match is match for f in log.filters):
            log.addFilter(_Drop(match))
