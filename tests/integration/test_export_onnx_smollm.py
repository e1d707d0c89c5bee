"""smollm2-135m split after block 15 exports to ONNX and validates against PyTorch (onnxruntime CPU)."""

from __future__ import annotations

import pytest

from neuroscope.export import manifest as mf
from neuroscope.export.runtime import SplitRunner
from neuroscope.export.validate import validate_export

pytestmark = pytest.mark.integration


def test_smollm2_split_15_validates(smollm, smollm_onnx):
    report = validate_export(smollm, smollm_onnx)
    assert report.passed, report.summary()
    assert len(report.prompts) >= 20
    assert [p.tokens for p in report.prompts][0] == 1 and report.prompts[-1].tokens == 512
    assert report.max_logit_diff <= 1e-3
    assert report.greedy_agreement == 1.0
    assert report.boundary_excess <= 1e-4  # allclose(atol 1e-4, rtol 1e-5): see validate.BOUNDARY_RTOL
    assert report.zero_vector_max_diff <= 1e-3 and report.batch_max_diff <= 1e-3
    # the exported sentiment vector between the parts == Steer(16, v, alpha) in PyTorch, and it matters
    assert report.steer_vector == "sentiment" and report.steer_max_diff <= 1e-3 and report.steer_effect > 1.0
    man = mf.read_manifest(smollm_onnx)
    assert man["validation"]["passed"] and man["validation"]["max_logit_diff"] == report.max_logit_diff
    assert man["boundary_hook"] == "blocks.16.hook_resid_pre" and man["max_length"] == 512
    assert man["tied_embeddings"] is True  # SmolLM2 ties them: each part carries its own copy
    sizes = {k: v["bytes"] for k, v in man["files"].items() if k.endswith(".onnx")}
    assert sizes["part_a.onnx"] > 300 * 2**20 and sizes["part_b.onnx"] > 250 * 2**20
    assert "index.html" in man["files"] and any(f.startswith("ort/") for f in man["files"])


def test_smollm2_runner_generates_like_pytorch(smollm, smollm_onnx):
    from neuroscope.export.vectors import read_export_vectors
    from neuroscope.interventions import Steer

    runner = SplitRunner(smollm_onnx, verify=False)
    v = read_export_vectors(smollm_onnx)["sentiment"]
    prompt = "I think the movie was"
    assert runner.generate(prompt, 8) == smollm.generate(prompt, 8)
    steered = runner.generate(prompt, 8, vector=v.numpy(), alpha=4.0)
    assert steered == smollm.generate(prompt, 8, interventions=[Steer(16, v, alpha=4.0)])
