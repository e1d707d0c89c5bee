#!/usr/bin/env bash
# Environments of their own for the peers that benchmarks/transcoders_peers.py compares with; they live
# OUTSIDE the repo because their pins conflict with ours (circuit-tracer 0.5 pins transformers<=4.57.3).
#   bash benchmarks/peers/make_envs.sh            # both
#   bash benchmarks/peers/make_envs.sh ct         # circuit-tracer only
#   bash benchmarks/peers/make_envs.sh sparsify   # eai-sparsify only
# VENVS (default /work/venvs) picks the parent folder; TORCH_INDEX_URL as in the Makefile (empty: pip's own
# configuration). torch is installed first and pinned to the project's version so both peers run on the
# same torch build as NeuroScope (a fair timing comparison).
set -euo pipefail
VENVS=${VENVS:-/work/venvs}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
TORCH_VERSION=2.13.0
which=${1:-all}

make_env() {  # make_env NAME PIP-ARGS...
  local dir="$VENVS/$1"; shift
  test -x "$dir/bin/python" || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install -q --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
  # torch pinned again so the peer's requirements cannot swap the build
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION" "$@"
  "$dir/bin/python" -m pip freeze > "$dir/freeze.txt"
}

mkdir -p "$VENVS"
# circuit-tracer 0.5.0 asks nnsight>=0.6.0 but imports nnsight.intervention.tracing.tracer, gone in nnsight 0.8
if [ "$which" = all ] || [ "$which" = ct ]; then make_env ct 'circuit-tracer==0.5.*' 'nnsight==0.6.*'; fi
if [ "$which" = all ] || [ "$which" = sparsify ]; then make_env sparsify 'eai-sparsify'; fi
