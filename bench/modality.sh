#!/usr/bin/env bash
# Modality study (issue 8): vanilla vs recursive vs MoR expert-choice (N_r = 3) encoders on MNIST (patch tokens) and FSDD
# (log-mel frame tokens), each task at ONE training budget in forward FLOPs per example × training examples (the encoders'
# exact count, bidirectional attention, front end and head included — EncoderAccounting). MoR's cheaper examples buy it
# more of them. Shapes: the tiny presets (d 64, 2 heads, 1 KV head, FFN 128; vanilla 5 layers, recursive and MoR
# Middle-Cycle 1 + 1·3 + 1), default encoders (MNIST 4×4 patches = 49 tokens, FSDD 64 log-mel frames of 40 bins).
# Runs two processes at a time with one torch thread each (lanes A and B), then scores every model with mor eval and writes
# depth maps for the MoR models.
# Usage: bench/modality.sh [OUT]     env: MNIST_FLOPS (default 1e12), FSDD_FLOPS (default 5e11), SEED (default 0)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/modality}
SHARED=${MORSHARP_SHARED_DATA:-../shared/data}
MNIST_FLOPS=${MNIST_FLOPS:-1e12}
FSDD_FLOPS=${FSDD_FLOPS:-5e11}
SEED=${SEED:-0}
dotnet build -c Release src/MoRSharp.Cli -v q -nologo >/dev/null
mor() { dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll "$@"; }
mkdir -p "$OUT"

run() {   # task data flops model
  local task=$1 data=$2 flops=$3 m=$4 dir="$OUT/$1-$4"
  if [ ! -f "$dir/model.safetensors" ]; then
    mor train --task "$task" --data "$data" --out "$dir" --preset "tiny-$m" --flops "$flops" --batch 64 --lr 1e-2 \
      --eval-every 0 --checkpoint-every 0 --seed "$SEED" --threads 1 > "$dir.log" 2>&1
  fi
  local maps=()
  [ "$m" = mor-expert ] && maps=(--depth-map "$dir/maps")
  mor eval --task "$task" --model "$dir" --json --threads 1 "${maps[@]}" > "$dir.eval.json" 2>/dev/null
}

start=$(date +%s)
( run image-classification "$SHARED/image/mnist" "$MNIST_FLOPS" vanilla
  run image-classification "$SHARED/image/mnist" "$MNIST_FLOPS" mor-expert ) &
( run image-classification "$SHARED/image/mnist" "$MNIST_FLOPS" recursive
  for m in vanilla recursive mor-expert; do run audio-classification "$SHARED/audio/fsdd" "$FSDD_FLOPS" "$m"; done ) &
wait
echo "study wall time: $(( $(date +%s) - start )) s"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| task | model | unique params | FLOPs/example | training examples (steps) | budget used | wall | examples/s | held-out accuracy | mean depth |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for task, split in [("image-classification", "MNIST validation (2,000)"), ("audio-classification", "FSDD test (300)")]:
    for m in ["vanilla", "recursive", "mor-expert"]:
        d = f"{out}/{task}-{m}"
        last = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if l.strip()][-1]
        ev = json.load(open(f"{d}.eval.json"))
        fl = ev["flops_per_example"]
        depth = f"{ev['mean_depth']:.2f}" if "mean_depth" in ev else "–"
        print(f"| {task.split('-')[0]} | {m} | {ev['unique_params']/1e3:.1f}K | {fl/1e6:.2f}M | {last['examples']:,} ({last['step']}) | "
              f"{fl*last['examples']:.3g} | {last['elapsed_s']/60:.1f} min | {last['examples']/last['elapsed_s']:.0f} | "
              f"{100*ev['accuracy']:.2f}% | {depth} |")
PY
