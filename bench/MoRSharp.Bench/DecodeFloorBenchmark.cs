using System.Diagnostics;
using System.Runtime.Intrinsics;
using MoRSharp.Kernels;
using MoRSharp.Native;
using static TorchSharp.torch;

namespace MoRSharp.Bench;

/// <summary>
/// The floor under single-stream decoding on this machine: (1) how fast memory can be read (a vectorised sum over arrays
/// from cache-sized to far larger than the cache, split over the threads), and (2) one micro-shape token's products alone
/// (d 256, 8 layers of q/k/v, o, gate/up and down with their norms and residual adds, then the 49152 × 256 head, through
/// the same <see cref="SmallGemm"/> calls the model makes, inside a held team; no attention, no engine), with float32 and
/// with bfloat16 weights alternating within each round. A model that does everything else for free decodes no faster
/// than (2). (3) What one product costs: [m, 576] × [576, n] with the weight in cache against weights cycled through 212 MB
/// (the extra time is the weight stream that the arithmetic does not hide; the cost model in bench/models/depthwise_batch_model.py rests on it), and
/// the in-cache product on one thread against all of them.
/// </summary>
public static class DecodeFloorBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        int rounds = opt.Int("rounds", 5), threads = opt.Int("threads", 2), tokens = opt.Int("tokens", 200);
        TorchRuntime.Initialize(threads);
        using var _ = no_grad();
        Console.WriteLine($"Decode floor, {threads} threads; {TorchRuntime.Describe()}");
        Console.WriteLine();

        Console.WriteLine("| array read | median GB/s | best GB/s |");
        Console.WriteLine("|---|---:|---:|");
        foreach (int mb in new[] { 8, 16, 32, 64, 256 })
        {
            var data = new float[mb * 1024 * 1024 / 4];
            Array.Fill(data, 1f);
            var gbs = Enumerable.Range(0, 3 + 4 * rounds).Select(_ => mb / 1024.0 / ReadSeconds(data, threads)).Skip(3).Order().ToList();
            Console.WriteLine($"| {mb} MB | {gbs[gbs.Count / 2]:F1} | {gbs[^1]:F1} |");
        }
        Console.WriteLine();

        if (!SmallGemm.IsEnabled)
        {
            Console.WriteLine("(decode kernels unavailable here: no AVX2/FMA, or MORSHARP_DECODE_KERNELS=0; no token loop)");
            return 0;
        }
        const int d = 256, ff = 768, layers = 8, vocab = 49152;
        var norm = ones(d);
        Tensor[] Weights(int seed)
        {
            using var gen = new TorchSharp.torch.Generator((ulong)seed);
            Tensor W(int n, int k) => randn(n, k, generator: gen) * 0.05f;
            return [W(d, d), W(d, d), W(d, d), W(d, d), W(ff, d), W(ff, d), W(d, ff)];
        }
        var f32 = Enumerable.Range(0, layers).Select(Weights).ToArray();
        var head32 = randn(vocab, d) * 0.05f;
        var bf16 = f32.Select(l => l.Select(w => w.to_type(ScalarType.BFloat16)).ToArray()).ToArray();
        var head16 = head32.to_type(ScalarType.BFloat16);
        var x = randn(1, 1, d);
        double TokenMs(Tensor[][] ws, Tensor head)
        {
            var sw = Stopwatch.StartNew();
            for (int t = 0; t < tokens; t++)
            {
                using var scope = NewDisposeScope();
                var h = x;
                foreach (var l in ws)
                {
                    var qkv = SmallGemm.Project(h, norm, 1e-5, l[0], l[1], l[2]);
                    var h1 = SmallGemm.ProjectAdd(qkv[0], l[3], h);
                    var act = SmallGemm.SwiGlu(h1, norm, 1e-5, l[4], l[5]);
                    h = SmallGemm.ProjectAdd(act, l[6], h1);
                }
                SmallGemm.Project(h, norm, 1e-5, head);
            }
            return sw.Elapsed.TotalMilliseconds / tokens;
        }
        var a = new List<double>(); var b = new List<double>();
        KernelThreads.Hold(() =>
        {
            TokenMs(f32, head32); TokenMs(bf16, head16);   // warm-up
            for (int r = 0; r < rounds; r++) { a.Add(TokenMs(f32, head32)); b.Add(TokenMs(bf16, head16)); }
        });
        Console.WriteLine($"| micro token, products only ({tokens} tokens × {rounds} rounds) | ms/token: median (range) | tokens/s: median (range) |");
        Console.WriteLine("|---|---:|---:|");
        foreach (var (name, l) in new[] { ("float32 weights (77 MB per token)", a), ("bfloat16 weights (39 MB per token)", b) })
        {
            var s = l.Order().ToList();
            Console.WriteLine($"| {name} | {s[s.Count / 2]:F2} ({s[0]:F2}–{s[^1]:F2}) | {1000 / s[s.Count / 2]:F0} ({1000 / s[^1]:F0}–{1000 / s[0]:F0}) |");
        }
        Console.WriteLine();
        ProductCost(rounds, threads);
        return 0;
    }

    // (3): float32 [m, 576] × [576, n], medians over the rounds (all settings interleaved within each round).
    private static void ProductCost(int rounds, int threads)
    {
        const int d = 576;
        int[] ns = [768, 1536, 3072], ms = [8, 32];
        var cycled = ns.ToDictionary(n => n, n => Enumerable.Range(0, (int)(212L * 1536 / n)).Select(_ => randn(n, d) * 0.05f).ToArray());
        var xs = ms.ToDictionary(m => m, m => randn(m, d));
        var times = new Dictionary<(int n, int m, string how), List<double>>();
        double Seconds(Tensor x, Tensor[] ws, int reps)
        {
            var sw = Stopwatch.StartNew();
            for (int rep = 0; rep < reps; rep++) foreach (var w in ws) { using var y = SmallGemm.Matmul(x, w); }
            return sw.Elapsed.TotalSeconds / ws.Length / reps;
        }
        void Add((int, int, string) key, double t) => (times.TryGetValue(key, out var l) ? l : times[key] = []).Add(t);
        for (int round = -1; round < 2 * rounds; round++)   // round −1 warms up
            foreach (int n in ns)
                foreach (int m in ms)
                {
                    double outOf = 0, inCache = 0, one = 0;
                    KernelThreads.Hold(() => { outOf = Seconds(xs[m], cycled[n], 1); inCache = Seconds(xs[m], [cycled[n][0]], 50); });
                    set_num_threads(1);
                    KernelThreads.Hold(() => one = Seconds(xs[m], [cycled[n][0]], 25));
                    set_num_threads(threads);
                    if (round < 0) continue;
                    Add((n, m, "out"), outOf); Add((n, m, "in"), inCache); Add((n, m, "one"), one);
                }
        double Med((int, int, string) key) { var l = times[key].Order().ToList(); return l[l.Count / 2]; }
        Console.WriteLine($"| float32 product ({2 * rounds} rounds) | weights out of cache | weight in cache | extra | extra as GB/s | in cache, GFLOP/s on 1 / {threads} threads |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (int n in ns)
            foreach (int m in ms)
            {
                double o = Med((n, m, "out")), i = Med((n, m, "in")), t1 = Med((n, m, "one")), bytes = 4.0 * n * d, flops = 2.0 * m * n * d;
                Console.WriteLine($"| [{m}, {d}] × [{d}, {n}] ({bytes / 1e6:F1} MB) | {o * 1e6:F0} µs | {i * 1e6:F0} µs | {(o - i) * 1e6:F0} µs | " +
                                  $"{bytes / (o - i) / 1e9:F1} | {flops / t1 / 1e9:F0} / {flops / i / 1e9:F0} |");
            }
    }

    // Seconds to sum `data` once, split in `threads` contiguous ranges read in parallel with four 8-lane accumulators each.
    private static double ReadSeconds(float[] data, int threads)
    {
        var sw = Stopwatch.StartNew();
        var sums = new float[threads];
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            int lo = (int)((long)data.Length * t / threads), hi = (int)((long)data.Length * (t + 1) / threads);
            var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
            ref float start = ref data[0];
            int i = lo;
            for (; i + 32 <= hi; i += 32)
            {
                s0 += Vector256.LoadUnsafe(ref start, (nuint)i); s1 += Vector256.LoadUnsafe(ref start, (nuint)(i + 8));
                s2 += Vector256.LoadUnsafe(ref start, (nuint)(i + 16)); s3 += Vector256.LoadUnsafe(ref start, (nuint)(i + 24));
            }
            sums[t] = Vector256.Sum(s0 + s1 + s2 + s3);
        });
        double seconds = sw.Elapsed.TotalSeconds;
        if (sums.Sum() < 0) Console.Write("");   // keep the sums alive
        return seconds;
    }
}
