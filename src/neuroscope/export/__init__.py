"""Export to ONNX in two parts split at a layer (a steering vector goes between them), and its validation."""

from __future__ import annotations

from typing import Any

__all__ = ["ExportConfig", "SplitRunner", "TESTED_ARCHITECTURES", "export_split", "validate_export"]


def __getattr__(name: str) -> Any:
    # lazy: importing the package must not pull in onnx / onnxruntime / torch.onnx
    if name in ("ExportConfig", "TESTED_ARCHITECTURES", "export_split"):
        from neuroscope.export import onnx_split

        return getattr(onnx_split, name)
    if name == "SplitRunner":
        from neuroscope.export.runtime import SplitRunner

        return SplitRunner
    if name == "validate_export":
        from neuroscope.export.validate import validate_export

        return validate_export
    raise AttributeError(name)
