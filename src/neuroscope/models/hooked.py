"""HookedModel: a Hugging Face causal LM with TransformerLens-named hook points.

The Hugging Face forward runs unchanged; hook points are dispatchers attached to its modules only while a
context asks for them, so a model with nothing attached reproduces the plain Hugging Face logits exactly.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Union, cast

import torch
from jaxtyping import Float, Int

from neuroscope.errors import EmptyPromptError, IndexOutOfRangeError, PromptTooLongError
from neuroscope.models import attention
from neuroscope.models.adapters import get_adapter
from neuroscope.models.cache import ActivationCache
from neuroscope.models.config import HookedConfig
from neuroscope.models.hooks import (
    ATTN_FN_HOOKS,
    BoundSite,
    HookFn,
    HookRegistry,
    HookState,
    StopForward,
    _identity_read,
    _identity_write,
    build_sites,
    hook_context,
    resolve_name,
    wrap_layer_forwards,
)
from neuroscope.models.prefix import KVPrefix
from neuroscope.models.quantize import QuantInfo, dequantized_weight

Input = Union[str, Sequence[str], torch.Tensor]
NameFilter = Union[None, str, Sequence[str], Callable[[str], bool]]
FwdHook = tuple[str | Callable[[str], bool], HookFn]


@dataclass(frozen=True)
class Tokens:
    ids: Int[torch.Tensor, "batch pos"]
    attention_mask: Int[torch.Tensor, "batch pos"] | None  # None when nothing is padded

    @property
    def last_positions(self) -> Int[torch.Tensor, " batch"]:
        if self.attention_mask is None:
            return torch.full((self.ids.shape[0],), self.ids.shape[1] - 1, device=self.ids.device)
        return self.attention_mask.sum(-1) - 1


class HookedModel:
    def __init__(self, hf_model: Any, tokenizer: Any, name: str | None = None):
        self.hf_model = hf_model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        config = hf_model.config
        self.adapter = get_adapter(config.model_type)
        self.cfg = HookedConfig.from_hf(
            config,
            name or getattr(config, "_name_or_path", config.model_type),
            self.adapter.norm,
            self.adapter.parallel(config),
        )
        attention.register_attention()
        hf_model.set_attn_implementation(attention.IMPLEMENTATION)
        self.sites = build_sites(hf_model, self.adapter, self.cfg)
        self._registry = HookRegistry(self.sites)
        self._bind_attention_sites()
        self._names = self._public_names()
        self._name_set = set(self._names)
        wrap_layer_forwards(self.hf_model.get_submodule(self.adapter.layers))
        self.load_seconds = 0.0
        self.quantization: QuantInfo | None = None  # set by load_model(..., quantize=...)

    def refresh_sites(self) -> None:
        """Re-resolve hook points after modules were wrapped in place (peft LoRA layers replace
        ``o_proj``/``down_proj``/``embed_tokens`` with wrappers that hold the original as ``base_layer``):
        a hook must sit on the wrapper, or it would see the output without the adapter's delta."""
        if any(d.refcount for d in self._registry._dispatch.values()):
            raise RuntimeError("refresh_sites() while hooks are attached: call it between forwards")
        self.sites = build_sites(self.hf_model, self.adapter, self.cfg)
        self._registry = HookRegistry(self.sites)

    def _bind_attention_sites(self) -> None:
        attn_path = self.adapter.sites["attn.hook_z"].module.rsplit(".", 1)[0]
        layers = self.hf_model.get_submodule(self.adapter.layers)
        modules, pairs = [], []
        for l, layer in enumerate(layers):
            module = layer.get_submodule(attn_path)
            modules.append(module)
            pairs.append(
                tuple(
                    BoundSite(f"blocks.{l}.{h}", l, module, "fn", _identity_read, _identity_write)
                    for h in ATTN_FN_HOOKS
                )
            )
        attention.bind_attention_sites(modules, pairs)

    def _public_names(self) -> list[str]:
        names: list[str] = []
        for n in self.sites:
            if n.rsplit(".", 1)[-1].startswith("__"):
                continue
            names.append(n)
            if n.endswith("attn.hook_v"):
                names += [n.rsplit(".", 1)[0] + "." + h.split(".", 1)[1] for h in ATTN_FN_HOOKS]
        return names

    # --- basic properties ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"HookedModel({c.name!r}, {c.model_type}, layers={c.n_layers}, heads={c.n_heads}/{c.n_kv_heads}, "
            f"d_model={c.d_model}, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    def hook_names(self) -> list[str]:
        return list(self._names)

    @property
    def final_resid_name(self) -> str:
        """The last block's output: what the final norm reads."""
        return f"blocks.{self.cfg.n_layers - 1}.hook_resid_post"

    def resid_stream_names(self) -> list[str]:
        """``resid_pre`` of every layer, then the final residual: the stream ``accumulated_resid`` stacks."""
        return [f"blocks.{l}.hook_resid_pre" for l in range(self.cfg.n_layers)] + [self.final_resid_name]

    def _module(self, path: str) -> torch.nn.Module:
        return self.hf_model.get_submodule(path)

    # weights are read through dequantized_weight: plain weights come back as they are (no copy), quantized
    # ones dequantized, device_map-offloaded ones fetched
    @property
    def W_U(self) -> Float[torch.Tensor, "d_model d_vocab"]:
        return dequantized_weight(self._module(self.adapter.unembed)).T

    @property
    def b_U(self) -> Float[torch.Tensor, " d_vocab"] | None:
        return getattr(self._module(self.adapter.unembed), "bias", None)

    @property
    def W_E(self) -> Float[torch.Tensor, "d_vocab d_model"]:
        return dequantized_weight(self._module(self.adapter.embed))

    def layer_module(self, layer: int, path: str = "") -> torch.nn.Module:
        self.check_layer(layer)
        block = cast(torch.nn.ModuleList, self._module(self.adapter.layers))[layer]
        return block.get_submodule(path) if path else block

    def W_O(self, layer: int) -> Float[torch.Tensor, "head d_head d_model"]:
        """Each head's slice of the output projection (what ``hook_z`` is multiplied by)."""
        proj = _unwrapped(self.layer_module(layer, self.adapter.sites["attn.hook_z"].module))
        weight = dequantized_weight(proj)
        w = weight if proj.__class__.__name__ == "Conv1D" else weight.T  # [h*d_head, d_model]
        return w.reshape(self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model)

    def b_O(self, layer: int) -> Float[torch.Tensor, " d_model"]:
        proj = _unwrapped(self.layer_module(layer, self.adapter.sites["attn.hook_z"].module))
        bias = getattr(proj, "bias", None)
        return (
            bias if bias is not None else torch.zeros(self.cfg.d_model, device=self.device, dtype=self.dtype)
        )

    def W_out(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
        """The MLP output projection (what ``mlp.hook_post`` is multiplied by)."""
        proj = _unwrapped(self.layer_module(layer, self.adapter.sites["mlp.hook_post"].module))
        weight = dequantized_weight(proj)
        return weight if proj.__class__.__name__ == "Conv1D" else weight.T

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.cfg.n_layers:
            raise IndexOutOfRangeError("layer", layer, self.cfg.n_layers)

    def check_head(self, layer: int, head: int) -> None:
        self.check_layer(layer)
        if not 0 <= head < self.cfg.n_heads:
            raise IndexOutOfRangeError("head", head, self.cfg.n_heads)

    # --- tokens -------------------------------------------------------------------------------------
    def tokenize(
        self, x: Input, attention_mask: torch.Tensor | None = None, prepend_bos: bool | None = None
    ) -> Tokens:
        if isinstance(x, torch.Tensor):
            ids = x.unsqueeze(0) if x.ndim == 1 else x
            if ids.numel() == 0 or ids.shape[-1] == 0:
                raise EmptyPromptError()
            if int(ids.max()) >= self.cfg.d_vocab or int(ids.min()) < 0:
                bad = int(ids.max()) if int(ids.max()) >= self.cfg.d_vocab else int(ids.min())
                raise IndexOutOfRangeError("token id", bad, self.cfg.d_vocab)
            mask = attention_mask
        else:
            texts = [x] if isinstance(x, str) else list(x)
            if not texts or any(not isinstance(t, str) or t == "" for t in texts):
                raise EmptyPromptError("Got an empty string." if texts else "Got an empty list of prompts.")
            enc = self.tokenizer(texts, return_tensors="pt", padding=True)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            if (
                prepend_bos
                and self.tokenizer.bos_token_id is not None
                and not bool((ids[:, 0] == self.tokenizer.bos_token_id).all())
            ):
                bos = torch.full((ids.shape[0], 1), self.tokenizer.bos_token_id, dtype=ids.dtype)
                ids, mask = torch.cat([bos, ids], 1), torch.cat([torch.ones_like(bos), mask], 1)
            if ids.shape[-1] == 0:
                raise EmptyPromptError()
        if ids.shape[-1] > self.cfg.n_ctx:
            raise PromptTooLongError(ids.shape[-1], self.cfg.n_ctx)
        if mask is not None and bool(mask.all()):
            mask = None
        dev = self.device
        return Tokens(ids.to(dev), None if mask is None else mask.to(dev))

    def to_tokens(self, x: Input, prepend_bos: bool | None = None) -> Int[torch.Tensor, "batch pos"]:
        return self.tokenize(x, prepend_bos=prepend_bos).ids

    def to_str_tokens(self, x: Input) -> list[str]:
        ids = self.to_tokens(x)[0]
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def to_string(self, ids: torch.Tensor | Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def format_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # --- hooks --------------------------------------------------------------------------------------
    def resolve_hook_name(self, name: str) -> str:
        return resolve_name(name, self._names, self.cfg.n_layers) if name not in self._name_set else name

    def _expand(self, name: str | Callable[[str], bool]) -> list[str]:
        if callable(name):
            return [n for n in self._names if name(n)]
        return [self.resolve_hook_name(name)]

    def build_state(self, fwd_hooks: Iterable[FwdHook] = (), interventions: Iterable[Any] = ()) -> HookState:
        state = HookState()
        pairs: list[FwdHook] = []
        for iv in interventions:
            pairs += iv.bind(self)
            # an edit intervention picks the peft adapter of each row (neuroscope.edits.host.ApplyEdits)
            rows = getattr(iv, "adapter_rows", None)
            if rows is not None:
                state.adapters = rows(self)
        pairs += list(fwd_hooks)
        for name, fn in pairs:
            for full in self._expand(name):
                state.fns[full] = state.fns.get(full, ()) + (fn,)
        return state

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[FwdHook] = (),
        interventions: Iterable[Any] = (),
        state: HookState | None = None,
    ):
        """Attach hooks and interventions for the body of the ``with``; removed on exit, even on error."""
        state = state or self.build_state(fwd_hooks, interventions)
        extra = []
        if state.stop_layer is not None:
            extra.append(
                f"blocks.{state.stop_layer}.__stop__"
                if state.stop_layer < self.cfg.n_layers
                else "ln_final.__stop__"
            )
        with hook_context(self._registry, state, extra) as active:
            yield active

    # --- forward passes -----------------------------------------------------------------------------
    @functools.cached_property
    def _cache_kwarg(self) -> str:
        return (
            "cache" if "cache" in inspect.signature(self.hf_model.forward).parameters else "past_key_values"
        )

    def _forward(
        self, tokens: Tokens, logits_to_keep: int = 0, prefix: KVPrefix | None = None
    ) -> torch.Tensor:
        # logits_to_keep=k unembeds only the last k positions: a metric on the next token does not pay for
        # [pos, d_vocab] logits (a fifth of a 135M model's forward, and more of its backward)
        ids, extra = (tokens.ids, {}) if prefix is None else prefix.inputs(tokens, self._cache_kwarg)
        out = self.hf_model(
            input_ids=ids,
            attention_mask=tokens.attention_mask,
            logits_to_keep=logits_to_keep,
            **{"use_cache": False, **extra},
        )
        return out.logits

    def __call__(
        self,
        x: Input,
        attention_mask: torch.Tensor | None = None,
        interventions: Iterable[Any] = (),
        logits_to_keep: int = 0,
    ) -> Float[torch.Tensor, "batch pos d_vocab"]:
        return self.run_with_hooks(
            x, interventions=interventions, attention_mask=attention_mask, logits_to_keep=logits_to_keep
        )

    forward = __call__

    def run_with_hooks(
        self,
        x: Input,
        fwd_hooks: Iterable[FwdHook] = (),
        interventions: Iterable[Any] = (),
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> Float[torch.Tensor, "batch pos d_vocab"]:
        """Logits with hooks/interventions attached for this call only. ``logits_to_keep=k > 0`` returns
        only the last ``k`` positions' logits (with right padding, the last real token of a shorter row is
        then not among them: use it on unpadded batches)."""
        tokens = self.tokenize(x, attention_mask)
        fwd_hooks, interventions = list(fwd_hooks), list(interventions)
        if not fwd_hooks and not interventions:
            return self._forward(tokens, logits_to_keep)
        with self.hooks(fwd_hooks, interventions):
            return self._forward(tokens, logits_to_keep)

    def run_with_cache(
        self,
        x: Input,
        names: NameFilter = None,
        stop_at_layer: int | None = None,
        interventions: Iterable[Any] = (),
        fwd_hooks: Iterable[FwdHook] = (),
        attention_mask: torch.Tensor | None = None,
        detach: bool = True,
        skip_below: int = 0,
        logits_to_keep: int = 0,
        prefix: KVPrefix | None = None,
        grow: dict[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | None, ActivationCache]:
        """Run and record activations. ``stop_at_layer=k`` skips blocks k.. (logits are then None);
        ``logits_to_keep`` as in :meth:`run_with_hooks`; ``prefix`` (``models.prefix``) reuses recorded keys
        and values for the first positions, and activations and logits then cover the later ones only;
        ``grow`` adds rows at layers' inputs (``hooks.wrap_layer_forwards``)."""
        tokens = self.tokenize(x, attention_mask)
        if names is None:
            wanted = list(self._names)
        elif isinstance(names, str):
            wanted = [self.resolve_hook_name(names)]
        elif callable(names):
            wanted = [n for n in self._names if names(n)]
        else:
            wanted = [self.resolve_hook_name(n) for n in names]
        if stop_at_layer is not None and not 0 <= stop_at_layer <= self.cfg.n_layers:
            raise IndexOutOfRangeError("stop_at_layer", stop_at_layer, self.cfg.n_layers + 1)
        store: dict[str, torch.Tensor] = {}

        def save(t: torch.Tensor, hook: Any) -> None:
            store[hook.name] = t.detach() if detach else t

        state = self.build_state(list(fwd_hooks) + [(n, save) for n in wanted], interventions)
        state.stop_layer = stop_at_layer
        state.skip_below = skip_below
        state.grow = grow or {}
        state.pos_offset = prefix.length if prefix is not None else 0
        logits: torch.Tensor | None
        with self.hooks(state=state):
            try:
                logits = self._forward(tokens, logits_to_keep, prefix)
            except StopForward:
                logits = None
        return logits, ActivationCache(store, self)

    def loss(self, x: Input, per_token: bool = False, interventions: Iterable[Any] = ()) -> torch.Tensor:
        """Next-token cross-entropy (mean over real tokens, or ``[batch, pos-1]`` with ``per_token``)."""
        tokens = self.tokenize(x)
        with self.hooks(interventions=interventions):
            logits = self._forward(tokens)
        return next_token_loss(logits, tokens, per_token)

    # --- final norm and unembedding ------------------------------------------------------------------
    def apply_ln_final(self, resid: torch.Tensor) -> torch.Tensor:
        return self._module(self.adapter.final_norm)(resid)

    def unembed(self, normalized: torch.Tensor, tokens: Sequence[int] | None = None) -> torch.Tensor:
        """Logits from the final norm's output; ``tokens`` selects vocabulary columns (in that order), so a
        metric on a few tokens does not read the whole ``[d_model, d_vocab]`` unembedding."""
        W, bias = self.W_U, self.b_U
        if tokens is not None:
            idx = torch.as_tensor(list(tokens), dtype=torch.long, device=W.device)
            # select rows of the stored [d_vocab, d_model] weight: selecting columns of its transpose view
            # would first copy the whole matrix
            W = W.T.index_select(0, idx).T
            bias = None if bias is None else bias.index_select(0, idx)
        logits = normalized @ W
        if bias is not None:
            logits = logits + bias
        if self.cfg.final_logit_softcap:
            cap = self.cfg.final_logit_softcap
            logits = torch.tanh(logits / cap) * cap
        return logits

    def norm_linear(
        self, stack: torch.Tensor, final_resid: torch.Tensor, norm: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """The final norm (or ``norm``, another of the model's norms of the same kind, such as Gemma 2's
        post-sublayer norms) as a linear map, its scale frozen from its input ``final_resid`` (for attribution).
        A LayerNorm's bias is left out: it belongs to no component."""
        norm = norm if norm is not None else self._module(self.adapter.final_norm)
        eps = float(getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", None) or 1e-5)
        x = final_resid.float()
        if self.cfg.normalization == "layer":
            scale = torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
            stack = stack - stack.mean(-1, keepdim=True)
            weight = cast(torch.Tensor, norm.weight)
        else:
            scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            w = cast(torch.Tensor, norm.weight)
            weight = w + 1.0 if self.cfg.normalization == "rms_plus_one" else w
        return (stack.float() * scale * weight.float()).to(stack.dtype)

    # --- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 20,
        interventions: Iterable[Any] = (),
        temperature: float = 0.0,
        seed: int = 0,
        stop_at_eos: bool = True,
    ) -> str:
        """Generate a continuation (new text only) with the interventions active at every step."""
        ids = self.tokenize(prompt).ids
        gen = torch.Generator(device="cpu").manual_seed(seed)
        new: list[int] = []
        with self.hooks(interventions=interventions) as state:
            past = None
            step_ids = ids
            pos = 0
            for _ in range(max_new_tokens):
                if pos + step_ids.shape[1] > self.cfg.n_ctx:
                    break
                state.pos_offset = pos
                # transformers 5.x renamed past_key_values to cache; accept both within our pin
                out = self.hf_model(input_ids=step_ids, use_cache=True, **{self._cache_kwarg: past})
                past = getattr(out, self._cache_kwarg)
                pos += step_ids.shape[1]
                logits = out.logits[0, -1].float()
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, -1).cpu()
                    nxt = int(torch.multinomial(probs, 1, generator=gen))
                else:
                    nxt = int(logits.argmax())
                if stop_at_eos and nxt == self.tokenizer.eos_token_id:
                    break
                new.append(nxt)
                step_ids = torch.tensor([[nxt]], device=self.device)
        return self.tokenizer.decode(new, skip_special_tokens=True)


def _unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """The original layer under an adapter wrapper (peft keeps it as ``base_layer``); weights are read there."""
    return cast(torch.nn.Module, getattr(module, "base_layer", module))


def next_token_loss(logits: torch.Tensor, tokens: Tokens, per_token: bool = False) -> torch.Tensor:
    logprobs = torch.log_softmax(logits[:, :-1].float(), -1)
    target = tokens.ids[:, 1:]
    nll = -logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    if per_token:
        return nll
    if tokens.attention_mask is None:
        return nll.mean()
    mask = tokens.attention_mask[:, 1:].to(nll.dtype)
    return (nll * mask).sum() / mask.sum()
