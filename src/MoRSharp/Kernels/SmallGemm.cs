using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Kernels;

/// <summary>
/// y = x · Wᵀ for a few rows of x (decoding: one row per sequence) with AVX2/FMA, split over the intra-op threads.
/// <para>Why our own kernel: decoding is memory-bound (every weight is read once per token), and libtorch's CPU matrix
/// product for a few rows streams weights at only 1–5 GB/s on this project's machine (an AVX2 AMD EPYC, where libtorch's
/// MKL picks its generic kernels). This kernel reads each weight row once, front to back, and applies it to up to four input
/// rows held in cache (`MoRSharp.Bench projection-paths` compares it with libtorch; docs/benchmarks.md).</para>
/// <para>Each output is one dot product summed in a fixed order that depends only on d, so results are the same for any
/// thread count and for a row alone or in any batch; they equal libtorch's <c>linear</c> up to float rounding (a different
/// summation order). <see cref="Project(Tensor, Tensor?, double, Tensor[])"/>, <see cref="ProjectRotated"/>,
/// <see cref="ProjectAdd"/> and <see cref="SwiGlu"/> fuse the decoder layer's norms, RoPE, residual adds and SwiGLU
/// around the products, so a decoder layer is four kernel calls.</para>
/// </summary>
public static unsafe class SmallGemm
{
    /// <summary>Set to <c>0</c> or <c>false</c> to turn the kernel off (libtorch's products are used instead).</summary>
    public const string Variable = "MORSHARP_DECODE_KERNELS";

    /// <summary>Rows up to which the model's projections use these kernels. At 32 rows the kernel is already compute-bound
    /// and only 1.0–1.2× faster than libtorch's swapped product (`projection-paths`); larger products, such as a long
    /// prompt's prefill, go to libtorch's blocked kernels.</summary>
    public const long MaxRows = 64;

    /// <summary>Rows up to which the kernels are used inside <see cref="KernelThreads.Hold"/> (the batching engine's stages at
    /// large batches). There libtorch's own operations run on one thread (the team is busy holding), and the kernel on two
    /// threads beat it: weights out of cache, 64–256 rows, the kernel ran at 88–102 GFLOP/s, libtorch's two-thread `linear`
    /// at 74–127 (scratch program), so one-thread `linear` at about half of that.</summary>
    public const long MaxHeldRows = 1024;

    // Below this many weight elements one thread does the whole product: waking a worker costs more than it saves.
    private const long ParallelThreshold = 32 * 1024;

    /// <summary>AVX2 and FMA present, not turned off with <see cref="Variable"/>, and not inside <see cref="Disable"/>.</summary>
    public static bool IsEnabled => Available && !disabled.Value;

    private static readonly bool Available = Avx2.IsSupported && Fma.IsSupported && !IsOff(Environment.GetEnvironmentVariable(Variable));
    private static readonly AsyncLocal<bool> disabled = new();

    /// <summary>
    /// Turns the decode kernels (products and decode attention) off until the returned scope is disposed, for the calling
    /// flow and the threads and tasks it starts meanwhile (an engine created inside the scope keeps it): libtorch's paths
    /// run instead. For comparisons and tests; other threads are not affected.
    /// </summary>
    public static IDisposable Disable()
    {
        bool before = disabled.Value;
        disabled.Value = true;
        return new Restore(before);
    }

    private sealed class Restore(bool before) : IDisposable
    {
        public void Dispose() => disabled.Value = before;
    }

    private static bool IsOff(string? v) => v is not null && (v.Trim() == "0" || v.Trim().Equals("false", StringComparison.OrdinalIgnoreCase));

    /// <summary>Whether the kernels accept these operands: enabled, float32 input on the CPU, contiguous 2-D weights of x's
    /// width in float32 or bfloat16 (all of one call alike; see <see cref="Bf16Weights"/>), no autograd, at most <see cref="MaxRows"/> rows (<see cref="MaxHeldRows"/> inside <see cref="KernelThreads.Hold"/>).</summary>
    public static bool Accepts(Tensor x, Tensor weight) => AcceptsInput(x, out long d) && AcceptsWeight(weight, d);

    /// <inheritdoc cref="Accepts(Tensor, Tensor)"/>
    public static bool Accepts(Tensor x, Tensor w0, Tensor w1) =>
        AcceptsInput(x, out long d) && AcceptsWeight(w0, d) && AcceptsWeight(w1, d) && w1.dtype == w0.dtype;

    /// <inheritdoc cref="Accepts(Tensor, Tensor)"/>
    public static bool Accepts(Tensor x, Tensor w0, Tensor w1, Tensor w2) =>
        AcceptsInput(x, out long d) && AcceptsWeight(w0, d) && AcceptsWeight(w1, d) && AcceptsWeight(w2, d)
        && w1.dtype == w0.dtype && w2.dtype == w0.dtype;

    // These run before every decode projection, so they use size(i) (one native call) rather than shape (an array
    // allocated through a callback, about 1 µs each in TorchSharp).
    private static bool AcceptsInput(Tensor x, out long d)
    {
        d = 0;
        if (!IsEnabled || torch.is_grad_enabled() || x.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU || x.dim() < 1) return false;
        d = x.size(-1);
        if (d <= 0 || d > int.MaxValue) return false;
        long m = x.numel() / d;
        return m <= MaxRows || (m <= MaxHeldRows && KernelThreads.IsHeld);
    }

    private static bool AcceptsWeight(Tensor w, long d) =>
        w.dtype is ScalarType.Float32 or ScalarType.BFloat16 && w.device_type == DeviceType.CPU && w.dim() == 2 && w.is_contiguous()
        && w.size(1) == d && w.size(0) <= int.MaxValue;

    /// <summary>x [..., d] · W[n, d]ᵀ → a new contiguous [..., n]. Caller checks <see cref="Accepts(Tensor, Tensor)"/>.</summary>
    public static Tensor Matmul(Tensor x, Tensor weight) => Run(x, null, 0, [weight], Epilogue.None, null)[0];

    /// <summary>
    /// RMSNorm(x) · Wᵢᵀ for each weight in one pass over the threads (decoding: q, k and v, or gate and up, read after one
    /// normalisation): returns one new [..., nᵢ] per weight. <paramref name="normWeight"/> null skips the norm. The norm is
    /// HF Llama's in float32: x · rsqrt(mean(x²) + eps) · weight.
    /// </summary>
    public static Tensor[] Project(Tensor x, Tensor? normWeight, double eps, params Tensor[] weights) =>
        Run(x, normWeight, eps, weights, Epilogue.None, null);

    /// <summary>
    /// <see cref="Project(Tensor, Tensor?, double, Tensor[])"/> for attention: the outputs of the first
    /// <paramref name="rotated"/> weights (q, or q and k) come back rotated by RoPE, head by head:
    /// y·cos + roll(y, hd/2)·signedSin, the formula of <c>RotaryEmbedding.Apply</c>. <paramref name="cos"/> and
    /// <paramref name="signedSin"/> hold one row of hd values per row of x, in x's row order ([B, 1, T, hd] for x [B, T, d]).
    /// </summary>
    public static Tensor[] ProjectRotated(Tensor x, Tensor? normWeight, double eps, Tensor[] weights, Tensor cos, Tensor signedSin, int headDim, int rotated)
    {
        if (!AcceptsRope(x, cos, signedSin, headDim)) throw new ArgumentException($"RoPE tables must be contiguous float32 with {headDim} values per row of x", nameof(cos));
        var ys = Run(x, normWeight, eps, weights, Epilogue.None, null);
        long m = x.numel() / x.size(-1);
        float* c = (float*)THSTensor_data(cos.Handle), sn = (float*)THSTensor_data(signedSin.Handle);
        for (int s = 0; s < Math.Min(rotated, ys.Length); s++)
            RotateRows((float*)THSTensor_data(ys[s].Handle), (int)m, (int)ys[s].size(-1), headDim, c, sn);
        return ys;
    }

    /// <summary>Whether <see cref="ProjectRotated"/> takes these tables: contiguous float32, one row of hd per row of x.</summary>
    public static bool AcceptsRope(Tensor x, Tensor cos, Tensor signedSin, int headDim) =>
        headDim > 0 && headDim % 2 == 0
        && cos.dtype == ScalarType.Float32 && signedSin.dtype == ScalarType.Float32 && cos.is_contiguous() && signedSin.is_contiguous()
        && cos.numel() == x.numel() / x.size(-1) * headDim && signedSin.numel() == cos.numel() && cos.size(-1) == headDim;

    // y[i, h·hd + j] ← y·cos[i, j] + y[i, h·hd + (j + hd/2) mod hd]·signedSin[i, j] for every head h; n a multiple of hd.
    private static void RotateRows(float* y, int m, int n, int hd, float* cos, float* signedSin)
    {
        if (n % hd != 0) throw new ArgumentException($"output width {n} is not a multiple of the head dimension {hd}");
        int half = hd / 2;
        float* head = stackalloc float[hd];
        for (int i = 0; i < m; i++)
        {
            float* c = cos + (long)i * hd, s = signedSin + (long)i * hd;
            for (int h = 0; h < n; h += hd)
            {
                float* p = y + (long)i * n + h;
                Buffer.MemoryCopy(p, head, hd * sizeof(float), hd * sizeof(float));
                for (int j = 0; j < half; j++) p[j] = head[j] * c[j] + head[j + half] * s[j];
                for (int j = half; j < hd; j++) p[j] = head[j] * c[j] + head[j - half] * s[j];
            }
        }
    }

    /// <summary>residual + x · Wᵀ as a new tensor (the attention output and MLP down projections with their residual adds).</summary>
    public static Tensor ProjectAdd(Tensor x, Tensor weight, Tensor residual)
    {
        if (residual.dtype != ScalarType.Float32 || residual.numel() != x.numel() / x.size(-1) * weight.size(0) || residual.size(-1) != weight.size(0))
            throw new ArgumentException($"residual shape [{string.Join(", ", residual.shape)}] does not match the product's", nameof(residual));
        return Run(x, null, 0, [weight], Epilogue.AddResidual, residual)[0];
    }

    /// <summary>silu(RMSNorm(x) · W_gateᵀ) ⊙ (RMSNorm(x) · W_upᵀ) as a new [..., n]: the SwiGLU hidden layer in one pass.</summary>
    public static Tensor SwiGlu(Tensor x, Tensor? normWeight, double eps, Tensor gate, Tensor up)
    {
        if (gate.size(0) != up.size(0)) throw new ArgumentException("gate and up weights differ in shape", nameof(up));
        return Run(x, normWeight, eps, [gate, up], Epilogue.SwiGlu, null)[0];
    }

    private static Tensor[] Run(Tensor x, Tensor? normWeight, double eps, Tensor[] weights, Epilogue epilogue, Tensor? residual)
    {
        var shape = x.shape;
        int d = (int)shape[^1];
        int m = (int)(x.numel() / d);
        if (weights.Length is < 1 or > KernelJob.MaxSegments) throw new ArgumentException($"1 to {KernelJob.MaxSegments} weights", nameof(weights));
        var weightType = weights[0].dtype;
        bool sameType = weightType is ScalarType.Float32 or ScalarType.BFloat16;
        for (int s = 1; s < weights.Length; s++) sameType &= weights[s].dtype == weightType;   // no LINQ: per kernel call
        if (!sameType)
            throw new ArgumentException($"weights must all be float32 or all bfloat16, not {string.Join(", ", weights.Select(w => w.dtype))}", nameof(weights));
        if (normWeight is not null && (normWeight.numel() != d || normWeight.dtype != ScalarType.Float32 || !normWeight.is_contiguous()))
            throw new ArgumentException($"norm weight must be {d} contiguous float32 values", nameof(normWeight));
        // SwiGLU writes one output (silu(gate) ⊙ up); the up product goes to scratch memory.
        int outputs = epilogue == Epilogue.SwiGlu ? 1 : weights.Length;
        var ys = new Tensor[outputs];
        var ns = new int[weights.Length];
        for (int s = 0; s < weights.Length; s++) ns[s] = (int)weights[s].size(0);
        for (int s = 0; s < outputs; s++)
        {
            shape[^1] = ns[s];
            ys[s] = torch.empty(shape, dtype: ScalarType.Float32);
        }
        if (m == 0) return ys;

        using var xc = x.contiguous();
        using var rc = residual?.contiguous();
        float[]? normed = null, scratch = null;
        try
        {
            if (normWeight is not null) normed = ArrayPool<float>.Shared.Rent(m * d);
            if (epilogue == Epilogue.SwiGlu) scratch = ArrayPool<float>.Shared.Rent(m * ns[1]);
            fixed (float* np = normed, sp = scratch)
            {
                float* xp = (float*)THSTensor_data(xc.Handle);
                if (normWeight is not null)
                {
                    RmsNormRows(xp, (float*)THSTensor_data(normWeight.Handle), (float)eps, np, m, d);
                    xp = np;
                }
                var job = new KernelJob(xp, m, d, epilogue, rc is null ? null : (float*)THSTensor_data(rc.Handle)) { Bf16 = weightType == ScalarType.BFloat16 };
                long work = 0;
                for (int s = 0; s < weights.Length; s++)
                {
                    float* y = s < outputs ? (float*)THSTensor_data(ys[s].Handle) : sp;
                    job.Set(s, (byte*)THSTensor_data(weights[s].Handle), y, ns[s]);
                    work += ns[s] * (long)d;
                }
                int threads = work < ParallelThreshold ? 1 : torch.get_num_threads();
                KernelThreads.Run(&Part, &job, parts: threads, threads);
            }
        }
        finally
        {
            if (normed is not null) ArrayPool<float>.Shared.Return(normed);
            if (scratch is not null) ArrayPool<float>.Shared.Return(scratch);
        }
        return ys;
    }

    // out[i, :] = x[i, :] · rsqrt(mean(x[i, :]²) + eps) · w (float32, as RmsNorm computes it).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNormRows(float* x, float* w, float eps, float* output, int m, int d)
    {
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, oi = output + (long)i * d;
            var acc = Vector256<float>.Zero;
            int k = 0;
            for (; k + 8 <= d; k += 8) { var v = Avx.LoadVector256(xi + k); acc = Fma.MultiplyAdd(v, v, acc); }
            float ss = Sum4(acc, acc, acc, acc).ToScalar();
            for (; k < d; k++) ss += xi[k] * xi[k];
            float r = 1f / MathF.Sqrt(ss / d + eps);
            var rv = Vector256.Create(r);
            k = 0;
            for (; k + 8 <= d; k += 8) Avx.Store(oi + k, Avx.Multiply(Avx.Multiply(Avx.LoadVector256(xi + k), rv), Avx.LoadVector256(w + k)));
            for (; k < d; k++) oi[k] = xi[k] * r * w[k];
        }
    }

    // The weights' rows, concatenated, split into `parts` ranges (even-sized, balanced). Part p computes all m rows of the
    // outputs for its range, then its share of the epilogue (which touches only those columns).
    private static void Part(void* operands, int part, int parts)
    {
        if (((KernelJob*)operands)->Bf16) Part<Bf16Weights>(operands, part, parts);
        else Part<F32Weights>(operands, part, parts);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Part<TW>(void* operands, int part, int parts) where TW : struct, IWeightFormat
    {
        ref readonly var job = ref *(KernelJob*)operands;
        if (job.Kind == Epilogue.SwiGlu)
        {
            // Columns [c0, c1) of the gate and of the up product (both n wide), then silu(gate) ⊙ up in place.
            int n = job.N0, half = (n + 1) / 2;
            int c0 = Math.Min(n, (int)((long)half * part / parts) * 2), c1 = Math.Min(n, (int)((long)half * (part + 1) / parts) * 2);
            Rows<TW>(job.X, job.W0, job.Y0, job.M, job.D, n, c0, c1);
            Rows<TW>(job.X, job.W1, job.Y1, job.M, job.D, n, c0, c1);
            for (int i = 0; i < job.M; i++)
            {
                float* g = job.Y0 + (long)i * n, u = job.Y1 + (long)i * n;
                for (int c = c0; c < c1; c++) g[c] = g[c] / (1f + MathF.Exp(-g[c])) * u[c];
            }
            return;
        }
        int total = job.TotalRows;
        int pairs = (total + 1) / 2;
        int g0 = Math.Min(total, (int)((long)pairs * part / parts) * 2);
        int g1 = Math.Min(total, (int)((long)pairs * (part + 1) / parts) * 2);
        int offset = 0;
        for (int s = 0; s < job.Segments; s++)
        {
            var (wp, yp, n) = job.SegmentAt(s);
            byte* w = (byte*)wp;
            float* y = (float*)yp;
            int a = Math.Max(g0, offset) - offset, b = Math.Min(g1, offset + n) - offset;
            if (a < b)
            {
                Rows<TW>(job.X, w, y, job.M, job.D, n, a, b);
                if (job.Kind == Epilogue.AddResidual)
                    for (int i = 0; i < job.M; i++)
                    {
                        float* yi = y + (long)i * n, ri = job.R + (long)i * n;
                        for (int c = a; c < b; c++) yi[c] += ri[c];
                    }
            }
            offset += n;
        }
    }

    // y[i, j] = Σ_k x[i, k] · w[j, k] for all i < m and j in [j0, j1).
    // Weight rows are read one after another (one sequential stream per thread: the hardware prefetcher keeps up with it,
    // where four interleaved 1 KB rows reached only 10–11 GB/s against 16–17 GB/s). From 8 input rows on, three weight rows
    // share each load of the inputs, because there the arithmetic starts to count.
    // Every output is summed the same way whichever kernel computes it (one 8-lane accumulator over k, the same
    // horizontal sum, then the scalar tail), so a sequence's logits do not depend on the batch it is decoded in.
    // The weight format TW (float32 or bfloat16) changes only how eight weights are loaded; the sums are the same, so a
    // bfloat16 weight gives bitwise the result of its float32 widening.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TW>(float* x, byte* w, float* y, int m, int d, int n, int j0, int j1) where TW : struct, IWeightFormat
    {
        if (TW.Size != sizeof(float) && m > 4 && d <= MaxWidenedWidth)
        {
            RowsWidened<TW>(x, w, y, m, d, n, j0, j1);
            return;
        }
        long row = (long)d * TW.Size;   // bytes per weight row
        int j = j0;
        if (m >= 8)
            for (; j + 3 <= j1; j += 3)
            {
                byte* wj = w + j * row;
                ThreeRows<TW>(wj, x, d, y + j, n, m, j + 2 * PrefetchTriple <= j1 ? wj + PrefetchTriple * row : null);
            }
        for (; j < j1; j++)
        {
            byte* wj = w + j * row;
            byte* ahead = j + PrefetchRows < j1 ? wj + PrefetchRows * row : null;
            if (m == 1) { y[j] = Dot<TW>(wj, x, d, ahead); continue; }
            OneByFour<TW>(wj, x, d, y + j, n, Math.Min(4, m), ahead);
            for (int i = 4; i < m; i += 4) OneByFour<TW>(wj, x + (long)i * d, d, y + (long)i * n + j, n, Math.Min(4, m - i), null);
        }
    }

    // Narrow weights against more than four input rows: each weight row (or triple) is widened once into a float32 buffer
    // on the stack and the float32 kernels run every block of input rows against it, instead of widening it again for each
    // block. Widening is exact, so the results are bitwise those of Rows. The prefetch runs while widening.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsWidened<TW>(float* x, byte* w, float* y, int m, int d, int n, int j0, int j1) where TW : struct, IWeightFormat
    {
        long row = (long)d * TW.Size;
        float* wide = stackalloc float[3 * d];
        int j = j0;
        if (m >= 8)
            for (; j + 3 <= j1; j += 3)
            {
                byte* wj = w + j * row;
                Widen<TW>(wj, wide, 3 * d, j + 2 * PrefetchTriple <= j1 ? wj + PrefetchTriple * row : null);
                ThreeRows<F32Weights>((byte*)wide, x, d, y + j, n, m, null);
            }
        for (; j < j1; j++)
        {
            byte* wj = w + j * row;
            Widen<TW>(wj, wide, d, j + PrefetchRows < j1 ? wj + PrefetchRows * row : null);
            for (int i = 0; i < m; i += 4)
                OneByFour<F32Weights>((byte*)wide, x + (long)i * d, d, y + (long)i * n + j, n, Math.Min(4, m - i), null);
        }
    }

    // Widest d RowsWidened takes (its stack buffer is 3·d floats, 48 KB here); wider weights are widened per block instead.
    private const int MaxWidenedWidth = 4096;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen<TW>(byte* w, float* output, int count, byte* ahead) where TW : struct, IWeightFormat
    {
        int k = 0;
        for (; k + 8 <= count; k += 8)
        {
            if (ahead != null) Sse.Prefetch0(ahead + k * TW.Size);
            Avx.Store(output + k, TW.Load(w, k));
        }
        for (; k < count; k++) output[k] = TW.At(w, k);
    }

    // Software prefetch distances, in weight rows: while the first block of input rows runs against weight row(s) j, the
    // rows PrefetchRows (one at a time) or PrefetchTriple (three at a time) further on are fetched at the same offset, so
    // they are in cache when their turn comes. With 8+ input rows a triple is reused from L1 for a long time and the
    // hardware prefetcher lets the stream from memory stall. Weights out of cache ([m, 576] × [576, 1536], 60 weights in
    // turn, scratch program, medians of 14 interleaved rounds): 8 rows 468 → 293 µs, 18 rows 652 → 469, 32 rows 798 → 638.
    private const int PrefetchTriple = 3, PrefetchRows = 2;

    // One weight row against four input rows: one weight load serves four FMAs. With rows < 4 (the last rows of m) the
    // missing rows repeat row 0 and only `rows` outputs are stored: four chains in flight are still faster than separate
    // dot products, whose single chain waits on the FMA latency (such tails took 12–13% of the engine thread at batch 32).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OneByFour<TW>(byte* w, float* x0, int d, float* y, int n, int rows, byte* ahead) where TW : struct, IWeightFormat
    {
        float* x1 = rows > 1 ? x0 + d : x0, x2 = rows > 2 ? x0 + 2 * d : x0, x3 = rows > 3 ? x0 + 3 * d : x0;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int k = 0;
        for (; k + 8 <= d; k += 8)
        {
            if (ahead != null) Sse.Prefetch0(ahead + k * TW.Size);
            var q = TW.Load(w, k);
            a0 = Fma.MultiplyAdd(q, Avx.LoadVector256(x0 + k), a0);
            a1 = Fma.MultiplyAdd(q, Avx.LoadVector256(x1 + k), a1);
            a2 = Fma.MultiplyAdd(q, Avx.LoadVector256(x2 + k), a2);
            a3 = Fma.MultiplyAdd(q, Avx.LoadVector256(x3 + k), a3);
        }
        var s = Sum4(a0, a1, a2, a3);
        if (k < d) s = Sse.Add(s, Tail4<TW>(w, w, w, w, x0, x1, x2, x3, k, d));
        Store(y, n, rows, s);
    }

    // Three weight rows against all m input rows: blocks of four, then the last one to three rows in a kernel of their size.
    // The four-row kernel with repeated rows did 12 multiply-adds for 3, 6 or 9 results, and the engine's shared-block calls
    // have any number of rows: against it, the last-block kernels made [m, 576] × [576, 1536] 5–10% faster for m = 17, 18,
    // 25, 26 and 1–12% for m = 19, 23, 27 (weights in and out of cache, interleaved medians of 15 rounds, scratch program;
    // docs/benchmarks.md "Session 7"); m = 16 and 20 were unchanged. The prefetch goes with the first block.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ThreeRows<TW>(byte* w, float* x, int d, float* y, int n, int m, byte* ahead) where TW : struct, IWeightFormat
    {
        int i = 0;
        for (; i + 4 <= m; i += 4, ahead = null) ThreeBy<TW, Four>(w, x + (long)i * d, d, y + (long)i * n, n, ahead);
        float* xi = x + (long)i * d, yi = y + (long)i * n;
        switch (m - i)
        {
            case 3: ThreeBy<TW, Three>(w, xi, d, yi, n, ahead); break;
            case 2: ThreeBy<TW, Two>(w, xi, d, yi, n, ahead); break;
            case 1: ThreeBy<TW, One>(w, xi, d, yi, n, ahead); break;
        }
    }

    // Three weight rows against R = 1–4 input rows (R a type, so each size compiles to its own loop with 3·R accumulators).
    // With four rows: 12 independent accumulators (enough to keep both FMA pipes busy through their latency), 7 loads per
    // 12 FMAs, 16 vector registers in all. Each output is one 8-lane chain with the same horizontal sum and tail whatever R.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ThreeBy<TW, R>(byte* w, float* x0, int d, float* y, int n, byte* ahead) where TW : struct, IWeightFormat where R : struct, IRowCount
    {
        long row = (long)d * TW.Size;
        byte* v = w + row, u = v + row;
        float* x1 = R.Rows > 1 ? x0 + d : x0, x2 = R.Rows > 2 ? x0 + 2 * d : x0, x3 = R.Rows > 3 ? x0 + 3 * d : x0;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        int k = 0;
        for (; k + 8 <= d; k += 8)
        {
            if (ahead != null)
            {
                byte* a = ahead + k * TW.Size;
                Sse.Prefetch0(a); Sse.Prefetch0(a + row); Sse.Prefetch0(a + 2 * row);
            }
            var p = TW.Load(w, k);
            var q = TW.Load(v, k);
            var r = TW.Load(u, k);
            var z = Avx.LoadVector256(x0 + k); a0 = Fma.MultiplyAdd(p, z, a0); b0 = Fma.MultiplyAdd(q, z, b0); c0 = Fma.MultiplyAdd(r, z, c0);
            if (R.Rows > 1) { z = Avx.LoadVector256(x1 + k); a1 = Fma.MultiplyAdd(p, z, a1); b1 = Fma.MultiplyAdd(q, z, b1); c1 = Fma.MultiplyAdd(r, z, c1); }
            if (R.Rows > 2) { z = Avx.LoadVector256(x2 + k); a2 = Fma.MultiplyAdd(p, z, a2); b2 = Fma.MultiplyAdd(q, z, b2); c2 = Fma.MultiplyAdd(r, z, c2); }
            if (R.Rows > 3) { z = Avx.LoadVector256(x3 + k); a3 = Fma.MultiplyAdd(p, z, a3); b3 = Fma.MultiplyAdd(q, z, b3); c3 = Fma.MultiplyAdd(r, z, c3); }
        }
        var sa = Sum4(a0, a1, a2, a3);
        var sb = Sum4(b0, b1, b2, b3);
        var sc = Sum4(c0, c1, c2, c3);
        if (k < d)
        {
            sa = Sse.Add(sa, Tail4<TW>(w, w, w, w, x0, x1, x2, x3, k, d));
            sb = Sse.Add(sb, Tail4<TW>(v, v, v, v, x0, x1, x2, x3, k, d));
            sc = Sse.Add(sc, Tail4<TW>(u, u, u, u, x0, x1, x2, x3, k, d));
        }
        Store(y, n, R.Rows, sa);
        Store(y + 1, n, R.Rows, sb);
        Store(y + 2, n, R.Rows, sc);
    }

    /// <summary>A number of input rows fixed at compile time (see <see cref="ThreeBy"/>).</summary>
    internal interface IRowCount { static abstract int Rows { get; } }
    internal struct One : IRowCount { public static int Rows => 1; }
    internal struct Two : IRowCount { public static int Rows => 2; }
    internal struct Three : IRowCount { public static int Rows => 3; }
    internal struct Four : IRowCount { public static int Rows => 4; }

    // The first `rows` lanes of s to y[0], y[n], y[2n], y[3n].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int n, int rows, Vector128<float> s)
    {
        y[0] = s.GetElement(0);
        if (rows > 1) y[n] = s.GetElement(1);
        if (rows > 2) y[2 * n] = s.GetElement(2);
        if (rows > 3) y[3 * n] = s.GetElement(3);
    }

    // One weight row against one input row (single-sequence decoding and leftover rows). One accumulator chain is enough
    // here: FMA latency allows about 24 GB/s per core, above what memory delivers.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot<TW>(byte* w, float* x, int d, byte* ahead = null) where TW : struct, IWeightFormat
    {
        var acc = Vector256<float>.Zero;
        int k = 0;
        for (; k + 8 <= d; k += 8)
        {
            if (ahead != null) Sse.Prefetch0(ahead + k * TW.Size);
            acc = Fma.MultiplyAdd(TW.Load(w, k), Avx.LoadVector256(x + k), acc);
        }
        var s = Sum4(acc, acc, acc, acc);
        if (k < d) s = Sse.Add(s, Tail4<TW>(w, w, w, w, x, x, x, x, k, d));
        return s.ToScalar();
    }

    // The horizontal sums of four accumulators as one 4-lane vector [Σa0, Σa1, Σa2, Σa3], always in the same order.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));   // lanes 0–3 and 4–7 hold halves
        return Sse.Add(h.GetLower(), h.GetUpper());
    }

    // The k ≥ (d rounded down to 8) remainder for four (weight row, input row) pairs, summed in order.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Tail4<TW>(byte* w0, byte* w1, byte* w2, byte* w3, float* x0, float* x1, float* x2, float* x3, int k, int d)
        where TW : struct, IWeightFormat
    {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (; k < d; k++) { s0 += TW.At(w0, k) * x0[k]; s1 += TW.At(w1, k) * x1[k]; s2 += TW.At(w2, k) * x2[k]; s3 += TW.At(w3, k) * x3[k]; }
        return Vector128.Create(s0, s1, s2, s3);
    }

    /// <summary>How a kernel reads weights: eight at a time as float32 lanes, or one (tails).</summary>
    internal interface IWeightFormat
    {
        static abstract int Size { get; }
        static abstract Vector256<float> Load(byte* w, int k);
        static abstract float At(byte* w, int k);
    }

    internal struct F32Weights : IWeightFormat
    {
        public static int Size => sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* w, int k) => Avx.LoadVector256((float*)w + k);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float At(byte* w, int k) => ((float*)w)[k];
    }

    /// <summary>
    /// bfloat16 weights (the upper half of a float32): widened exactly to float32 on load (zero-extend, shift left 16), so
    /// the arithmetic is float32 throughout. Decoding reads every weight once per token, so half the bytes is up to half
    /// the time where memory is the limit (weight-only bfloat16, as llama.cpp's bf16 files; activations, norms, the KV
    /// cache and the sums stay float32).
    /// </summary>
    internal struct Bf16Weights : IWeightFormat
    {
        public static int Size => sizeof(ushort);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* w, int k) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)w + k), 16).AsSingle();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float At(byte* w, int k) => BitConverter.Int32BitsToSingle(((ushort*)w)[k] << 16);
    }

    /// <summary>The first element of a contiguous float32 CPU tensor (the caller keeps the tensor alive).</summary>
    internal static float* Floats(Tensor t) => (float*)THSTensor_data(t.Handle);

    // The pointer to a CPU tensor's first element (the function TorchSharp itself uses for Tensor.data<T>()).
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);
}
