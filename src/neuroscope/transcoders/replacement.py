"""The replacement model: every MLP output swapped for its transcoder's output, computed from the MLP's input
(``blocks.L.ln2.hook_normalized``) through the model's own hook points.

Three choices shape a forward (:meth:`ReplacementModel.forward`):

- ``errors``: ``"off"`` (the transcoders alone), ``"fixed"`` (each MLP's error in the recorded run,
  ``real − transcoder``, added back: at the recorded input the forward is then exact) or ``"live"`` (the
  error recomputed on this forward's input, so with no interventions the forward is the real model's).
- ``features``: ``"live"`` (re-encoded from this forward's MLP input: the replacement model proper) or
  ``"frozen"`` (held at the recorded run's activations except where intervened: *direct* effects, what an
  attribution graph's edges measure).
- ``freeze``: a :class:`RecordedRun` whose attention patterns (through its queries and keys, so nothing
  quadratic is kept) and norm scales the forward reuses (``freeze_attention`` / ``freeze_norms``).

Interventions set, scale or add to a feature's activation at (layer, position); :class:`ResidualAdd` adds a
vector to an MLP's output or to a token's embedding (how edges are checked by intervention).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from neuroscope.errors import IndexOutOfRangeError, InvalidConfigError, SAEMismatchError
from neuroscope.graphs.linear import capture_scales, frozen_norms, norm_scale

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.transcoders.model import Transcoder, TranscoderSet

ErrorMode = Literal["off", "fixed", "live"]
FeatureMode = Literal["live", "frozen"]
MODES = ("set", "scale", "add")


@dataclass(frozen=True)
class FeatureIntervention:
    """Change feature ``feature`` of layer ``layer``'s transcoder at position ``pos``: ``set`` its activation
    to ``value``, ``scale`` it by ``value`` or ``add`` ``value`` to it."""

    layer: int
    pos: int
    feature: int
    value: float
    mode: str = "set"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidConfigError(
                f"Unknown intervention mode {self.mode!r}; choose one of {', '.join(MODES)}."
            )


@dataclass(frozen=True)
class ResidualAdd:
    """Add ``vector [d_model]`` at ``pos`` to layer ``layer``'s MLP output (``site="mlp_out"``) or to the
    token embedding (``site="embed"``, ``layer`` ignored)."""

    site: str
    layer: int
    pos: int
    vector: torch.Tensor


@dataclass
class RecordedRun:
    """One real forward, recorded for freezing and for attribution (everything linear in the prompt length:
    ``[layer, pos, d_model]`` stacks and per-layer queries/keys, never an attention pattern)."""

    tokens: torch.Tensor  # [pos]
    mlp_in: torch.Tensor  # [layer, pos, d_model]: blocks.L.ln2.hook_normalized
    mlp_out: torch.Tensor  # [layer, pos, d_model]: blocks.L.hook_mlp_out (the real MLP)
    resid_pre: torch.Tensor  # [layer, pos, d_model]
    final_resid: torch.Tensor  # [pos, d_model]
    embed: (
        torch.Tensor
    )  # [pos, d_model]: what the tokens add to block 0's input (positional embedding excluded)
    scales: dict[tuple[int, str], torch.Tensor]  # (layer, norm role) -> [pos, 1]
    final_scale: torch.Tensor  # [pos, 1]
    q: dict[int, torch.Tensor]  # layer -> [pos, head, d_head] (the hook_q view)
    k: dict[int, torch.Tensor]
    logits: torch.Tensor  # [d_vocab] at the last position
    patterns: dict[int, torch.Tensor] = field(default_factory=dict)  # only when asked for (quadratic)

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class ReplacementOutput:
    logits: torch.Tensor  # [batch, pos, d_vocab]
    pre: dict[int, torch.Tensor]  # layer -> [batch, pos, d_tc] pre-activations (when record_pre)
    acts: dict[int, torch.Tensor]  # layer -> [batch, pos, d_tc] activations used (when record_acts)
    mlp_out: dict[int, torch.Tensor]  # layer -> [batch, pos, d_model] what replaced the MLP
    final: torch.Tensor | None = None  # [batch, pos, d_model] the final norm's output (when record_final)


def check_transcoders(model: HookedModel, transcoders: TranscoderSet) -> None:
    """Refuse transcoders made for another model, width or hook (by name, as SAE suites are refused)."""
    name = transcoders.model_name
    if name and model.cfg.name and name != model.cfg.name:
        raise SAEMismatchError(
            f"These transcoders were trained on {name!r}, not on {model.cfg.name!r}: load the transcoders "
            "trained for this model."
        )
    for layer in transcoders.layers:
        tc = transcoders[layer]
        if not 0 <= layer < model.cfg.n_layers:
            raise SAEMismatchError(
                f"Transcoder for layer {layer}, but {model.cfg.name!r} has {model.cfg.n_layers} layers."
            )
        if tc.layer != layer:
            raise SAEMismatchError(
                f"The transcoder stored under layer {layer} says it is for layer {tc.layer}."
            )
        if tc.cfg.d_in != model.cfg.d_model or tc.W_dec.shape[-1] != model.cfg.d_model:
            raise SAEMismatchError(
                f"The layer-{layer} transcoder reads and writes width {tc.cfg.d_in}, but {model.cfg.name!r} has "
                f"d_model={model.cfg.d_model}."
            )


def _tokens_1d(model: HookedModel, tokens: torch.Tensor | str) -> torch.Tensor:
    ids = model.tokenize(tokens).ids if isinstance(tokens, str) else tokens
    ids = ids[0] if ids.ndim == 2 else ids
    if ids.ndim != 1 or ids.numel() == 0:
        raise InvalidConfigError("A recorded run needs one prompt (a 1-D tensor of token ids).")
    return ids.to(model.device)


@contextmanager
def frozen_final_norm(model: HookedModel, scale: torch.Tensor) -> Iterator[None]:
    """The final norm with its scale fixed to ``scale [pos, 1]`` (this thread's forwards only, as
    :func:`neuroscope.graphs.linear.frozen_norms` does for the blocks' norms)."""
    from neuroscope.graphs.linear import frozen_norm

    module = model.hf_model.get_submodule(model.adapter.final_norm)
    kind, owner = model.cfg.normalization, threading.get_ident()

    def hook(mod: nn.Module, args: tuple, output: Any) -> torch.Tensor | None:
        if threading.get_ident() != owner:
            return None
        return frozen_norm(mod, args[0], scale.to(args[0].dtype), kind).to(output.dtype)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class ReplacementModel:
    """A :class:`~neuroscope.models.hooked.HookedModel` whose MLPs are replaced by a :class:`TranscoderSet`.
    Layers without a transcoder keep their real MLP (an attribution graph treats it as all error)."""

    def __init__(self, model: HookedModel, transcoders: TranscoderSet):
        check_transcoders(model, transcoders)
        self.model = model
        self.transcoders = transcoders
        dev, dt = model.device, model.dtype
        for tc in transcoders.transcoders.values():
            tc.to(device=dev, dtype=dt)
            tc.requires_grad_(False)

    @property
    def layers(self) -> list[int]:
        return self.transcoders.layers

    def transcoder(self, layer: int) -> Transcoder | None:
        return self.transcoders.transcoders.get(layer)

    # --- the recorded run -------------------------------------------------------------------------------
    @torch.no_grad()
    def record(self, tokens: torch.Tensor | str, keep_patterns: bool = False) -> RecordedRun:
        """One real forward of ``tokens``, recorded for freezing and attribution. ``keep_patterns`` also keeps
        every layer's attention pattern (``[head, pos, pos]``: quadratic; the graph's short-prompt path)."""
        model = self.model
        ids = _tokens_1d(model, tokens)
        n = model.cfg.n_layers
        names = [f"blocks.{l}.{h}" for l in range(n) for h in ("ln2.hook_normalized", "hook_mlp_out")]
        names += [f"blocks.{l}.hook_resid_pre" for l in range(n)] + ["hook_embed", model.final_resid_name]
        names += [f"blocks.{l}.attn.{h}" for l in range(n) for h in ("hook_q", "hook_k")]
        if model.adapter.pos_embed:
            names.append("hook_pos_embed")
        patterns: dict[int, torch.Tensor] = {}
        hooks: list[tuple[str, Any]] = []
        for l in range(n):
            # the eager kernel (the one whose pattern an attribution reads) also when nothing is kept
            def keep(t: torch.Tensor, hook: Any, _l: int = l) -> None:
                if keep_patterns:
                    patterns[_l] = t[0].detach().clone()

            hooks.append((f"blocks.{l}.attn.hook_pattern", keep))
        with capture_scales(model, list(range(n))) as scales:
            logits, cache = model.run_with_cache(ids[None], names=names, fwd_hooks=hooks, logits_to_keep=1)
        assert logits is not None
        final = cache[model.final_resid_name][0]
        final_norm = model.hf_model.get_submodule(model.adapter.final_norm)
        resid0 = cache["blocks.0.hook_resid_pre"][0]
        embed = resid0 - cache["hook_pos_embed"][0] if model.adapter.pos_embed else resid0
        return RecordedRun(
            tokens=ids,
            mlp_in=torch.stack([cache[f"blocks.{l}.ln2.hook_normalized"][0] for l in range(n)]),
            mlp_out=torch.stack([cache[f"blocks.{l}.hook_mlp_out"][0] for l in range(n)]),
            resid_pre=torch.stack([cache[f"blocks.{l}.hook_resid_pre"][0] for l in range(n)]),
            final_resid=final,
            embed=embed,
            scales={k: v[0] for k, v in scales.items()},
            final_scale=norm_scale(final_norm, final, model.cfg.normalization),
            q={l: cache[f"blocks.{l}.attn.hook_q"][0] for l in range(n)},
            k={l: cache[f"blocks.{l}.attn.hook_k"][0] for l in range(n)},
            logits=logits[0, -1].detach(),
            patterns=patterns,
        )

    @torch.no_grad()
    def clean_activations(self, run: RecordedRun, layer: int) -> torch.Tensor:
        """Feature activations ``[pos, d_tc]`` of layer ``layer``'s transcoder in the recorded run."""
        tc = self.transcoder(layer)
        if tc is None:
            raise IndexOutOfRangeError("transcoder layer", layer, self.model.cfg.n_layers)
        return tc.encode(run.mlp_in[layer])

    def errors(self, run: RecordedRun, layer: int) -> torch.Tensor:
        """``real MLP output − transcoder output`` ``[pos, d_model]`` in the recorded run (the whole MLP output
        where the layer has no transcoder)."""
        tc = self.transcoder(layer)
        if tc is None:
            return run.mlp_out[layer]
        with torch.no_grad():
            return run.mlp_out[layer] - tc(run.mlp_in[layer])

    # --- forwards ---------------------------------------------------------------------------------------
    def _check(self, ivs: Sequence[FeatureIntervention], adds: Sequence[ResidualAdd], n_pos: int) -> None:
        n = self.model.cfg.n_layers
        for iv in ivs:
            tc = self.transcoder(iv.layer)
            if tc is None:
                raise IndexOutOfRangeError("transcoder layer", iv.layer, n)
            if not 0 <= iv.pos < n_pos:
                raise IndexOutOfRangeError("position", iv.pos, n_pos)
            if not 0 <= iv.feature < tc.cfg.d_tc:
                raise IndexOutOfRangeError("feature", iv.feature, tc.cfg.d_tc)
        for a in adds:
            if a.site not in ("mlp_out", "embed"):
                raise InvalidConfigError(f"ResidualAdd site must be 'mlp_out' or 'embed', got {a.site!r}.")
            if a.site == "mlp_out" and not 0 <= a.layer < n:
                raise IndexOutOfRangeError("layer", a.layer, n)
            if not 0 <= a.pos < n_pos:
                raise IndexOutOfRangeError("position", a.pos, n_pos)

    def forward(
        self,
        tokens: torch.Tensor | str,
        *,
        errors: ErrorMode = "live",
        features: FeatureMode = "live",
        interventions: Sequence[FeatureIntervention] = (),
        adds: Sequence[ResidualAdd] = (),
        freeze: RecordedRun | None = None,
        freeze_attention: bool = True,
        freeze_norms: bool = True,
        record_pre: bool = False,
        record_acts: bool = False,
        record_final: bool = False,
    ) -> ReplacementOutput:
        """Logits of the replacement model on ``tokens`` (``[pos]``, ``[batch, pos]`` or text)."""
        model = self.model
        ids = model.tokenize(tokens).ids if isinstance(tokens, str) else tokens
        ids = ids[None] if ids.ndim == 1 else ids
        batch, n_pos = ids.shape
        if errors not in ("off", "fixed", "live"):
            raise InvalidConfigError(f"errors must be 'off', 'fixed' or 'live', got {errors!r}.")
        if features not in ("live", "frozen"):
            raise InvalidConfigError(f"features must be 'live' or 'frozen', got {features!r}.")
        if (errors == "fixed" or features == "frozen") and freeze is None:
            raise InvalidConfigError(
                "errors='fixed' and features='frozen' need the recorded run (freeze=...)."
            )
        if freeze is not None and freeze.n_pos != n_pos:
            raise InvalidConfigError(f"The recorded run has {freeze.n_pos} positions, these tokens {n_pos}.")
        self._check(interventions, adds, n_pos)
        by_layer: dict[int, list[FeatureIntervention]] = {}
        for iv in interventions:
            by_layer.setdefault(iv.layer, []).append(iv)
        out = ReplacementOutput(logits=torch.empty(0), pre={}, acts={}, mlp_out={})
        mlp_in: dict[int, torch.Tensor] = {}
        hooks: list[tuple[str, Any]] = []

        def take_in(t: torch.Tensor, hook: Any) -> None:
            mlp_in[hook.layer] = t

        def replace(t: torch.Tensor, hook: Any) -> torch.Tensor:
            l = hook.layer
            new = self._mlp_out(
                l,
                mlp_in.pop(l),
                t,
                errors,
                features,
                by_layer.get(l, ()),
                freeze,
                out,
                record_pre,
                record_acts,
            )
            for a in adds:
                if a.site == "mlp_out" and a.layer == l:
                    new = new.clone() if new is t else new
                    new[:, a.pos] = new[:, a.pos] + a.vector.to(new.dtype)
            out.mlp_out[l] = new
            return new

        for l in range(model.cfg.n_layers):
            hooks += [(f"blocks.{l}.ln2.hook_normalized", take_in), (f"blocks.{l}.hook_mlp_out", replace)]
        if record_final:

            def take_final(t: torch.Tensor, hook: Any) -> None:
                out.final = t

            hooks.append(("ln_final.hook_normalized", take_final))
        embed_adds = [a for a in adds if a.site == "embed"]
        if embed_adds:

            def add_embed(t: torch.Tensor, hook: Any) -> torch.Tensor:
                t = t.clone()
                for a in embed_adds:
                    t[:, a.pos] = t[:, a.pos] + a.vector.to(t.dtype)
                return t

            hooks.append(("hook_embed", add_embed))
        if freeze is not None and freeze_attention:
            for l in range(model.cfg.n_layers):
                for name, store in (("hook_q", freeze.q), ("hook_k", freeze.k)):
                    hooks.append(
                        (
                            f"blocks.{l}.attn.{name}",
                            lambda t, hook, _v=store[l]: _v[None].expand_as(t).to(t.dtype),
                        )
                    )
        with ExitStack() as stack:
            # the norms' own module hooks go on before the hook dispatchers, so that ln2.hook_normalized
            # (a forward hook on the same module) reads the frozen output
            if freeze is not None and freeze_norms:
                stack.enter_context(frozen_norms(model, {k: v[None] for k, v in freeze.scales.items()}))
                stack.enter_context(frozen_final_norm(model, freeze.final_scale[None]))
            out.logits = model.run_with_hooks(ids, fwd_hooks=hooks)
        return out

    def _mlp_out(
        self,
        layer: int,
        x: torch.Tensor,
        real: torch.Tensor,
        errors: str,
        features: str,
        ivs: Sequence[FeatureIntervention],
        freeze: RecordedRun | None,
        out: ReplacementOutput,
        record_pre: bool,
        record_acts: bool,
    ) -> torch.Tensor:
        tc = self.transcoder(layer)
        if tc is None:
            # a layer without a transcoder is all error: held at the recorded run's output for direct effects
            return (
                freeze.mlp_out[layer][None].expand_as(real).to(real.dtype)
                if features == "frozen" and freeze
                else real
            )
        pre = tc.pre(x)
        if record_pre:
            out.pre[layer] = pre
        if features == "live":
            acts = tc.activate(pre)
        else:
            assert freeze is not None
            acts = tc.encode(freeze.mlp_in[layer])[None].expand_as(pre)
        base = acts
        if ivs:
            acts = acts.clone()
            for iv in ivs:
                cur = acts[:, iv.pos, iv.feature]
                new = {"set": torch.full_like(cur, iv.value), "scale": cur * iv.value, "add": cur + iv.value}
                acts[:, iv.pos, iv.feature] = new[iv.mode]
        if record_acts:
            out.acts[layer] = acts
        new = tc.decode(acts) + tc.skip(x)
        if errors == "fixed":
            assert freeze is not None
            new = new + self.errors(freeze, layer)[None].to(new.dtype)
        elif errors == "live":
            live = base if features == "live" else tc.activate(pre)
            new = new + (real - (tc.decode(live) + tc.skip(x)))
        return new.to(real.dtype)
