"""A model load prints nothing but what the user asked for: no notice from the quantization back ends that
transformers and peft import on every load, and no reach for a hub kernel (neuroscope.models.quiet). Run as a
user runs it: the installed `neuroscope` script, without the offline variables the test session sets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "neuroscope"
# transformers' progress bar over the checkpoint's tensors (from_pretrained, which a quantized load goes through)
PROGRESS = re.compile(r"^Loading weights: +\d+%\|")


def _info(*extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["OMP_NUM_THREADS"] = "1"
    p = subprocess.run(
        [str(CLI), "info", "smollm2-135m", "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_a_plain_load_prints_nothing_on_stderr():
    p = _info()
    assert p.stderr == ""
    info = json.loads(p.stdout)
    assert info["n_layers"] == 30 and info["quantization"] is None


def test_an_int8_load_shows_its_progress_and_no_warning():
    """bitsandbytes is imported here (its CPU backend asks for a hub kernel on import): nothing but the
    weight-loading progress bar reaches stderr."""
    p = _info("--quantize", "int8")
    segments = [s for s in re.split(r"[\r\n]", p.stderr) if s.strip()]
    assert all(PROGRESS.match(s) for s in segments), p.stderr[-3000:]
    info = json.loads(p.stdout)
    assert info["quantization"]["mode"] == "int8" and info["quantization"]["quantized_modules"] > 0
