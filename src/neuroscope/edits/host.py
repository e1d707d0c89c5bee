"""Edits on a live model: peft LoRA adapters injected in place, chosen per batch row, never merged.

peft's mixed-batch forward (``adapter_names``, one adapter per row) keeps each request's edits its own
without locks; ``inject_adapter_in_model`` adds a named adapter to the layers it targets and leaves the rest
of the model as it is, so the hook names and the plain forward stay the same. A row that needs several
edits at once gets one combined adapter (the factors concatenated: ``ΔW = Σ ΔW_i``, peft's own semantics
for several active adapters), built on first use and cached. Adapters are never merged: peft's hot-swap is a
silent no-op on a merged adapter (peft issue #3581), and merging is for an exported model only.

The adapter rows of the current call live in a ``ContextVar`` read by a pre-hook on every LoRA layer, so two
threads running one model with different edits never see each other's, like hook interventions.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.edits.edit import LoraEdit
from neuroscope.edits.targets import module_kind, module_shape
from neuroscope.errors import AdapterTargetError, InvalidConfigError, ShapeMismatchError
from neuroscope.interventions import Binding, Intervention
from neuroscope.models.hooks import current_state

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
_ROWS: ContextVar[tuple[str, ...] | None] = ContextVar("neuroscope_adapter_rows", default=None)
_HOSTS: weakref.WeakKeyDictionary[Any, EditHost] = weakref.WeakKeyDictionary()
_HOSTS_LOCK = threading.Lock()
MAX_COMBOS = 64


def _is_lora_layer(module: torch.nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def _pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict | None = None) -> tuple[tuple, dict] | None:
    if kwargs is None:
        # torch records a hook and its with_kwargs flag in two steps; a forward on another thread at that
        # moment calls it without kwargs (see models.hooks._ModuleDispatch._pre_hook)
        return None
    state = current_state()
    rows = state.adapters if state is not None and state.adapters is not None else _ROWS.get()
    x = args[0] if args else next(iter(kwargs.values()))
    n = int(x.shape[0])
    if rows is None:
        names = [BASE] * n
    elif len(rows) == n:
        names = list(rows)
    elif len(set(rows)) == 1:  # an input shared by every row (a broadcast batch of one)
        names = [rows[0]] * n
    else:
        raise ShapeMismatchError("adapter rows for a LoRA layer", n, len(rows))
    return args, {**kwargs, "adapter_names": names}


class EditHost:
    """The named edits attached to one model (``EditHost.of(model)``: one host per model)."""

    def __init__(self, model: HookedModel):
        # weakly: the host is the value of a WeakKeyDictionary keyed by its model, and a strong reference back
        # would keep every model that ever had a host (and its weights) alive for the life of the process
        self._model = weakref.ref(model)
        self.edits: dict[str, LoraEdit] = {}
        self._ids: dict[str, str] = {}  # edit name -> adapter name (peft names cannot contain '.')
        self._combos: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._hooked: set[int] = set()
        self._seq = 0
        self._lock = threading.RLock()

    @property
    def model(self) -> HookedModel:
        model = self._model()
        if model is None:
            raise InvalidConfigError("this EditHost's model no longer exists: keep a reference to the model")
        return model

    @staticmethod
    def of(model: HookedModel) -> EditHost:
        with _HOSTS_LOCK:
            host = _HOSTS.get(model)
            if host is None:
                host = _HOSTS[model] = EditHost(model)
            return host

    # --- validation -----------------------------------------------------------------------------------
    def check(self, edit: LoraEdit, where: str = "the edit") -> None:
        """Every target exists in this model, is a layer LoRA can wrap, and the factors fit its shape."""
        from neuroscope.edits.edit import check_rank

        check_rank(edit.rank)
        names = dict(self.model.hf_model.named_modules())
        missing = [p for p in edit.modules if p not in names]
        if missing:
            raise AdapterTargetError(
                f"{where} targets modules this model ({self.model.cfg.name}, {self.model.cfg.model_type}) "
                f"lacks: {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}"
            )
        for path, (A, B) in edit.modules.items():
            try:
                kind = module_kind(names[path])
            except InvalidConfigError as e:
                raise AdapterTargetError(f"{where}: {path}: {e}") from None
            out, inp = module_shape(self.model, path)
            if tuple(A.shape) != (edit.rank, inp) or tuple(B.shape) != (out, edit.rank):
                raise AdapterTargetError(
                    f"{where}: {path} ({kind}, W [out={out}, in={inp}]) needs A [{edit.rank}, {inp}] and "
                    f"B [{out}, {edit.rank}], got A {list(A.shape)} and B {list(B.shape)}"
                )
            if (path in edit.embedding) != (kind == "embedding"):
                raise AdapterTargetError(f"{where}: {path} is {kind} but its factors say otherwise")

    # --- adapters --------------------------------------------------------------------------------------
    def _inject(self, adapter: str, edit: LoraEdit) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        before = {id(m) for m in self.model.hf_model.modules() if _is_lora_layer(m)}
        cfg = LoraConfig(
            r=edit.rank,
            lora_alpha=edit.rank,
            target_modules=list(edit.modules),
            lora_dropout=0.0,
            bias="none",
        )
        # adapters are built outside inference mode even when asked from inside it (the server's model thread
        # runs there): peft later toggles requires_grad on them, which inference tensors refuse
        with warnings.catch_warnings(), torch.inference_mode(False):
            # peft warns that a tied embedding is targeted; it matters only when merging, which is never
            # done on a live model (export_merged unties the pair first)
            warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")
            # every edit after the first is a further named adapter on purpose
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            layers = [self.model.hf_model.get_submodule(p) for p in edit.modules]
            if all(_is_lora_layer(m) for m in layers):
                # every target is wrapped already: add the adapter to those layers the way peft's own
                # injection does for an existing LoRA layer, without walking the model and every adapter on it
                # (that walk grows with the adapters attached: ~1.5 s with a hundred on smollm2-135m)
                try:
                    for path, m in zip(edit.modules, layers, strict=True):
                        m.update_layer(adapter, edit.rank, lora_alpha=edit.rank, target_name=path, config=cfg)
                except TypeError:  # another peft's signature: its public entry point does the same
                    inject_adapter_in_model(cfg, self.model.hf_model, adapter_name=adapter)
            else:
                inject_adapter_in_model(cfg, self.model.hf_model, adapter_name=adapter)
            dev = self.model.device
            with torch.no_grad():
                for path, (A, B) in edit.modules.items():
                    layer = self.model.hf_model.get_submodule(path)
                    if path in edit.embedding:
                        a, b = layer.lora_embedding_A[adapter], layer.lora_embedding_B[adapter]
                    else:
                        a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
                    a.copy_(A.to(dev, a.dtype).clone())
                    b.copy_(B.to(dev, b.dtype).clone())
        for path in edit.modules:  # frozen: only distillation trains an adapter (``trainable``)
            layer = self.model.hf_model.get_submodule(path)
            for d in (layer.lora_A, layer.lora_B, layer.lora_embedding_A, layer.lora_embedding_B):
                if adapter in d:
                    d[adapter].requires_grad_(False)
        new = [m for m in self.model.hf_model.modules() if _is_lora_layer(m) and id(m) not in before]
        for m in new:
            if id(m) not in self._hooked:
                m.register_forward_pre_hook(_pre_hook, with_kwargs=True)
                self._hooked.add(id(m))
        if new:  # modules were wrapped: hook points must move onto the wrappers
            self.model.refresh_sites()

    def _delete(self, adapter: str) -> None:
        with warnings.catch_warnings():
            # peft's "active adapter" is never used here: rows always name their adapter
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
            for m in self.model.hf_model.modules():
                if _is_lora_layer(m) and (adapter in m.lora_A or adapter in m.lora_embedding_A):
                    m.delete_adapter(adapter)

    def add(self, name: str, edit: LoraEdit, replace: bool = False) -> None:
        """Attach ``edit`` under ``name`` (validated first; on any failure nothing stays attached)."""
        with self._lock:
            if name in self.edits and not replace:
                raise InvalidConfigError(f"an edit named {name!r} is already attached")
            self.check(edit, f"edit {name!r}")
            if name in self.edits:
                self.remove(name)
            self._seq += 1
            adapter = f"nsedit{self._seq}"
            try:
                self._inject(adapter, edit)
            except Exception:
                self._delete(adapter)
                raise
            self.edits[name], self._ids[name] = edit, adapter

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self.edits:
                raise InvalidConfigError(
                    f"no edit named {name!r} is attached ({len(self.edits)} attached: {sorted(self.edits)[:5]})"
                )
            self._delete(self._ids.pop(name))
            del self.edits[name]
            for key in [k for k in self._combos if name in k]:
                self._delete(self._combos.pop(key))

    def clear(self) -> None:
        for name in list(self.edits):
            self.remove(name)

    def names(self) -> list[str]:
        return list(self.edits)

    def adapter_for(self, names: Sequence[str]) -> str:
        """The adapter a row with these edits runs (``__base__`` for none); combinations built on demand."""
        key = tuple(sorted(set(names)))
        unknown = [n for n in key if n not in self.edits]
        if unknown:
            raise InvalidConfigError(
                f"no edit named {', '.join(map(repr, unknown))} is attached ({len(self.edits)} attached: "
                f"{sorted(self.edits)[:5]})"
            )
        if not key:
            return BASE
        if len(key) == 1:
            return self._ids[key[0]]
        with self._lock:
            if key in self._combos:
                self._combos.move_to_end(key)
                return self._combos[key]
            combined = combine([self.edits[n] for n in key])
            self._seq += 1
            adapter = f"nscombo{self._seq}"
            self._inject(adapter, combined)
            self._combos[key] = adapter
            while len(self._combos) > MAX_COMBOS:
                _, old = self._combos.popitem(last=False)
                self._delete(old)
            return adapter

    @contextmanager
    def use(self, names: Sequence[str] = ()) -> Iterator[None]:
        """Every row of the forwards inside runs with the edits ``names`` (all added together)."""
        adapter = self.adapter_for(names)
        token = _ROWS.set((adapter,))
        try:
            yield
        finally:
            _ROWS.reset(token)

    @contextmanager
    def rows(self, per_row: Sequence[Sequence[str]]) -> Iterator[None]:
        """Row ``i`` of the batch runs with the edits ``per_row[i]`` (peft's mixed-batch forward)."""
        adapters = tuple(self.adapter_for(n) for n in per_row)
        token = _ROWS.set(adapters)
        try:
            yield
        finally:
            _ROWS.reset(token)

    def trainable(self, name: str) -> list[torch.nn.Parameter]:
        """The LoRA parameters of one edit, made trainable (for distillation)."""
        adapter = self._ids[name]
        params = []
        for m in self.model.hf_model.modules():
            if not _is_lora_layer(m):
                continue
            for d in (m.lora_A, m.lora_B):
                if adapter in d:
                    params += list(d[adapter].parameters())
            for d in (m.lora_embedding_A, m.lora_embedding_B):
                if adapter in d:
                    params.append(d[adapter])
        for p in params:
            p.requires_grad_(True)
        return params

    def read_back(self, name: str) -> LoraEdit:
        """The edit's current factors (after training), as a standalone LoraEdit."""
        adapter, edit = self._ids[name], self.edits[name]
        modules = {}
        for path in edit.modules:
            layer = self.model.hf_model.get_submodule(path)
            if path in edit.embedding:
                A, B = layer.lora_embedding_A[adapter], layer.lora_embedding_B[adapter]
            else:
                A, B = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
            modules[path] = (A.detach().float().cpu().clone(), B.detach().float().cpu().clone())
        return LoraEdit(edit.rank, modules, edit.embedding, dict(edit.info))


@dataclass
class ApplyEdits(Intervention):
    """Run with the attached edits ``names`` (their LoRA deltas added), as part of a call's interventions:
    ``model(x, interventions=[Ablate(...), ApplyEdits(["no-python"])])``. With ``per_row``, row ``i`` of the
    batch gets the edits ``per_row[i]`` instead (one padded forward for many clients)."""

    names: Sequence[str] = ()
    per_row: Sequence[Sequence[str]] | None = None

    def bind(self, model: HookedModel) -> Binding:
        self.adapter_rows(model)  # unknown names fail here, before any forward
        return []

    def adapter_rows(self, model: HookedModel) -> tuple[str, ...]:
        host = EditHost.of(model)
        if self.per_row is not None:
            return tuple(host.adapter_for(n) for n in self.per_row)
        return (host.adapter_for(self.names),)


def combine(edits: Sequence[LoraEdit]) -> LoraEdit:
    """One LoRA whose ΔW is the sum of the edits' (factors concatenated along the rank)."""
    paths: dict[str, None] = {}
    for e in edits:
        paths.update(dict.fromkeys(e.modules))
    rank = sum(e.rank for e in edits)
    modules = {}
    embedding: set[str] = set()
    for path in paths:
        As, Bs = [], []
        for e in edits:
            if path in e.modules:
                A, B = e.modules[path]
                if path in e.embedding:
                    embedding.add(path)
            else:
                ref = next(x for x in edits if path in x.modules).modules[path]
                A = torch.zeros(e.rank, ref[0].shape[1], dtype=ref[0].dtype)
                B = torch.zeros(ref[1].shape[0], e.rank, dtype=ref[1].dtype)
            As.append(A.double())
            Bs.append(B.double())
        modules[path] = (torch.cat(As, 0), torch.cat(Bs, 1))
    return LoraEdit(rank, modules, frozenset(embedding), {"method": "combined"})
