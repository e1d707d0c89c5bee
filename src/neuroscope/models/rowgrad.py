"""Batches that pair a reference run with a run to differentiate, at the memory cost of one.

Attribution patching needs the clean activations (no gradient) and the corrupted run's gradient. Run as two
forwards, every weight matrix is read from memory twice, and on a CPU a short prompt's forward is bound by
those reads. Run as one batch, the reads are shared but autograd then differentiates the clean row too, which
costs as much as the read saved. Inside :func:`no_grad_rows` the model's linear layers compute their first
``n`` batch rows without autograd: the two rows share each weight read, and the backward pass touches only
the rows that need it. Values are unchanged (every layer is row-independent along the batch).

The switch is a ``ContextVar``: another thread running the same model meanwhile is unaffected.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neuroscope.errors import InvalidConfigError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

_ROWS: ContextVar[int] = ContextVar("neuroscope_no_grad_rows", default=0)
_lock = threading.Lock()
# hf model -> (number of contexts using the wrappers, {module: the instance forward it had before, or None})
_installed: weakref.WeakKeyDictionary[nn.Module, tuple[int, dict[nn.Module, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _row_linear(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2) is a linear layer with transposed weights
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _split_forward(inner: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        k = _ROWS.get()
        if k <= 0 or x.shape[0] <= k or not torch.is_grad_enabled():
            return inner(x, *args, **kwargs)
        with torch.no_grad():
            head = inner(x[:k], *args, **kwargs)
        return torch.cat([head, inner(x[k:], *args, **kwargs)])

    return forward


@contextmanager
def no_grad_rows(model: HookedModel, n: int) -> Iterator[None]:
    """Within the block, linear layers of ``model`` compute batch rows ``[:n]`` without autograd.

    Gradients then reach only rows ``n:``; activations of the first rows are still computed and cached.
    """
    if n < 0:
        raise InvalidConfigError(f"no_grad_rows needs n >= 0, got {n}")
    hf = model.hf_model
    with _lock:
        users, saved = _installed.get(hf, (0, {}))
        if users == 0:
            saved = {}
            for m in hf.modules():
                if _row_linear(m):
                    saved[m] = m.__dict__.get("forward")
                    m.forward = _split_forward(m.forward)  # type: ignore[method-assign]
        _installed[hf] = (users + 1, saved)
    token = _ROWS.set(n)
    try:
        yield
    finally:
        _ROWS.reset(token)
        with _lock:
            users, saved = _installed[hf]
            if users == 1:
                for m, previous in saved.items():
                    if previous is None:
                        del m.forward
                    else:
                        m.forward = previous  # type: ignore[method-assign]
                del _installed[hf]
            else:
                _installed[hf] = (users - 1, saved)
