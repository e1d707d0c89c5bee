"""Hook points: TransformerLens names mapped onto Hugging Face modules, dispatched per context.

Each hooked module gets at most one pre-hook and one forward hook (its *dispatcher*), installed while some
context needs it and removed when none does. A dispatcher applies only the functions registered in the
calling context (a ``ContextVar``), so two threads running one model with different interventions never
see each other's hooks, and nothing outlives the ``with`` block that registered it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from neuroscope.errors import IndexOutOfRangeError, ShapeMismatchError, UnknownHookError
from neuroscope.models.adapters import Adapter, Site

if TYPE_CHECKING:
    from neuroscope.models.config import HookedConfig

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]

ATTN_FN_HOOKS = ("attn.hook_attn_scores", "attn.hook_pattern")
_LAYER_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookPoint:
    """What a hook function learns about where it is called."""

    name: str
    layer: int | None
    pos_offset: int = 0  # absolute position of index 0 along the pos axis (non-zero in cached generation)


@dataclass
class HookState:
    """Everything one context asked for. Owned by one context, so it may be mutated without locks."""

    fns: dict[str, tuple[HookFn, ...]] = field(default_factory=dict)
    stop_layer: int | None = None
    pos_offset: int = 0
    skip_below: int = 0  # layers below this return their input untouched (their output is patched in)
    scratch: dict[Any, torch.Tensor] = field(default_factory=dict)
    # peft adapter per batch row (one name: every row) chosen by edit interventions; None: no adapter
    adapters: tuple[str, ...] | None = None

    def merged(self, other: HookState) -> HookState:
        fns = dict(self.fns)
        for name, extra in other.fns.items():
            fns[name] = fns.get(name, ()) + extra
        stop = other.stop_layer if other.stop_layer is not None else self.stop_layer
        return HookState(
            fns=fns,
            stop_layer=stop,
            pos_offset=self.pos_offset,
            skip_below=max(self.skip_below, other.skip_below),
            adapters=other.adapters if other.adapters is not None else self.adapters,
        )


_STATE: ContextVar[HookState | None] = ContextVar("neuroscope_hook_state", default=None)


def current_state() -> HookState | None:
    return _STATE.get()


class StopForward(Exception):
    """Raised inside the forward to skip the layers after ``stop_at_layer``."""


@dataclass(frozen=True)
class BoundSite:
    """A hook point resolved to a concrete module and the way to read/write its tensor."""

    name: str
    layer: int | None
    module: nn.Module
    io: str
    read: Callable[[torch.Tensor], torch.Tensor]
    write: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    kind: str = "plain"  # "plain" | "resid_mid" | "capture" | "stop"


def _identity_read(x: torch.Tensor) -> torch.Tensor:
    return x


def _identity_write(_orig: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return new


def _site_codec(site: Site, cfg: HookedConfig) -> tuple[Callable, Callable]:
    size = {"q": cfg.n_heads * cfg.d_head, "kv": cfg.n_kv_heads * cfg.d_head, "mlp": cfg.d_mlp}
    n_heads = {"q": cfg.n_heads, "kv": cfg.n_kv_heads}
    d_head = cfg.d_head

    if site.interleaved:  # GPT-NeoX: [..., head, (q|k|v) * d_head]
        qlo, qhi = site.part * d_head, (site.part + 1) * d_head

        def read(x: torch.Tensor) -> torch.Tensor:
            return x.view(*x.shape[:-1], cfg.n_heads, 3 * d_head)[..., qlo:qhi]

        def write(orig: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            out = orig.view(*orig.shape[:-1], cfg.n_heads, 3 * d_head).clone()
            out[..., qlo:qhi] = new
            return out.view(orig.shape)

        return read, write

    lo: int | None
    hi: int | None
    if site.chunks:
        offsets = [0]
        for c in site.chunks:
            offsets.append(offsets[-1] + size[c])
        lo, hi = offsets[site.part], offsets[site.part + 1]
    else:
        lo = hi = None
    heads = n_heads[site.heads] if site.heads else None

    def read(x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-redef]
        if lo is not None:
            x = x[..., lo:hi]
        return x.view(*x.shape[:-1], heads, d_head) if heads else x

    def write(orig: torch.Tensor, new: torch.Tensor) -> torch.Tensor:  # type: ignore[no-redef]
        if heads:
            new = new.reshape(*new.shape[:-2], heads * d_head)
        if lo is None:
            return new
        out = orig.clone()
        out[..., lo:hi] = new
        return out

    return read, write


def _get(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def build_sites(hf_model: nn.Module, adapter: Adapter, cfg: HookedConfig) -> dict[str, BoundSite]:
    """Resolve every hook name of this model to a module. Order matters: it is dispatch order."""
    sites: dict[str, BoundSite] = {}

    def add(
        name: str, layer: int | None, module: nn.Module, io: str, codec=None, kind: str = "plain"
    ) -> None:
        read, write = codec or (_identity_read, _identity_write)
        sites[name] = BoundSite(name, layer, module, io, read, write, kind)

    add("hook_embed", None, _get(hf_model, adapter.embed), "out")
    if adapter.pos_embed:
        add("hook_pos_embed", None, _get(hf_model, adapter.pos_embed), "out")
    layers = cast(Sequence[torch.nn.Module], _get(hf_model, adapter.layers))
    parallel = adapter.parallel(hf_model.config)
    for l, layer in enumerate(layers):
        p = f"blocks.{l}."
        add(p + "hook_resid_pre", l, layer, "in")
        add(p + "__stop__", l, layer, "in", kind="stop")
        if not parallel:
            add(p + "__capture_resid_pre__", l, _get(layer, adapter.ln1), "in", kind="capture")
        for suffix, site in adapter.sites.items():
            add(p + suffix, l, _get(layer, site.module), site.io, _site_codec(site, cfg))
            if suffix == "hook_attn_out" and not parallel:
                # resid_mid = resid_pre + attn_out; writing it means rewriting attn_out, so it is
                # dispatched on the same module, right after hook_attn_out.
                add(p + "hook_resid_mid", l, _get(layer, site.module), site.io, kind="resid_mid")
        add(p + "hook_resid_post", l, layer, "out")
    add("ln_final.__stop__", cfg.n_layers, _get(hf_model, adapter.final_norm), "in", kind="stop")
    add("ln_final.hook_normalized", None, _get(hf_model, adapter.final_norm), "out")
    return sites


def resolve_name(name: str, valid: list[str], n_layers: int) -> str:
    """Validate a hook name; layer indices out of range get their own message."""
    if name in valid:
        return name
    m = _LAYER_NAME.match(name)
    if m and int(m.group(1)) >= n_layers:
        raise IndexOutOfRangeError("layer", int(m.group(1)), n_layers)
    raise UnknownHookError(name, valid)


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    return (new, *value[1:]) if isinstance(value, tuple) else new


def _apply(state: HookState, site: BoundSite, x: torch.Tensor) -> torch.Tensor | None:
    """Run the context's functions for one site on its canonical view; None when nothing changed."""
    fns = state.fns.get(site.name)
    if not fns:
        return None
    view = site.read(x)
    point = HookPoint(site.name, site.layer, state.pos_offset)
    changed = False
    for fn in fns:
        result = fn(view, point)
        if result is not None and result is not view:
            if result.shape != view.shape:
                raise ShapeMismatchError(
                    f"hook on {site.name} returned a tensor", tuple(view.shape), tuple(result.shape)
                )
            view, changed = result, True
    return site.write(x, view) if changed else None


class _ModuleDispatch:
    """The single pre-hook and forward hook on one module, serving every site that lives there."""

    def __init__(self, module: nn.Module, pre: list[BoundSite], post: list[BoundSite]):
        self.module, self.pre, self.post = module, pre, post
        self.refcount = 0
        self.handles: list[Any] = []

    def install(self) -> None:
        if self.pre:
            self.handles.append(self.module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        if self.post:
            self.handles.append(self.module.register_forward_hook(self._post_hook))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> Any:
        state = _STATE.get()
        if state is None:
            return None
        if kwargs is None:
            # torch records a hook and its with_kwargs flag in two steps: a forward on another thread (the
            # attack search beside the worker) can call a hook installed at that moment without kwargs. The
            # installing thread's sites are not that forward's (it acquired its own first), so there is
            # nothing to do for it.
            return None
        from_args = bool(args)
        x = args[0] if from_args else kwargs["hidden_states"]
        changed = False
        for site in self.pre:
            if site.kind == "stop":
                if state.stop_layer is not None and site.layer == state.stop_layer:
                    raise StopForward
            elif site.kind == "capture":
                if f"blocks.{site.layer}.hook_resid_mid" in state.fns:
                    state.scratch[("resid_pre", site.layer)] = x
            else:
                new = _apply(state, site, x)
                if new is not None:
                    x, changed = new, True
        if not changed:
            return None
        if from_args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> Any:
        state = _STATE.get()
        if state is None:
            return None
        x = _first_tensor(output)
        changed = False
        for site in self.post:
            if site.kind == "resid_mid":
                if site.name not in state.fns:
                    continue
                pre = state.scratch.pop(("resid_pre", site.layer))
                mid = pre + x
                new = _apply(state, site, mid)
                if new is not None:
                    x, changed = new - pre, True
                continue
            new = _apply(state, site, x)
            if new is not None:
                x, changed = new, True
        return _replace_first(output, x) if changed else None


class HookRegistry:
    """Owns the dispatchers of one model and installs them on demand (reference counted)."""

    def __init__(self, sites: dict[str, BoundSite]):
        self.sites = sites
        self._lock = threading.Lock()
        by_module: dict[int, tuple[nn.Module, list[BoundSite], list[BoundSite]]] = {}
        for site in sites.values():
            mod, pre, post = by_module.setdefault(id(site.module), (site.module, [], []))
            (pre if site.io == "in" else post).append(site)
        self._dispatch = {k: _ModuleDispatch(*v) for k, v in by_module.items()}
        # which dispatchers a name needs (resid_mid also needs the capture of resid_pre)
        self._needs: dict[str, list[_ModuleDispatch]] = {}
        for name, site in sites.items():
            needed = [self._dispatch[id(site.module)]]
            if site.kind == "resid_mid":
                needed.append(self._dispatch[id(sites[f"blocks.{site.layer}.__capture_resid_pre__"].module)])
            self._needs[name] = needed

    def dispatchers_for(self, names: list[str]) -> list[_ModuleDispatch]:
        seen: dict[int, _ModuleDispatch] = {}
        for n in names:
            for d in self._needs.get(n, ()):
                seen[id(d)] = d
        return list(seen.values())

    def acquire(self, dispatchers: list[_ModuleDispatch]) -> None:
        with self._lock:
            for d in dispatchers:
                if d.refcount == 0:
                    d.install()
                d.refcount += 1

    def release(self, dispatchers: list[_ModuleDispatch]) -> None:
        with self._lock:
            for d in dispatchers:
                d.refcount -= 1
                if d.refcount == 0:
                    d.remove()


class hook_context:
    """Context manager activating ``state`` (merged into any enclosing context) on ``registry``."""

    def __init__(self, registry: HookRegistry, state: HookState, extra_names: list[str] = ()):  # type: ignore[assignment]
        self.registry = registry
        self.state = state
        self.extra_names = list(extra_names)

    def __enter__(self) -> HookState:
        parent = _STATE.get()
        merged = parent.merged(self.state) if parent is not None else self.state
        if parent is not None:
            merged.pos_offset = parent.pos_offset
        names = list(self.state.fns) + self.extra_names
        self._dispatchers = self.registry.dispatchers_for(names)
        self.registry.acquire(self._dispatchers)
        self._token = _STATE.set(merged)
        return merged

    def __exit__(self, *exc: object) -> None:
        _STATE.reset(self._token)
        self.registry.release(self._dispatchers)
