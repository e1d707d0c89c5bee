#!/usr/bin/env bash
# The GPU check: a ~1B model in bf16, int8 and nf4 on one CUDA device → benchmarks/results/device.json
# (load time and GPU memory, hook overhead vs the plain forward, recording tokens/s and peak memory, residual
# cosine to bf16). Unattended, at most 8 minutes (the whole run is under `timeout`).
#
#   benchmarks/device/run.sh /path/to/model-folder        # or NEUROSCOPE_DEVICE_MODEL=/path/to/model-folder
#
# The model: a local Hugging Face folder (config.json + safetensors) of a supported architecture, ~1B
# parameters (TinyLlama-1.1B, Llama-3.2-1B, Qwen2.5-1.5B, …), or a hub id already in the local cache;
# nothing is downloaded. PYTHON: an interpreter with neuroscope and a CUDA build of torch (default: the
# project's .venv, whose `make setup` torch is the CPU build on CPU-only machines). Exits 2, saying why,
# when there is no GPU or no model.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL="${1:-${NEUROSCOPE_DEVICE_MODEL:-}}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
LIMIT="${DEVICE_BENCH_TIMEOUT:-480}"

if [ -z "$MODEL" ]; then
  echo "benchmarks/device/run.sh: give the model: run.sh /path/to/hf-folder (or NEUROSCOPE_DEVICE_MODEL)" >&2
  exit 2
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "benchmarks/device/run.sh: no NVIDIA GPU here (nvidia-smi finds none); this check needs one" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout --signal=TERM --kill-after=15 "$LIMIT" "$PY" -m benchmarks.device.bench --model "$MODEL" "${@:2}"
