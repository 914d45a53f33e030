using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoRSharp.Kernels;

/// <summary>One decoding token's share of a KV cache: the row of one slot it writes to and attends over.</summary>
internal unsafe struct DecodeSlot
{
    public float* Keys;      // [n_kv, Capacity, hd]: the token's cache row in its slot
    public float* Values;    // [n_kv, Capacity, hd]
    public int Capacity;
    public int WriteAt;      // the entry the token's own key/value go to, or −1 (a read-only slot)
    public int Length;       // the query attends to entries [0, Length)
}

/// <summary>
/// Attention for decoding: one query per token, each token against its own (slot, row) of the KV cache, read in place.
/// Replaces, under no-grad on float32, what the batching engine otherwise does per cache slot of a layer: scatter the
/// slot's tokens into full-batch tensors, run scaled-dot-product attention over every cache row with a mask, and gather the
/// members back. With tokens at three recursion depths that was three full-batch attentions per layer (about 10% of a
/// MoR-3 decode step, 135M shape, batch 32: `dotnet-trace`, docs/benchmarks.md). Here each token reads only its own entries,
/// all slots in one call.
/// <para>Per (token, KV head): write the token's key/value, then for each of the H/n_kv query heads that share the KV
/// head: scores qᵀkₜ/√hd over [0, Length), softmax, Σ pₜvₜ. Each token is computed alone in a fixed order, so its output does
/// not depend on the batch or the thread count.</para>
/// </summary>
internal static unsafe class DecodeAttention
{
    /// <summary>Work (multiply-adds) below which one thread does it all: handing a part to the team costs a hand-over and a wait.</summary>
    private const long ParallelThreshold = 256 * 1024;

    private struct Job
    {
        public float* Q, NewK, NewV, Output;   // Q/Output [n, H, hd]; NewK/NewV [n, n_kv, hd]
        public DecodeSlot* Slots;              // [n]
        public int N, Heads, KvHeads, HeadDim, MaxLength;
        public float Scale;
    }

    /// <summary>
    /// Writes each token's key/value (where its slot writes) and computes its attention output. Pointers are to contiguous
    /// float32 memory the caller keeps alive: q/output [n, heads, hd], newK/newV [n, kvHeads, hd], slots [n].
    /// </summary>
    internal static void Run(float* q, float* newK, float* newV, float* output, DecodeSlot* slots, int n, int heads, int kvHeads, int headDim)
    {
        if (n == 0) return;
        int maxLength = 0;
        long work = 0;
        for (int i = 0; i < n; i++)
        {
            maxLength = Math.Max(maxLength, slots[i].Length);
            work += (long)slots[i].Length * heads * headDim * 2;
        }
        var job = new Job
        {
            Q = q, NewK = newK, NewV = newV, Output = output, Slots = slots,
            N = n, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, MaxLength = maxLength, Scale = 1f / MathF.Sqrt(headDim),
        };
        int items = n * kvHeads;
        int parts = work < ParallelThreshold ? 1 : Math.Min(items, TorchSharp.torch.get_num_threads());
        KernelThreads.Run(&Part, &job, parts, parts);
    }

    // Items (token, KV head) [i0, i1) of n·n_kv, split evenly.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Part(void* operands, int part, int parts)
    {
        ref readonly var job = ref *(Job*)operands;
        int items = job.N * job.KvHeads;
        int i0 = (int)((long)items * part / parts), i1 = (int)((long)items * (part + 1) / parts);
        int rep = job.Heads / job.KvHeads;
        var buffer = ArrayPool<float>.Shared.Rent(job.MaxLength);   // one head's scores, then probabilities
        try
        {
            fixed (float* scratch = buffer)
                for (int item = i0; item < i1; item++) Item(job, item / job.KvHeads, item % job.KvHeads, rep, scratch);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Item(in Job job, int i, int g, int rep, float* scratch)
    {
        int hd = job.HeadDim;
        var slot = job.Slots[i];
        float* keys = slot.Keys + (long)g * slot.Capacity * hd, values = slot.Values + (long)g * slot.Capacity * hd;
        if (slot.WriteAt >= 0)
        {
            long src = ((long)i * job.KvHeads + g) * hd;
            Buffer.MemoryCopy(job.NewK + src, keys + (long)slot.WriteAt * hd, (long)hd * sizeof(float), (long)hd * sizeof(float));
            Buffer.MemoryCopy(job.NewV + src, values + (long)slot.WriteAt * hd, (long)hd * sizeof(float), (long)hd * sizeof(float));
        }
        int length = slot.Length;
        float* q = job.Q + ((long)i * job.Heads + (long)g * rep) * hd;        // the rep query heads of KV head g, [rep, hd]
        float* output = job.Output + ((long)i * job.Heads + (long)g * rep) * hd;
        for (int j = 0; j < rep; j++)
        {
            float* qj = q + (long)j * hd, s = scratch;
            // s[t] = q_j · k_t / √hd, four keys at a time (four chains in flight, one horizontal sum for the four)
            int t = 0;
            if (Avx2.IsSupported && Fma.IsSupported && hd % 8 == 0)
            {
                var scale4 = Vector128.Create(job.Scale);
                for (; t + 4 <= length; t += 4) Sse.Store(s + t, Sse.Multiply(Dot4(qj, keys + (long)t * hd, hd), scale4));
            }
            for (; t < length; t++) s[t] = Dot(qj, keys + (long)t * hd, hd) * job.Scale;
            // softmax over t (the maximum subtracted first)
            float max = float.NegativeInfinity;
            for (t = 0; t < length; t++) max = MathF.Max(max, s[t]);
            float total = 0;
            for (t = 0; t < length; t++) { s[t] = MathF.Exp(s[t] - max); total += s[t]; }
            float inv = 1f / total;
            for (t = 0; t < length; t++) s[t] *= inv;
            WeightedSum(s, values, length, hd, output + (long)j * hd);
        }
    }

    // Four scores q · k_t for the four keys k0 … k0 + 3·hd (hd a multiple of 8).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4(float* q, float* k0, int hd)
    {
        float* k1 = k0 + hd, k2 = k1 + hd, k3 = k2 + hd;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int c = 0; c < hd; c += 8)
        {
            var qv = Avx.LoadVector256(q + c);
            a0 = Fma.MultiplyAdd(qv, Avx.LoadVector256(k0 + c), a0);
            a1 = Fma.MultiplyAdd(qv, Avx.LoadVector256(k1 + c), a1);
            a2 = Fma.MultiplyAdd(qv, Avx.LoadVector256(k2 + c), a2);
            a3 = Fma.MultiplyAdd(qv, Avx.LoadVector256(k3 + c), a3);
        }
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        return Sse.Add(h.GetLower(), h.GetUpper());
    }

    // output[0, hd) = Σ_t p[t] · v_t, 32 columns at a time in registers (four chains), the rest 8 or 1 at a time.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightedSum(float* p, float* values, int length, int hd, float* output)
    {
        int c = 0;
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            for (; c + 32 <= hd; c += 32)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                float* v = values + c;
                for (int t = 0; t < length; t++, v += hd)
                {
                    var pt = Vector256.Create(p[t]);
                    a0 = Fma.MultiplyAdd(pt, Avx.LoadVector256(v), a0);
                    a1 = Fma.MultiplyAdd(pt, Avx.LoadVector256(v + 8), a1);
                    a2 = Fma.MultiplyAdd(pt, Avx.LoadVector256(v + 16), a2);
                    a3 = Fma.MultiplyAdd(pt, Avx.LoadVector256(v + 24), a3);
                }
                Avx.Store(output + c, a0); Avx.Store(output + c + 8, a1); Avx.Store(output + c + 16, a2); Avx.Store(output + c + 24, a3);
            }
            for (; c + 8 <= hd; c += 8)
            {
                var a = Vector256<float>.Zero;
                for (int t = 0; t < length; t++) a = Fma.MultiplyAdd(Vector256.Create(p[t]), Avx.LoadVector256(values + (long)t * hd + c), a);
                Avx.Store(output + c, a);
            }
        }
        for (; c < hd; c++)
        {
            float a = 0;
            for (int t = 0; t < length; t++) a += p[t] * values[(long)t * hd + c];
            output[c] = a;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int d)
    {
        int k = 0;
        float s = 0;
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= d; k += 8) acc = Fma.MultiplyAdd(Avx.LoadVector256(a + k), Avx.LoadVector256(b + k), acc);
            s = Vector256.Sum(acc);
        }
        for (; k < d; k++) s += a[k] * b[k];
        return s;
    }
}
