#!/usr/bin/env bash
# First science check (training issue): vanilla vs recursive vs MoR expert-choice vs MoR token-choice (micro shapes,
# Middle-Cycle N_r = 3 for the recursive ones) trained at the SAME paper-FLOPs budget on Brown + TinyStories (GPT-2
# tokenizer), then scored on WikiText-2 valid and TinyStories valid with the causal routing rule.
# Usage: bench/isoflop.sh [FLOPS] [OUT]      (defaults 2e12 and runs/isoflop); each run is a separate process.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOPS=${1:-2e12}
OUT=${2:-runs/isoflop}
SHARED=${MORSHARP_SHARED_DATA:-../shared/data}
THREADS=${THREADS:-2}
dotnet build -c Release src/MoRSharp.Cli -v q -nologo >/dev/null
mor() { dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll "$@"; }
mkdir -p "$OUT"
[ -f "$OUT/data/train.bin" ] || mor data prepare --input "$SHARED/brown/brown.txt" --input "$SHARED/tinystories/train_subset.txt" \
  --out "$OUT/data" --tokenizer gpt2 --val-fraction 0.02 --seed 0
for m in vanilla recursive mor-expert mor-token; do
  if [ ! -f "$OUT/$m/model.safetensors" ]; then
    /usr/bin/time -f "peak_rss_kb %M" -o "$OUT/$m.time" \
      dotnet src/MoRSharp.Cli/bin/Release/net10.0/mor.dll train --preset "micro-$m" --data "$OUT/data" --out "$OUT/$m" \
      --flops "$FLOPS" --batch 8 --seq 128 --eval-every 0 --eval-batches 16 --threads "$THREADS" --seed 0 > "$OUT/$m.log" 2>&1
  fi
  mor info --preset "micro-$m" --context 128 --json > "$OUT/$m.info.json"
  for v in wikitext-2/valid.txt tinystories/valid_subset.txt; do
    name=$(echo "$v" | tr '/' '_')
    # the first EVAL_BYTES bytes of each validation file (whole lines), so that scoring stays a few minutes on 2 cores
    [ -f "$OUT/eval-$name" ] || head -c "${EVAL_BYTES:-200000}" "$SHARED/$v" | sed '$d' > "$OUT/eval-$name"
    [ -f "$OUT/$m.$name.json" ] || mor eval --model "$OUT/$m" --text "$OUT/eval-$name" --seq 128 --json --threads "$THREADS" > "$OUT/$m.$name.json" 2>/dev/null
  done
done
python3 - "$OUT" <<'PY' 2>/dev/null || echo "(python3 not available: see $OUT/*.json, *.log, *.time)"
import json, sys, os
out = sys.argv[1]
print("| model | unique params | paper FLOPs/token | steps | tokens seen | wall | tokens/s | peak RSS | train-split val NLL | WikiText-2 NLL (bits/byte) | TinyStories NLL (bits/byte) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in ["vanilla", "recursive", "mor-expert", "mor-token"]:
    lines = [json.loads(l) for l in open(f"{out}/{m}/metrics.jsonl") if l.strip()]
    last = lines[-1]
    rss = int(open(f"{out}/{m}.time").read().split()[-1]) / 1024
    info = json.load(open(f"{out}/{m}.info.json"))
    params = f"{info['parameters']['total']/1e6:.2f}M"
    flops = f"{info['flops_per_token']['paper']/1e6:.2f}M"
    ev = {v: json.load(open(f"{out}/{m}.{v}.json")) for v in ["wikitext-2_valid.txt", "tinystories_valid_subset.txt"]}
    w, t = ev["wikitext-2_valid.txt"], ev["tinystories_valid_subset.txt"]
    print(f"| {m} | {params} | {flops} | {last['step']} | {last['tokens']:,} | {last['elapsed_s']/60:.1f} min | {last['tokens']/last['elapsed_s']:,.0f} | {rss:,.0f} MiB | {last.get('val_loss', float('nan')):.4f} | {w['nll_per_token']:.4f} ({w['bits_per_byte']:.3f}) | {t['nll_per_token']:.4f} ({t['bits_per_byte']:.3f}) |")
PY
