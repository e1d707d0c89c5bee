"""Live edits: prepared once per server (a peft adapter, or a hooked intervention where no exact LoRA
exists), then named by each request like an ablation, so every client's edits stay its own.

A ``lora`` edit is a named peft adapter on the model (``EditHost``): switching a request to it costs nothing
but the adapter rows of that forward. Building and attaching the adapter takes longer than a forward, so a
new exact edit (the closed-form ablation) can be prepared *deferred*: requests get its exact hooked form
(``ProjectOut``, equal to the LoRA to float precision) until ``finish`` attaches the adapter, which the
server does when the model is idle. A ``hooked`` edit is a list of interventions (the exact hooked clamp;
its LoRA is distilled offline with ``neuroscope lora-patch --method clamp``). ``run_with_edits`` is the
library's answer for a set of edits, which the server's replies must equal.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from neuroscope.edits.edit import LoraEdit
from neuroscope.edits.host import ApplyEdits, EditHost
from neuroscope.errors import InvalidConfigError, ResourceNotFoundError
from neuroscope.interventions import Intervention

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

_REGISTRIES: weakref.WeakKeyDictionary[Any, LiveEdits] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
# Prepared LoRA edits kept at once (an ablate edit on smollm2-135m holds ~3 MB: its embedding factor is
# r x vocab); the least recently used beyond this are detached, and a request naming one gets a clear error.
MAX_LORA_EDITS = 64


@dataclass
class LiveEdit:
    name: str
    kind: Literal["lora", "hooked"]
    first_layer: int  # the first decoder layer whose input it changes (0 when the embedding is edited)
    info: dict[str, Any] = field(default_factory=dict)
    interventions: list[Intervention] = field(default_factory=list)
    edit: LoraEdit | None = None
    # a deferred LoRA edit: builds its adapter; until then ``interventions`` are its exact hooked form
    build: Callable[[], LoraEdit] | None = None

    @property
    def attached(self) -> bool:
        return self.kind == "lora" and self.build is None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "first_layer": self.first_layer, **_jsonable(self.info)}


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}


def lora_first_layer(model: HookedModel, edit: LoraEdit) -> int:
    prefix = model.adapter.layers + "."
    layers = [int(p[len(prefix) :].split(".", 1)[0]) for p in edit.modules if p.startswith(prefix)]
    return 0 if len(layers) < len(edit.modules) or not layers else min(layers)


class LiveEdits:
    """The prepared edits of one model (``LiveEdits.of(model)``)."""

    def __init__(self, model: HookedModel, max_lora: int = MAX_LORA_EDITS):
        # weakly, as EditHost does: a strong reference from the registry's value to its key would keep every
        # served model alive for the life of the process
        self._model = weakref.ref(model)
        self.edits: dict[str, LiveEdit] = {}  # in order of last use
        self.max_lora = max_lora
        self._lock = threading.RLock()

    @property
    def model(self) -> HookedModel:
        model = self._model()
        if model is None:
            raise InvalidConfigError("these LiveEdits' model no longer exists: keep a reference to the model")
        return model

    @staticmethod
    def of(model: HookedModel) -> LiveEdits:
        with _LOCK:
            reg = _REGISTRIES.get(model)
            if reg is None:
                reg = _REGISTRIES[model] = LiveEdits(model)
            return reg

    def add_lora(self, name: str, edit: LoraEdit, info: dict[str, Any] | None = None) -> LiveEdit:
        """Attach ``edit`` as a peft adapter (idempotent for an already prepared name)."""
        with self._lock:
            if name in self.edits:
                return self.edits[name]
            host = EditHost.of(self.model)
            if name not in host.edits:
                host.add(name, edit)
            live = LiveEdit(
                name, "lora", lora_first_layer(self.model, edit), {**edit.info, **(info or {})}, edit=edit
            )
            self.edits[name] = live
            self._evict()
            return live

    def add_lora_deferred(
        self,
        name: str,
        interventions: list[Intervention],
        first_layer: int,
        build: Callable[[], LoraEdit],
        info: dict[str, Any],
    ) -> LiveEdit:
        """A LoRA edit answered by ``interventions`` (its exact hooked form, with the same ``first_layer``)
        until :meth:`finish` builds and attaches the adapter (idempotent for a prepared name)."""
        with self._lock:
            if name not in self.edits:
                for iv in interventions:  # validate against the model now, not in the first request
                    iv.bind(self.model)
                self.edits[name] = LiveEdit(name, "lora", first_layer, info, list(interventions), build=build)
            return self.edits[name]

    def finish(self, name: str) -> None:
        """Build and attach a deferred edit's adapter (between forwards: on the model's own thread);
        nothing to do for an attached, hooked or since removed edit."""
        with self._lock:
            live = self.edits.get(name)
            if live is None or live.build is None:
                return
            edit = live.build()
            EditHost.of(self.model).add(name, edit)
            live.edit, live.build, live.interventions = edit, None, []
            live.info = {**edit.info, **live.info}
            self._evict()

    def pending(self) -> list[str]:
        with self._lock:
            return [n for n, e in self.edits.items() if e.build is not None]

    def _evict(self) -> None:
        lora = [n for n, e in self.edits.items() if e.attached]
        for stale in lora[: max(0, len(lora) - self.max_lora)]:
            self.remove(stale)

    def add_hooked(
        self, name: str, interventions: list[Intervention], first_layer: int, info: dict[str, Any]
    ) -> LiveEdit:
        with self._lock:
            if name not in self.edits:
                for iv in interventions:  # validate against the model now, not in the first request
                    iv.bind(self.model)
                self.edits[name] = LiveEdit(name, "hooked", first_layer, info, list(interventions))
            return self.edits[name]

    def remove(self, name: str) -> None:
        with self._lock:
            live = self.get([name])[0]
            if live.attached:
                EditHost.of(self.model).remove(name)
            del self.edits[name]

    def get(self, names: Sequence[str]) -> list[LiveEdit]:
        with self._lock:
            missing = [n for n in names if n not in self.edits]
            if missing:
                known = sorted(self.edits)
                raise ResourceNotFoundError(
                    f"No prepared edit named {missing[0]!r} ({len(known)} prepared"
                    f"{': ' + ', '.join(known[:5]) if known else ''}{' …' if len(known) > 5 else ''}); prepare it "
                    "with POST /api/edits or the Features view's patch toggle (unused edits are detached after "
                    f"{self.max_lora} newer ones)."
                )
            for n in names:  # most recently used last (what eviction keeps)
                self.edits[n] = self.edits.pop(n)
            return [self.edits[n] for n in names]

    def snapshot(self) -> list[LiveEdit]:
        with self._lock:
            return list(self.edits.values())

    def first_layer(self, names: Sequence[str]) -> int | None:
        edits = self.get(names)
        return min((e.first_layer for e in edits), default=None)

    def hooked(self, names: Sequence[str]) -> list[Intervention]:
        return [iv for e in self.get(names) for iv in e.interventions]

    def adapters(self, names: Sequence[str]) -> list[str]:
        return [e.name for e in self.get(names) if e.attached]

    def interventions(self, names: Sequence[str]) -> list[Intervention]:
        """The request-state form of ``names``: the LoRA edits as one ``ApplyEdits``, then the hooked ones."""
        lora = self.adapters(names)
        return ([ApplyEdits(lora)] if lora else []) + self.hooked(names)

    def row_interventions(
        self, per_row: Sequence[Sequence[str]]
    ) -> tuple[list[Intervention], list[tuple[str, Any]]]:
        """For one padded forward of many requests: row ``i`` gets the LoRA edits of ``per_row[i]`` (peft's
        mixed batch) and its hooked edits as hook functions that change only that row."""
        b = len(per_row)
        hooks: list[tuple[str, Any]] = []
        for i, names in enumerate(per_row):
            for iv in self.hooked(names):
                for hook_name, fn in iv.bind(self.model):
                    hooks.append((hook_name, _row_only(fn, i, b)))
        rows = [self.adapters(n) for n in per_row]
        return ([ApplyEdits(per_row=rows)] if any(rows) else []), hooks


def _row_only(fn: Any, row: int, batch: int) -> Any:
    def masked(x: torch.Tensor, hook: Any) -> torch.Tensor:
        new = fn(x, hook)
        if new is None:
            return x
        keep = torch.zeros(batch, *([1] * (x.ndim - 1)), dtype=torch.bool, device=x.device)
        keep[row] = True
        return torch.where(keep, new, x)

    return masked


def run_with_edits(
    model: HookedModel, x: Any, names: Sequence[str] = (), interventions: Sequence[Intervention] = ()
) -> torch.Tensor:
    """The logits of ``x`` with the prepared edits ``names`` after any further interventions: the library's
    answer for a request naming those edits."""
    return model(x, interventions=[*interventions, *LiveEdits.of(model).interventions(names)])
