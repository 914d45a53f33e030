#!/usr/bin/env bash
# Uptraining study (interop issue; an analogue of the paper's Table 12, spec §7): pretrain a vanilla micro model (8 layers)
# on Brown + TinyStories, convert it to MoR expert-choice N_r = 3 (Middle-Cycle, 1 + 2·3 + 1) with each init method, uptrain
# each for the same number of steps, and compare with the same MoR trained from scratch for those steps. Byte-level
# tokens (vocabulary 257) so that the LM head does not dominate the compute of these small models.
# Usage: bench/uptrain.sh [OUT]          (default runs/uptrain). Budgets: PRE_STEPS, UP_STEPS; JOBS runs in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/uptrain}
SHARED=${MORSHARP_SHARED_DATA:-../shared/data}
THREADS=${THREADS:-1}
JOBS=${JOBS:-2}
PRE_STEPS=${PRE_STEPS:-150}
UP_STEPS=${UP_STEPS:-60}
EVAL_BYTES=${EVAL_BYTES:-20000}
COMMON="--batch 8 --seq 128 --lr 3e-3 --eval-every 0 --eval-batches 16 --checkpoint-every 0 --threads $THREADS --seed 0"
dotnet build -c Release src/MoRSharp.Cli -v q -nologo >/dev/null
mor() { dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll "$@"; }
mkdir -p "$OUT"
start=$(date +%s)

# 1. data: the first science check's corpora, byte tokens
[ -f "$OUT/data/train.bin" ] || mor data prepare --input "$SHARED/brown/brown.txt" --input "$SHARED/tinystories/train_subset.txt" \
  --out "$OUT/data" --tokenizer bytes --val-fraction 0.02 --seed 0

# 2. pretrain the vanilla base
[ -f "$OUT/base/model.safetensors" ] || /usr/bin/time -f "%e" -o "$OUT/base.time" \
  dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll train --preset micro-vanilla --data "$OUT/data" --out "$OUT/base" \
  --steps "$PRE_STEPS" $COMMON > "$OUT/base.log" 2>&1

# 3. convert with every init method (seconds)
for init in stepwise average lower upper random; do
  [ -f "$OUT/conv-$init/model.safetensors" ] || mor convert --from "$OUT/base" --to "$OUT/conv-$init" --sharing middle_cycle \
    --recursions 3 --routing expert --init "$init" --seed 0 > "$OUT/conv-$init.log"
done

# 4. uptrain each conversion and train the same MoR from scratch, UP_STEPS each, JOBS at a time
run() {
  local name=$1; shift
  [ -f "$OUT/$name/model.safetensors" ] && return 0
  /usr/bin/time -f "%e" -o "$OUT/$name.time" dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll "$@" --data "$OUT/data" \
    --out "$OUT/$name" --steps "$UP_STEPS" $COMMON > "$OUT/$name.log" 2>&1
}
jobs_list=()
for init in stepwise average lower upper random; do jobs_list+=("up-$init uptrain --from $OUT/conv-$init"); done
jobs_list+=("scratch train --preset micro-mor-expert")
for job in "${jobs_list[@]}"; do
  # shellcheck disable=SC2086
  run $job &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
done
wait

# 5. score: held-out split (from training), WikiText-2 and TinyStories valid (first EVAL_BYTES bytes, whole lines), causal routing
for v in wikitext-2/valid.txt tinystories/valid_subset.txt; do
  name=$(echo "$v" | tr '/' '_')
  [ -f "$OUT/eval-$name" ] || head -c "$EVAL_BYTES" "$SHARED/$v" | sed '$d' > "$OUT/eval-$name"
done
for m in base up-stepwise up-average up-lower up-upper up-random scratch conv-stepwise conv-average conv-lower conv-upper conv-random; do
  for name in wikitext-2_valid.txt tinystories_valid_subset.txt; do
    if [ ! -s "$OUT/$m.$name.json" ]; then
      mor eval --model "$OUT/$m" --text "$OUT/eval-$name" --seq 128 --json --threads "$THREADS" > "$OUT/$m.$name.json" 2>/dev/null &
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
    fi
  done
done
wait
echo "total wall: $(( $(date +%s) - start )) s" | tee "$OUT/wall.txt"

python3 - "$OUT" <<'PY' 2>/dev/null || echo "(python3 not available: see $OUT/*.json, *.log)"
import json, sys
out = sys.argv[1]
def ev(m, v):
    r = json.load(open(f"{out}/{m}.{v}.json")); return f"{r['nll_per_token']:.4f} ({r['bits_per_byte']:.3f})"
def last(m):
    return [json.loads(l) for l in open(f"{out}/{m}/metrics.jsonl") if l.strip()][-1]
print("| model | init | steps | held-out NLL/byte | WikiText-2 NLL/byte (bits/byte) | TinyStories NLL/byte (bits/byte) | wall |")
print("|---|---|---:|---:|---:|---:|---:|")
rows = [("vanilla base (8 layers)", "—", "base")] + [("MoR N_r=3, converted, before uptraining", i, f"conv-{i}") for i in ["stepwise", "average", "lower", "upper", "random"]] \
     + [("MoR N_r=3, uptrained", i, f"up-{i}") for i in ["stepwise", "average", "lower", "upper", "random"]] + [("MoR N_r=3, from scratch", "random weights", "scratch")]
for label, init, m in rows:
    try:
        l = last(m); steps, held, wall = l["step"], f"{l.get('val_loss', float('nan')):.4f}", f"{float(open(f'{out}/{m}.time').read().split()[-1])/60:.1f} min"
    except FileNotFoundError:
        steps, held, wall = 0, "–", "–"
    print(f"| {label} | {init} | {steps} | {held} | {ev(m, 'wikitext-2_valid.txt')} | {ev(m, 'tinystories_valid_subset.txt')} | {wall} |")
PY
