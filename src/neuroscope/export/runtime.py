"""Run an ONNX split export with onnxruntime (CPU): part A, an optional vector, part B."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuroscope.errors import (
    EmptyPromptError,
    ExportedLengthError,
    ResourceNotFoundError,
    ShapeMismatchError,
)
from neuroscope.export import manifest as mf


class SplitRunner:
    """Both parts loaded after their files pass the manifest's hash check (``verify=False`` skips it)."""

    def __init__(self, folder: str | Path, verify: bool = True, threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = mf.read_manifest(self.folder)
        if verify:
            mf.verify_files(self.folder, self.manifest, mf.model_files(self.manifest))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.sessions = {
            key: ort.InferenceSession(
                str(self.folder / part["file"]), opts, providers=["CPUExecutionProvider"]
            )
            for key, part in self.manifest["parts"].items()
        }
        kv = self.manifest.get("kv_parts") or {}
        self.kv_sessions = {
            key: ort.InferenceSession(
                str(self.folder / kv[key]["file"]), opts, providers=["CPUExecutionProvider"]
            )
            for key in ("a", "b")
            if key in kv
        }
        self.max_length = int(self.manifest["max_length"])
        self.d_model = int(self.manifest["d_model"])
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The exported ``tokenizer.json`` (the file the browser page reads too)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer" / "tokenizer.json"))
        return self._tokenizer

    def encode(self, prompt: str) -> np.ndarray:
        if not prompt:
            raise EmptyPromptError()
        return np.asarray([self.tokenizer.encode(prompt).ids], dtype=np.int64)

    def _inputs(self, ids: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.shape[-1] == 0:
            raise EmptyPromptError()
        if ids.shape[-1] > self.max_length:
            raise ExportedLengthError(int(ids.shape[-1]), self.max_length)
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, dtype=np.int64)
        return ids, mask

    def boundary(self, ids: Any, mask: Any = None) -> np.ndarray:
        """Part A: the residual stream at the manifest's ``boundary_hook``, ``[batch, pos, d_model]``."""
        ids, mask = self._inputs(ids, mask)
        return self.sessions["a"].run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def head(self, resid: np.ndarray, mask: Any = None) -> np.ndarray:
        """Part B: logits from a boundary residual."""
        resid = np.ascontiguousarray(resid, dtype=np.float32)
        mask = np.ones(resid.shape[:2], dtype=np.int64) if mask is None else np.asarray(mask, dtype=np.int64)
        return self.sessions["b"].run(None, {"resid": resid, "attention_mask": mask})[0]

    def logits(
        self, ids: Any, mask: Any = None, vector: Any = None, alpha: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the (steered) boundary residual; ``alpha * vector`` is added at every position."""
        ids, mask = self._inputs(ids, mask)
        resid = self._steer(self.boundary(ids, mask), vector, alpha)
        return self.head(resid, mask), resid

    def _steer(self, resid: np.ndarray, vector: Any, alpha: float) -> np.ndarray:
        if vector is None:
            return resid
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.d_model,):
            raise ShapeMismatchError("steering vector", (self.d_model,), tuple(v.shape))
        return resid + np.float32(alpha) * v

    @property
    def has_kv(self) -> bool:
        return set(self.kv_sessions) == {"a", "b"}

    def start_cache(self, batch: int = 1) -> KVState:
        """The empty cache: one masked dummy slot per layer (see ``onnx_kv``)."""
        if not self.has_kv:
            raise ResourceNotFoundError(
                f"{self.folder} has no KV-cached parts (an older export or an architecture without them): "
                "re-export with `neuroscope export-onnx`."
            )
        past = {}
        for key in ("a", "b"):
            part = self.manifest["kv_parts"][key]
            _, heads, _, head_dim = part["past_shape"]
            for name in part["inputs"][2:]:
                past[key, name] = np.zeros((batch, heads, 1, head_dim), dtype=np.float32)
        return KVState(past=past, mask=np.zeros((batch, 1), dtype=np.int64))

    def step(
        self, ids: Any, state: KVState, vector: Any = None, alpha: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, KVState]:
        """The cached forward of ``ids`` (new tokens only) after ``state``: logits, steered boundary residual
        of the new positions, and the extended state (the returned present tensors, reused as they are)."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[None] if ids.ndim == 1 else ids
        if ids.shape[-1] == 0:
            raise EmptyPromptError()
        if state.length + ids.shape[-1] > self.max_length:
            raise ExportedLengthError(state.length + int(ids.shape[-1]), self.max_length)
        mask = np.concatenate([state.mask, np.ones_like(ids)], axis=1)
        past: dict[tuple[str, str], np.ndarray] = {}
        x: np.ndarray = ids
        for key in ("a", "b"):
            part = self.manifest["kv_parts"][key]
            feeds = {part["inputs"][0]: x, "attention_mask": mask}
            feeds.update({name: state.past[key, name] for name in part["inputs"][2:]})
            outs = self.kv_sessions[key].run(None, feeds)
            for name, value in zip(part["inputs"][2:], outs[1:], strict=True):
                past[key, name] = value
            x = self._steer(outs[0], vector, alpha) if key == "a" else outs[0]
            if key == "a":
                resid = x
        return x, resid, KVState(past=past, mask=mask)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 20,
        vector: Any = None,
        alpha: float = 1.0,
        cache: bool = True,
    ) -> str:
        """Greedy continuation (new text only): the page's generation loop, in Python."""
        ids = self.encode(prompt)[0].tolist()
        new = self.generate_ids(ids, max_new_tokens, vector, alpha, cache=cache)
        return str(self.tokenizer.decode(new, skip_special_tokens=True))

    def generate_ids(
        self, ids: list[int], max_new_tokens: int, vector: Any = None, alpha: float = 1.0, cache: bool = True
    ) -> list[int]:
        """Greedy new token ids: with the KV-cached parts (one position per step) when the export has them,
        else the whole sequence each step."""
        ids = list(ids)
        eos = self.manifest["tokenizer"].get("eos_token_id")
        use_kv = cache and self.has_kv
        state = self.start_cache() if use_kv else None
        feed = ids
        new: list[int] = []
        for _ in range(max_new_tokens):
            if len(ids) >= self.max_length:
                break
            if state is not None:
                logits, _, state = self.step(np.asarray([feed]), state, vector, alpha)
            else:
                logits, _ = self.logits(np.asarray([ids]), vector=vector, alpha=alpha)
            nxt = int(logits[0, -1].argmax())
            if nxt == eos:
                break
            ids.append(nxt)
            new.append(nxt)
            feed = [nxt]
        return new


@dataclass(frozen=True)
class KVState:
    """Past keys/values per (part, input name) and the mask over their slots (slot 0: the masked dummy)."""

    past: dict[tuple[str, str], np.ndarray]
    mask: np.ndarray

    @property
    def length(self) -> int:
        """Real tokens held (the dummy slot excluded)."""
        return int(self.mask.shape[1]) - 1
