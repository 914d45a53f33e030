using System.Diagnostics;
using MoRSharp.Kernels;
using MoRSharp.Model;
using MoRSharp.Native;
using static TorchSharp.torch;

namespace MoRSharp.Bench;

/// <summary>
/// `linear(x, W)` against <see cref="InferenceLinear.Swapped"/> ((W·xᵀ)ᵀ, one row padded to two) and the decode kernel
/// <see cref="SmallGemm.Matmul"/> for decode-sized inputs, with the weights out of cache as in decoding (every call takes
/// the next of several copies, together larger than the L3 cache). The paths alternate inside each round; the table gives
/// the median per-call time over the rounds, and the effective weight bandwidth of the kernel. The last columns run the
/// kernel on the same products with bfloat16 weights (weight-only bfloat16, `--weights bfloat16`), also out of cache.
/// </summary>
public static class ProjectionPathsBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        int rounds = opt.Int("rounds", 5), threads = opt.Int("threads", 2);
        TorchRuntime.Initialize(threads);
        using var _ = no_grad();
        Console.WriteLine($"Projection paths, {threads} threads, weights cycled out of cache; {TorchRuntime.Describe()}");
        Console.WriteLine();
        bool kernel = SmallGemm.IsEnabled;
        if (!kernel) Console.WriteLine("(decode kernels unavailable here: no AVX2/FMA, or MORSHARP_DECODE_KERNELS=0)");
        else if (!KernelThreads.UsesOpenMpTeam) Console.WriteLine("(libgomp not found: the decode kernels run on one thread)");
        Console.WriteLine("| product (fp32) | `linear(x, W)` | (W·xᵀ)ᵀ | `SmallGemm` | kernel vs linear | kernel vs (W·xᵀ)ᵀ | kernel GB/s | `SmallGemm`, bf16 W | bf16 vs fp32 W |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (outDim, inDim) in new[] { (768, 256), (1536, 576), (49152, 256) })
        {
            int copies = (int)Math.Max(2, Math.Ceiling(64e6 / (4.0 * outDim * inDim)));    // ≥ 64 MB of weights in all
            var weights = Enumerable.Range(0, copies).Select(_ => randn(outDim, inDim)).ToArray();
            var narrow = kernel ? Enumerable.Range(0, 2 * copies).Select(i => weights[i % copies].to_type(ScalarType.BFloat16)).ToArray() : [];   // ≥ 64 MB too
            foreach (int m in new[] { 1, 4, 32 })
            {
                var x = randn(m, inDim);
                int calls = Math.Max(2 * copies, 16), next = 0;
                double Time(Func<Tensor, Tensor> f, Tensor[]? set = null)
                {
                    set ??= weights;
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < calls; i++) { using var s = NewDisposeScope(); f(set[next++ % set.Length]); }
                    return sw.Elapsed.TotalMilliseconds * 1000 / calls;
                }
                Func<Tensor, Tensor> own = kernel ? w => SmallGemm.Matmul(x, w) : w => InferenceLinear.Swapped(x, w);
                Time(w => nn.functional.linear(x, w)); Time(w => InferenceLinear.Swapped(x, w)); Time(own);   // warm-up
                if (kernel) Time(own, narrow);
                var lin = new List<double>(); var swp = new List<double>(); var ker = new List<double>(); var bf = new List<double>();
                for (int r = 0; r < rounds; r++)
                {
                    lin.Add(Time(w => nn.functional.linear(x, w)));
                    swp.Add(Time(w => InferenceLinear.Swapped(x, w)));
                    ker.Add(Time(own));
                    if (kernel) bf.Add(Time(own, narrow));
                }
                double a = lin.Order().ElementAt(rounds / 2), b = swp.Order().ElementAt(rounds / 2), c = ker.Order().ElementAt(rounds / 2);
                double e = kernel ? bf.Order().ElementAt(rounds / 2) : double.NaN;
                string label = outDim == 49152 ? $"LM head [{m}, {inDim}] × [{inDim}, {outDim}]" : $"[{m}, {inDim}] × [{inDim}, {outDim}]";
                string k = kernel ? Fmt(c) : "–", ka = kernel ? $"{a / c:F2}×" : "–", kb = kernel ? $"{b / c:F2}×" : "–";
                string gbs = kernel ? $"{4.0 * outDim * inDim / (c * 1e3):F1}" : "–";
                string k16 = kernel ? Fmt(e) : "–", k16r = kernel ? $"{c / e:F2}×" : "–";
                Console.WriteLine($"| {label} | {Fmt(a)} | {Fmt(b)} | {k} | {ka} | {kb} | {gbs} | {k16} | {k16r} |");
            }
            foreach (var w in weights) w.Dispose();
            foreach (var w in narrow) w.Dispose();
        }
        return 0;
    }

    private static string Fmt(double us) => us >= 1000 ? $"{us / 1000:F2} ms" : $"{us:F0} µs";
}
