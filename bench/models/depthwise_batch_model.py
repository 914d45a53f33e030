#!/usr/bin/env python3
"""Cost model of continuous depth-wise batching at a fixed batch (docs/benchmarks.md, "Session 7" and "Session 8").

Not a measurement: it replays the BatchingEngine's step policy (a shared-block call over every token in a recursion,
or the exit + enter stage once exited tokens are at least ExitBatchFraction of the rows) for MoR-3 (1 + 10·3 + 1 layers)
against a 32-layer vanilla model, on the 135M shape (`small`, default) or the 360M shape the paper measured (`medium`),
with every row always busy, exit depths uniform over 1..3 (the bench's default), and a product's time modelled as
weight bytes / memory speed + rows · arithmetic per row,  which is how `SmallGemm` behaves here: with weights out of
cache a product takes a fixed extra time per weight byte (26–38 GB/s) at 8 and at 32 rows, on top of its in-cache time,
which grows by about 16–18 µs per row for [m, 576] × [576, 1536] (`MoRSharp.Bench decode-floor`, third table;
docs/benchmarks.md "Session 7").

    python3 bench/models/depthwise_batch_model.py [GB/s] [GFLOP/s] [small|medium]   (defaults 30, 100: this machine, 2 threads)
"""
import math
import random
import sys

GBS = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0        # extra time per weight byte out of cache, as GB/s (decode-floor: 26–38; plain reads 17–21)
GFLOPS = float(sys.argv[2]) if len(sys.argv) > 2 else 100.0    # kernel arithmetic, GFLOP/s (in-cache products at 24–64 rows)
SHAPE = sys.argv[3] if len(sys.argv) > 3 else "small"
# per shape: parameters (= multiply-adds per row) of one decoder layer's projections, and the hidden size of the tied
# 49152-row head; rows MoR-3 fits in the memory vanilla needs at batch 32 (float32, bfloat16 weights), as
# `mor bench generate --max-batch-at 32` found them (small: --tokens 64; medium: --tokens 128)
LAYER, D, MAX_ROWS = {
    "small": (3.54e6, 576, (162, 104)),     # q, o 576²; k, v 576·192; gate, up, down 576·1536
    "medium": (9.83e6, 960, (99, 73)),      # q, o 960²; k, v 960·320; gate, up, down 960·2560
}[SHAPE]
HEAD = 49152 * D        # tied LM head


def call_ms(params, rows, bytes_per_weight):
    """One product over `rows` rows: stream the weights once, then 2·params flops per row."""
    return params * bytes_per_weight / (GBS * 1e6) + rows * 2 * params / (GFLOPS * 1e6)


def vanilla(batch, bpw):
    step = 32 * call_ms(LAYER, batch, bpw) + call_ms(HEAD, batch, bpw)
    return batch / step                                          # tokens per ms


def mor(batch, bpw, fraction, steps=20000, seed=1):
    rng = random.Random(seed)
    remaining = [rng.randint(1, 3) for _ in range(batch)]
    waiting = [False] * batch
    ms, tokens, block_rows, block_calls = 0.0, 0, 0, 0
    for _ in range(steps):
        w = sum(waiting)
        if batch - w > 0 and w < max(1, math.ceil(fraction * batch)):
            m = batch - w                                        # one call of the shared block (10 layers)
            ms += 10 * call_ms(LAYER, m, bpw)
            block_rows, block_calls = block_rows + m, block_calls + 1
            for i in range(batch):
                if not waiting[i]:
                    remaining[i] -= 1
                    waiting[i] = remaining[i] == 0
        else:                                                    # exit (last layer, head) + enter (first layer)
            ms += 2 * call_ms(LAYER, w, bpw) + call_ms(HEAD, w, bpw)
            tokens += w
            for i in range(batch):
                if waiting[i]:
                    waiting[i], remaining[i] = False, rng.randint(1, 3)
    return tokens / ms, block_rows / block_calls


# rows that fit the memory vanilla needs at batch 32 (parameters + KV cache; `mor bench generate --max-batch-at 32`)
for name, bpw, max_rows in (("float32", 4, MAX_ROWS[0]), ("bfloat16", 2, MAX_ROWS[1])):
    base = vanilla(32, bpw)
    print(f"{SHAPE} shape, {name} weights, {GBS:g} GB/s, {GFLOPS:g} GFLOP/s: vanilla-32L at batch 32 {base * 1000:.0f} tokens/s")
    for fraction in (0.0, 0.5, 0.75, 1.0):
        tps, block = mor(32, bpw, fraction)
        print(f"  MoR-3 at batch 32, ExitBatchFraction {fraction:<4}: {tps / base:.3f}x vanilla (block batch {block:.1f})")
    tps, block = mor(max_rows, bpw, 0.75)
    print(f"  MoR-3 at batch {max_rows} (the memory vanilla needs at 32): {tps / base:.3f}x (block batch {block:.1f})")
