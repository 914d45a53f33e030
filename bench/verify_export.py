#!/usr/bin/env python3
# Usage: mor export --model GOLD --out EXP --dtype bfloat16 --max-shard-size 100KB; bench/verify_export.py GOLD EXP
# GOLD: a folder with one F32 model.safetensors (e.g. ../shared/data/golden/tiny-llama); EXP: its sharded BF16 export.
# Independent check of an exported folder with Python's standard library only: parse the index and every shard per the
# safetensors spec, decode BF16, and compare with the golden F32 weights rounded to BF16 (round to nearest even).
import json, struct, sys, os
gold, exp = sys.argv[1], sys.argv[2]
def read(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); return h, b[8+n:]
gh, gd = read(os.path.join(gold, 'model.safetensors'))
idx = json.load(open(os.path.join(exp, 'model.safetensors.index.json')))
shards = {s: read(os.path.join(exp, s)) for s in set(idx['weight_map'].values())}
def bf16_of_f32(u):  # round-to-nearest-even f32 bits -> bf16 bits
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
names = [k for k in gh if k != '__metadata__']
assert sorted(names) == sorted(idx['weight_map']), 'tensor names differ'
total = 0
for k in names:
    h, d = shards[idx['weight_map'][k]]
    e = h[k]; g = gh[k]
    assert e['dtype'] == 'BF16' and e['shape'] == g['shape'], k
    b0, b1 = e['data_offsets']; gb0, gb1 = g['data_offsets']
    n = (gb1 - gb0) // 4
    assert b1 - b0 == 2 * n, k
    f = struct.unpack(f'<{n}I', gd[gb0:gb1]); x = struct.unpack(f'<{n}H', d[b0:b1])
    assert all(bf16_of_f32(a) == c for a, c in zip(f, x)), k
    total += b1 - b0
assert idx['metadata']['total_size'] == total
cfg = json.load(open(os.path.join(exp, 'config.json'))); gcfg = json.load(open(os.path.join(gold, 'config.json')))
assert set(cfg) == set(gcfg) and all(cfg[k] == gcfg[k] for k in gcfg if k != 'torch_dtype') and cfg['torch_dtype'] == 'bfloat16', 'config differs'
print(f'OK: {len(names)} tensors in {len(shards)} shards, total_size {total}, all BF16 values = golden F32 rounded to nearest even; config.json keys and values equal to the golden folder (torch_dtype bfloat16)')
