"""Export a model to ONNX in two parts split after block K, so a vector can be added between them.

``part_a``: input ids + attention mask -> embeddings and blocks 0..K -> the residual stream after block K
(``blocks.{K}.hook_resid_post`` = ``blocks.{K+1}.hook_resid_pre``).
``part_b``: that residual + the mask -> blocks K+1..end, final norm, unembedding -> logits.

Both parts call the Hugging Face modules themselves (no reimplementation): each part rebuilds the position
ids (``arange``, right padding as everywhere in NeuroScope), the rotary cos/sin from the model's own
``rotary_emb`` and the causal / sliding-window masks from transformers' own mask functions, so nothing but
the residual and the 2-D mask crosses the split.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuroscope.errors import (
    ExportArchitectureError,
    IndexOutOfRangeError,
    InvalidConfigError,
    LiveEditsAttachedError,
    ResourceNotFoundError,
)
from neuroscope.export import manifest as mf
from neuroscope.export.vectors import StoredVector, vectors_json

# Every architecture here is exported and validated against PyTorch in tests/unit/test_export_onnx.py
# (tiny random models) — an architecture joins this list only with that test.
TESTED_ARCHITECTURES = (
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_neox",
    "llama",
    "mistral",
    "phi3",
    "qwen2",
    "qwen3",
)
TWO_GB = 2**31
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportConfig:
    """How to export. ``split`` is the last block of part A (0..n_layers-2)."""

    split: int
    max_length: int | None = None  # longest sequence the parts accept (default: the model's context, ≤ 2048)
    opset: int = DEFAULT_OPSET
    external_data_bytes: int = TWO_GB  # a part whose weights exceed this is saved with external data
    copy_web_page: bool = True  # put NeuroScope-Web (index.html + assets) beside the parts
    kv_cache: bool = True  # also export the KV-cached parts (architectures in onnx_kv.KV_ARCHITECTURES)


class _Span(nn.Module):
    """Blocks ``start..stop-1`` of a Hugging Face causal LM, optionally with the embedding / the head."""

    def __init__(self, hf: nn.Module, adapter: Any, start: int, stop: int, embed: bool, head: bool):
        super().__init__()
        self.config = hf.config  # type: ignore[attr-defined]
        self.start, self.embed, self.head = start, embed, head
        base = hf.get_submodule(adapter.layers.rsplit(".", 1)[0])
        layers = hf.get_submodule(adapter.layers)
        self.blocks = nn.ModuleList([layers[i] for i in range(start, stop)])  # type: ignore[index]
        self.embed_tokens = hf.get_submodule(adapter.embed) if embed else None
        self.pos_embed = hf.get_submodule(adapter.pos_embed) if embed and adapter.pos_embed else None
        self.rotary = getattr(base, "rotary_emb", None)
        self.rotary_by_type = (
            self.rotary is not None and "layer_type" in inspect.signature(self.rotary.forward).parameters
        )
        self.final_norm = hf.get_submodule(adapter.final_norm) if head else None
        self.unembed = hf.get_submodule(adapter.unembed) if head else None

    def _layer_type(self, i: int) -> str:
        types = getattr(self.config, "layer_types", None)
        if types:
            return str(types[i])
        # Mistral / Phi-3 configs without layer_types slide every layer when sliding_window is set
        return "sliding_attention" if getattr(self.config, "sliding_window", None) else "full_attention"

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        h = self.embed_tokens(x) if self.embed_tokens is not None else x
        if self.pos_embed is not None:
            h = h + self.pos_embed(positions)
        masks: dict[str, Any] = {}
        rotary: dict[str, Any] = {}
        for j, block in enumerate(self.blocks):
            kind = self._layer_type(self.start + j)
            if kind not in masks:
                make = (
                    create_sliding_window_causal_mask if kind == "sliding_attention" else create_causal_mask
                )
                # an explicit mask always (never SDPA's is_causal shortcut): padded batches stay exact
                masks[kind] = make(
                    config=self.config,
                    inputs_embeds=h,
                    attention_mask=attention_mask,
                    cache=None,
                    position_ids=positions,
                    allow_is_causal_skip=False,
                )
            kw: dict[str, Any] = {"attention_mask": masks[kind], "position_ids": positions}
            if self.rotary is not None:
                if kind not in rotary:
                    args = (h, positions, kind) if self.rotary_by_type else (h, positions)
                    rotary[kind] = self.rotary(*args)
                kw["position_embeddings"] = rotary[kind]
            out = block(h, **kw)
            h = out[0] if isinstance(out, tuple) else out
        if not self.head:
            return h
        logits = self.unembed(self.final_norm(h))  # type: ignore[misc]
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits


def check_split(model: Any, split: int) -> None:
    """Part B needs at least one block: the split layer is 0..n_layers-2."""
    if not 0 <= split <= model.cfg.n_layers - 2:
        raise IndexOutOfRangeError("split layer", split, model.cfg.n_layers - 1)


def check_architecture(model: Any) -> None:
    if model.cfg.model_type not in TESTED_ARCHITECTURES:
        raise ExportArchitectureError(model.cfg.model_type, TESTED_ARCHITECTURES)


def split_parts(model: Any, split: int) -> tuple[nn.Module, nn.Module]:
    """The two PyTorch modules that are exported (they share the model's weights)."""
    check_architecture(model)
    check_split(model, split)
    hf, ad, n = model.hf_model, model.adapter, model.cfg.n_layers
    return _Span(hf, ad, 0, split + 1, True, False).eval(), _Span(hf, ad, split + 1, n, False, True).eval()


def _export_one(
    module: nn.Module, args: tuple, names: tuple[list[str], list[str]], max_length: int, opset: int
) -> Any:
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=1, max=max_length)
    dims = {"x": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    return quiet_export(module, args, names, dims, opset)


def quiet_export(
    module: nn.Module, args: tuple, names: tuple[list[str], list[str]], dims: dict[str, Any], opset: int
) -> Any:
    """torch.onnx's dynamo export with the given dynamic shapes. The exporter warns about optional
    torchvision ops and axis renames: noise for a command-line user, so it is silenced here."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=names[0],
                output_names=names[1],
                dynamic_shapes=dims,
                opset_version=opset,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def _param_bytes(module: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def _example(model: Any, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    # batch 2 and a length > 1 so that torch.export keeps both dimensions symbolic (it specialises 0/1)
    n = max(2, min(8, max_length))
    ids = torch.arange(n, device=model.device).remainder(model.cfg.d_vocab).repeat(2, 1)
    mask = torch.ones_like(ids)
    mask[1, -1] = 0
    return ids, mask


def tied_embeddings(model: Any) -> bool:
    return model.W_E.data_ptr() == model.W_U.data_ptr()


def check_no_live_edits(model: Any) -> None:
    """Refuse a model with the feature lab's live LoRA layers injected: their per-row adapter choice reads the
    batch size, so torch.export would fix the batch at the example's 2 (onnxruntime then refuses batch 1)."""
    from peft.tuners.lora import LoraLayer

    wrapped = [n for n, m in model.hf_model.named_modules() if isinstance(m, LoraLayer)]
    if wrapped:
        raise LiveEditsAttachedError(
            f"{model.cfg.name} has live LoRA edits injected ({len(wrapped)} layers, e.g. {wrapped[0]}). Export a "
            "freshly loaded model, or merge the edit first (`neuroscope import BUNDLE --merge OUT`) and export OUT."
        )


def export_split(
    model: Any, config: ExportConfig, out: str | Path, vectors: list[StoredVector] | tuple = ()
) -> dict[str, Any]:
    """Export ``model`` into folder ``out`` (written whole into a temporary folder, then moved into place);
    returns the manifest. An existing ``out`` is replaced only when it holds an earlier export."""
    check_architecture(model)
    check_split(model, config.split)
    check_no_live_edits(model)
    for v in vectors:
        v.check_width(model.cfg.d_model)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / mf.MANIFEST).exists():
        raise InvalidConfigError(
            f"{out} exists and is not an ONNX export (no {mf.MANIFEST}): choose another --out."
        )
    max_length = min(config.max_length or min(model.cfg.n_ctx, 2048), model.cfg.n_ctx)
    if max_length < 1:
        raise InvalidConfigError(f"max_length must be at least 1, got {max_length}.")
    part_a, part_b = split_parts(model, config.split)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the export is meant to be served
    try:
        t0 = time.perf_counter()
        ids, mask = _example(model, max_length)
        with torch.no_grad():
            resid = part_a(ids, mask)
        parts = {}
        for key, module, args, names in (
            ("a", part_a, (ids, mask), (["input_ids", "attention_mask"], ["resid"])),
            ("b", part_b, (resid, mask), (["resid", "attention_mask"], ["logits"])),
        ):
            program = _export_one(module, args, names, max_length, config.opset)
            external = _param_bytes(module) > config.external_data_bytes
            before = set(tmp.iterdir())
            program.save(tmp / f"part_{key}.onnx", external_data=external)
            written = sorted(p.name for p in set(tmp.iterdir()) - before if p.name != f"part_{key}.onnx")
            parts[key] = {
                "file": f"part_{key}.onnx",
                "external_data": written,
                "inputs": names[0],
                "outputs": names[1],
            }
        kv_parts = _export_kv(model, config, (part_a, part_b), ids, tmp) if _wants_kv(model, config) else None
        seconds = time.perf_counter() - t0
        tok_files = _save_tokenizer(model, tmp)
        if vectors:
            (tmp / mf.VECTORS).write_text(vectors_json(vectors, config.split + 1))
        if config.copy_web_page:
            _copy_web_page(tmp)
        manifest = _manifest(model, config, max_length, parts, tok_files, vectors, seconds)
        manifest["kv_parts"] = kv_parts
        mf.write_manifest(tmp, manifest)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _wants_kv(model: Any, config: ExportConfig) -> bool:
    from neuroscope.export.onnx_kv import kv_supported

    return config.kv_cache and kv_supported(model)


def _export_kv(
    model: Any, config: ExportConfig, spans: tuple[nn.Module, nn.Module], ids: torch.Tensor, folder: Path
) -> dict[str, Any]:
    """``part_a_kv.onnx`` / ``part_b_kv.onnx``: the same parts with their layers' KV cache in and out."""
    from neuroscope.export.onnx_kv import CachedSpan, export_cached, kv_names

    cached = [CachedSpan(s) for s in spans]
    with torch.no_grad():
        resid = spans[0](ids, torch.ones_like(ids))
    out: dict[str, Any] = {}
    for key, span, first, io in (
        ("a", cached[0], ids, ("input_ids", "resid")),
        ("b", cached[1], resid, ("resid", "logits")),
    ):
        names = kv_names(span, *io)
        program = export_cached(span, first, names, config.opset)
        external = _param_bytes(span) > config.external_data_bytes
        before = set(folder.iterdir())
        program.save(folder / f"part_{key}_kv.onnx", external_data=external)
        written = sorted(p.name for p in set(folder.iterdir()) - before if p.name != f"part_{key}_kv.onnx")
        b, heads, _, head_dim = span.past_shape(1, 1)
        out[key] = {
            "file": f"part_{key}_kv.onnx",
            "external_data": written,
            "inputs": names[0],
            "outputs": names[1],
            "past_shape": ["batch", heads, "past", head_dim],
        }
    out["note"] = (
        "past tensors start with one dummy slot that attention_mask hides (0): the first call passes zeros of "
        "length 1 and a mask [0, 1 x prompt]; later calls pass the returned present_* and the mask extended by "
        "one 1 per new token. New tokens take positions past - 1 onwards."
    )
    return out


def _save_tokenizer(model: Any, folder: Path) -> list[str]:
    tok_dir = folder / "tokenizer"
    model.tokenizer.save_pretrained(tok_dir)
    if not (tok_dir / "tokenizer.json").exists():
        raise InvalidConfigError(
            "The tokenizer has no fast (tokenizer.json) form: the browser cannot load it."
        )
    return sorted(f"tokenizer/{p.name}" for p in tok_dir.iterdir())


def _copy_web_page(folder: Path) -> None:
    from neuroscope.export.web import WEB_DIR, page_files

    for rel in page_files():
        dst = folder / ("index.html" if rel == "web.html" else rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEB_DIR / rel, dst)


def _replace(tmp: Path, out: Path) -> None:
    """Swap the finished folder into place; the earlier export (if any) is removed only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _manifest(
    model: Any,
    config: ExportConfig,
    max_length: int,
    parts: dict[str, dict[str, Any]],
    tok_files: list[str],
    vectors: Any,
    seconds: float,
) -> dict[str, Any]:
    import onnx
    import transformers

    c, k = model.cfg, config.split
    tied = tied_embeddings(model)
    tok = model.tokenizer
    return {
        "format": mf.FORMAT,
        "version": mf.VERSION,
        "model": c.name,
        "model_type": c.model_type,
        "n_layers": c.n_layers,
        "d_model": c.d_model,
        "d_vocab": c.d_vocab,
        "split": k,
        "boundary_hook": f"blocks.{k + 1}.hook_resid_pre",
        "boundary_hook_alias": f"blocks.{k}.hook_resid_post",
        "max_length": max_length,
        "dtype": "float32",
        "opset": config.opset,
        "padding": "right (position ids are 0..n-1; padded positions are masked as keys)",
        "parts": {
            "a": {
                **parts["a"],
                "blocks": [0, k],
                "shapes": {
                    "input_ids": ["batch", "sequence"],
                    "attention_mask": ["batch", "sequence"],
                    "resid": ["batch", "sequence", c.d_model],
                },
            },
            "b": {
                **parts["b"],
                "blocks": [k + 1, c.n_layers - 1],
                "shapes": {
                    "resid": ["batch", "sequence", c.d_model],
                    "attention_mask": ["batch", "sequence"],
                    "logits": ["batch", "sequence", c.d_vocab],
                },
            },
        },
        "tied_embeddings": tied,
        "tied_embeddings_note": (
            "the input embedding and the unembedding are one matrix in the model; each part keeps its own copy"
            if tied
            else "untied: part A holds the embedding, part B the unembedding"
        ),
        "tokenizer": {
            "files": tok_files,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        "vectors": [v.describe(k + 1) for v in vectors],
        "export_seconds": round(seconds, 2),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "transformers": transformers.__version__,
        },
    }


def require_export(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / mf.MANIFEST).exists():
        raise ResourceNotFoundError(
            f"{folder} holds no ONNX export ({mf.MANIFEST} missing): run `neuroscope export-onnx --out {folder}`."
        )
    return folder
