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
/// than (2).
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
        return 0;
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
