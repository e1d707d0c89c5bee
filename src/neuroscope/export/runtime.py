"""Run an ONNX split export with onnxruntime (CPU): part A, an optional vector, part B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuroscope.errors import EmptyPromptError, ExportedLengthError, ShapeMismatchError
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
        resid = self.boundary(ids, mask)
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            if v.shape != (self.d_model,):
                raise ShapeMismatchError("steering vector", (self.d_model,), tuple(v.shape))
            resid = resid + np.float32(alpha) * v
        return self.head(resid, mask), resid

    def generate(self, prompt: str, max_new_tokens: int = 20, vector: Any = None, alpha: float = 1.0) -> str:
        """Greedy continuation (new text only): the page's generation loop, in Python."""
        ids = self.encode(prompt)[0].tolist()
        eos = self.manifest["tokenizer"].get("eos_token_id")
        new: list[int] = []
        for _ in range(max_new_tokens):
            if len(ids) >= self.max_length:
                break
            logits, _ = self.logits(np.asarray([ids]), vector=vector, alpha=alpha)
            nxt = int(logits[0, -1].argmax())
            if nxt == eos:
                break
            ids.append(nxt)
            new.append(nxt)
        return str(self.tokenizer.decode(new, skip_special_tokens=True))
