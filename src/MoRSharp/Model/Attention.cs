using MoRSharp.Caching;
using MoRSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// What one attention call needs besides its input. The queries are the T tokens passed in (in position order);
/// <see cref="Cos"/>/<see cref="Sin"/> are their tables at their absolute positions (the sine signed, as
/// <see cref="RotaryEmbedding.At"/> returns it).
/// </summary>
public sealed class AttentionInputs
{
    public required Tensor Cos;              // [B, 1, T, hd]
    public required Tensor Sin;              // [B, 1, T, hd]
    /// <summary>Boolean mask [B, 1, T, S] (true = may attend); null = causal among the T tokens themselves.</summary>
    public Tensor? Mask;
    /// <summary>Recursive KV sharing: keys/values [B, n_kv, S, hd] (post-RoPE) written by recursion 1; this call projects only Q.</summary>
    public (Tensor key, Tensor value)? SharedKv;
    /// <summary>Ask the call to hand back its own post-RoPE keys/values (recursion 1 under KV sharing).</summary>
    public bool CaptureKv;
    /// <summary>Decoding with a KV cache: this call writes its keys/values to (or only reads) one slot; attention reads the slot.</summary>
    public KvCacheAccess? Cache;
    /// <summary>
    /// Batching engine: the call's tokens (one per sequence, T = 1) belong to different slots — e.g. different recursions —
    /// and each group attends to its own slot. Projections and the MLP still run once over all tokens.
    /// </summary>
    public IReadOnlyList<KvCacheGroup>? CacheGroups;
    /// <summary>False for bidirectional encoders: with no <see cref="Mask"/>, every query attends to every key.</summary>
    public bool Causal = true;
}

/// <summary>
/// One slot's share of a mixed call: <see cref="Members"/> [m] indexes the call's batch, <see cref="MemberRows"/> [m] are their
/// cache rows. <see cref="Access"/> covers every cache row (counts 1 for member rows, 0 otherwise): attention runs over all
/// rows as a view of the cache — cheaper than copying the members' rows out — and only the members' outputs are kept.
/// </summary>
public sealed record KvCacheGroup(KvCacheAccess Access, Tensor? Members, Tensor? MemberRows)
{
    /// <summary>Token i of the call is cache row i, for every row: no scatter/gather needed (and the index tensors may be null).</summary>
    public bool Identity { get; init; }
    /// <summary>
    /// The group's tokens on the host, for the decode attention kernel (<see cref="KvCache.AttendDecode"/>): each member's
    /// index in the call, its cache row and its absolute position. When every group of a call has them, attention runs
    /// without the full-batch tensors above; a caller that gives them may leave <see cref="Members"/>, <see cref="MemberRows"/>
    /// and a read-only access's query positions null (the tensor path builds them from these when it runs).
    /// </summary>
    public (int Token, int Row, long Position)[]? HostMembers { get; init; }
}

/// <summary>
/// One attention call's view of a KV cache: the slot, the cache rows of the B sequences in the call, how many of each row's
/// T tokens are real (the rest is padding), whether the call writes, and (read-only slots) the queries' absolute positions [B, T].
/// </summary>
public sealed record KvCacheAccess(KvCache Cache, int Slot, IReadOnlyList<long> Rows, long[] Counts, bool Write, Tensor? QueryPositions);

/// <summary>Grouped-query causal self-attention with RoPE, no biases (HF <c>LlamaAttention</c>).</summary>
public sealed class Attention : nn.Module
{
    private readonly Linear q_proj;   // d → heads·hd
    private readonly Linear k_proj;   // d → kv_heads·hd
    private readonly Linear v_proj;   // d → kv_heads·hd
    private readonly Linear o_proj;   // heads·hd → d
    private readonly int numHeads, numKvHeads, headDim;

    public Attention(int hidden, int numHeads, int numKvHeads) : base(nameof(Attention))
    {
        this.numHeads = numHeads;
        this.numKvHeads = numKvHeads;
        headDim = hidden / numHeads;
        q_proj = nn.Linear(hidden, numHeads * headDim, hasBias: false);
        k_proj = nn.Linear(hidden, numKvHeads * headDim, hasBias: false);
        v_proj = nn.Linear(hidden, numKvHeads * headDim, hasBias: false);
        o_proj = nn.Linear(numHeads * headDim, hidden, hasBias: false);
        RegisterComponents();
    }

    /// <summary>x [B, T, d] → ([B, T, d], captured post-RoPE K/V [B, n_kv, T, hd] when asked). With <paramref name="norm"/>, x is
    /// the un-normalised residual stream and the norm is applied first; with <paramref name="residual"/>, the output is
    /// residual + attention. Under no-grad both go into the decode kernels (<see cref="SmallGemm"/>).</summary>
    public (Tensor output, Tensor? key, Tensor? value) Forward(Tensor x, AttentionInputs inputs, RmsNorm? norm = null, Tensor? residual = null)
    {
        long b = x.size(0), t = x.size(1);
        using var scope = NewDisposeScope();
        bool needKv = inputs.CacheGroups is not null || (inputs.Cache is { } access ? access.Write : inputs.SharedKv is null);
        var (q, newK, vh) = Project(x, norm, needKv, inputs);                               // q [B, H, T, hd], k/v [B, n_kv, T, hd]
        if (inputs.CacheGroups is { } groups) return (GroupedAttention(q, newK!, vh!, inputs, groups, residual), null, null);
        if (t == 1 && inputs.Cache is { Write: true } one && one.Counts.All(c => c == 1) && DecodeTokens(q, one) is { } tokens)
        {
            var att = one.Cache.AttendDecode(tokens, q, newK!, vh!);                        // one new token per row, as in the engine
            return (Output(Merge(att, b, 1), residual).MoveToOuterDisposeScope(), null, null);
        }
        Tensor k, v;                                                                        // [B, n_kv, S, hd]
        Tensor? mask = inputs.Mask;
        if (inputs.Cache is { } c)
            (k, v, mask) = c.Cache.Update(c.Slot, c.Rows, newK ?? q, vh ?? q, c.Counts, c.Write, c.QueryPositions);   // q: unused when read-only
        else if (inputs.SharedKv is { } shared)
            (k, v) = shared;
        else
            (k, v) = (newK!, vh!);
        Tensor attn;                                                                        // [B, H, T, hd]
        if (t == 1 && !torch.is_grad_enabled() && (mask is null || mask.size(1) == 1))
            attn = SingleQueryAttention(q, k, v, mask);
        else
        {
            var kx = RepeatKv(k);                                                           // [B, H, S, hd]
            var vx = RepeatKv(v);
            attn = mask is null
                ? nn.functional.scaled_dot_product_attention(q, kx, vx, is_casual: inputs.Causal && t > 1)
                : nn.functional.scaled_dot_product_attention(q, kx, vx, attn_mask: mask);
        }
        var output = Output(Merge(attn, b, t), residual);                                    // [B, T, d]
        output.MoveToOuterDisposeScope();
        if (inputs.CaptureKv && inputs.SharedKv is null)
        {
            k.MoveToOuterDisposeScope();
            v.MoveToOuterDisposeScope();
            return (output, k, v);
        }
        return (output, null, null);
    }

    /// <summary>x [B, T, d] → q [B, H, T, hd] and (when asked) k, v [B, n_kv, T, hd], with RoPE applied to q and k. Under
    /// no-grad with the decode kernels: the norm, the three products and RoPE in one call.</summary>
    private (Tensor q, Tensor? k, Tensor? v) Project(Tensor x, RmsNorm? norm, bool needKv, AttentionInputs inputs)
    {
        bool fused = (norm is null || norm.Weight.dtype == ScalarType.Float32)
                     && (needKv ? SmallGemm.Accepts(x, q_proj.weight!, k_proj.weight!, v_proj.weight!) : SmallGemm.Accepts(x, q_proj.weight!))
                     && SmallGemm.AcceptsRope(x, inputs.Cos, inputs.Sin, headDim);
        if (fused)
        {
            Tensor[] weights = needKv ? [q_proj.weight!, k_proj.weight!, v_proj.weight!] : [q_proj.weight!];
            var ys = SmallGemm.ProjectRotated(x, norm?.Weight, norm?.Eps ?? 0, weights, inputs.Cos, inputs.Sin, headDim, rotated: 2);
            return (AsHeads(ys[0], numHeads), needKv ? AsHeads(ys[1], numKvHeads) : null, needKv ? AsHeads(ys[2], numKvHeads) : null);
        }
        var normed = norm is null ? x : norm.forward(x);
        var q = RotaryEmbedding.Apply(Heads(q_proj, normed, numHeads), inputs.Cos, inputs.Sin);
        if (!needKv) return (q, null, null);
        return (q, RotaryEmbedding.Apply(Heads(k_proj, normed, numKvHeads), inputs.Cos, inputs.Sin), Heads(v_proj, normed, numKvHeads));
    }

    /// <summary>o_proj(merged) [B, T, d], plus the residual when given (one kernel call under no-grad where available).</summary>
    private Tensor Output(Tensor merged, Tensor? residual)
    {
        if (residual is null) return InferenceLinear.Forward(o_proj, merged);
        if (SmallGemm.Accepts(merged, o_proj.weight!)) return SmallGemm.ProjectAdd(merged, o_proj.weight!, residual);
        var o = InferenceLinear.Forward(o_proj, merged);
        return torch.is_grad_enabled() ? o + residual : o.add_(residual);
    }

    /// <summary>x [B, T, d] → proj(x) as heads [B, n, T, hd].</summary>
    private Tensor Heads(Linear proj, Tensor x, int n) => AsHeads(InferenceLinear.Forward(proj, x), n);

    /// <summary>y [B, T, n·hd] → heads [B, n, T, hd]. One token per row (decoding) needs no transpose: [B, 1, n, hd] and
    /// [B, n, 1, hd] are the same memory, so one reshape replaces view + transpose (a copy only when the product came back as
    /// a strided view that cannot be split into heads in place).</summary>
    private Tensor AsHeads(Tensor y, int n)
    {
        long b = y.size(0), t = y.size(1);
        return t == 1 ? y.reshape(b, n, 1, headDim) : y.reshape(b, t, n, headDim).transpose(1, 2);
    }

    /// <summary>Attention output [B, H, T, hd] → [B, T, H·hd] (a view when T = 1).</summary>
    private Tensor Merge(Tensor attn, long b, long t) =>
        t == 1 && attn.is_contiguous() ? attn.view(b, 1, numHeads * headDim) : attn.transpose(1, 2).reshape(b, t, numHeads * headDim);

    /// <summary>q [n, H, 1, hd], newK [n, n_kv, 1, hd] (both rotated), newV [n, n_kv, 1, hd] → output [n, 1, d] (plus the residual when
    /// given); each group reads and writes its own slot.</summary>
    private Tensor GroupedAttention(Tensor q, Tensor newK, Tensor newV, AttentionInputs inputs, IReadOnlyList<KvCacheGroup> groups, Tensor? residual)
    {
        long n = q.size(0);
        if (DecodeTokens(q, groups) is { } tokens)
        {
            var att = groups[0].Access.Cache.AttendDecode(tokens, q, newK, newV);          // [n, H, 1, hd]
            return Output(Merge(att, n, 1), residual).MoveToOuterDisposeScope();
        }
        if (groups.Count == 1 && groups[0].Identity)
        {
            var a = groups[0].Access;
            var (k1, v1, mask1) = a.Cache.Update(a.Slot, a.Rows, newK, newV, a.Counts, a.Write, QueryPositions(groups[0]));
            var att = SingleQueryAttention(q, k1, v1, mask1);
            return Output(Merge(att, n, 1), residual).MoveToOuterDisposeScope();
        }
        var attn = torch.zeros_like(q);                                                     // [n, H, 1, hd]
        foreach (var g in groups)
        {
            var (members, memberRows) = MemberIndex(g);
            long rows = g.Access.Cache.Rows;
            var qAll = torch.zeros(rows, numHeads, 1, headDim, dtype: q.dtype).index_copy_(0, memberRows, q.index_select(0, members));
            var kAll = torch.zeros(rows, numKvHeads, 1, headDim, dtype: q.dtype).index_copy_(0, memberRows, newK.index_select(0, members));
            var vAll = torch.zeros(rows, numKvHeads, 1, headDim, dtype: q.dtype).index_copy_(0, memberRows, newV.index_select(0, members));
            var (k, v, mask) = g.Access.Cache.Update(g.Access.Slot, g.Access.Rows, kAll, vAll, g.Access.Counts, g.Access.Write, QueryPositions(g));
            var a = SingleQueryAttention(qAll, k, v, mask);                                 // [rows, H, 1, hd]
            attn.index_copy_(0, members, a.index_select(0, memberRows));
        }
        return Output(Merge(attn, n, 1), residual).MoveToOuterDisposeScope();
    }

    /// <summary>A group's member index tensors: as given, or built from its host members (callers that expect the decode
    /// kernel leave the tensors out).</summary>
    private static (Tensor members, Tensor memberRows) MemberIndex(KvCacheGroup g) =>
        g.Members is { } m && g.MemberRows is { } r ? (m, r)
        : g.HostMembers is { } h ? (torch.tensor(h.Select(x => (long)x.Token).ToArray()), torch.tensor(h.Select(x => (long)x.Row).ToArray()))
        : throw new ArgumentException("a cache group that is not the identity needs its members: index tensors or host members");

    /// <summary>A read-only group's query positions per cache row [rows, 1]: as given, or from its host members.</summary>
    private static Tensor? QueryPositions(KvCacheGroup g)
    {
        var a = g.Access;
        if (a.Write || a.QueryPositions is not null || g.HostMembers is not { } h) return a.QueryPositions;
        var positions = new long[a.Cache.Rows];
        foreach (var (_, row, position) in h) positions[row] = position;
        return torch.tensor(positions).unsqueeze(1);
    }

    /// <summary>
    /// The call's tokens for the decode attention kernel, or null where it does not apply (gradients, not float32, kernels
    /// off, a group without host members, groups on different caches, or groups that do not cover each token exactly once).
    /// </summary>
    private static DecodeToken[]? DecodeTokens(Tensor q, IReadOnlyList<KvCacheGroup> groups)
    {
        var cache = groups[0].Access.Cache;
        if (!DecodeKernelApplies(q, cache)) return null;
        long n = q.size(0);
        var tokens = new DecodeToken[n];
        var covered = new bool[n];
        int count = 0;
        foreach (var g in groups)
        {
            if (g.HostMembers is not { } members || !ReferenceEquals(g.Access.Cache, cache)) return null;
            foreach (var (token, row, position) in members)
            {
                if (token < 0 || token >= n || covered[token]) return null;
                covered[token] = true;
                tokens[token] = new DecodeToken(g.Access.Slot, row, g.Access.Write, position);
                count++;
            }
        }
        return count == n ? tokens : null;
    }

    /// <summary>A writing cache access with one new token per row (single-sequence decoding): token i is cache row Rows[i].</summary>
    private static DecodeToken[]? DecodeTokens(Tensor q, KvCacheAccess access)
    {
        if (!DecodeKernelApplies(q, access.Cache) || access.Rows.Count != q.size(0)) return null;
        var tokens = new DecodeToken[access.Rows.Count];
        for (int i = 0; i < tokens.Length; i++)
        {
            int row = (int)access.Rows[i];
            tokens[i] = new DecodeToken(access.Slot, row, true, access.Cache.Position(row));
        }
        return tokens;
    }

    private static bool DecodeKernelApplies(Tensor q, KvCache cache) =>
        SmallGemm.IsEnabled && !torch.is_grad_enabled() && q.dtype == ScalarType.Float32 && q.device_type == DeviceType.CPU
        && cache.DType == ScalarType.Float32;

    /// <summary>
    /// One query per row (decoding): q [B, H, 1, hd], k/v [B, n_kv, S, hd], mask null or [B, 1, 1, S] → [B, H, 1, hd].
    /// With grouped-query attention the H/n_kv query heads that share a KV head become that head's H/n_kv queries
    /// ([B, n_kv, H/n_kv, hd]; query head j = g·(H/n_kv) + r reads KV head g), so the cache is read in place instead of
    /// being copied H/n_kv times by <see cref="RepeatKv"/> on every layer of every step (for the 135M shape at batch 32,
    /// about 10 MB per layer per step).
    /// </summary>
    private Tensor SingleQueryAttention(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        if (numKvHeads == numHeads)
            return mask is null ? nn.functional.scaled_dot_product_attention(q, k, v) : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        long b = q.size(0);
        int rep = numHeads / numKvHeads;
        var grouped = q.reshape(b, numKvHeads, rep, headDim);                               // [B, n_kv, rep, hd]
        var o = mask is null
            ? nn.functional.scaled_dot_product_attention(grouped, k, v)
            : nn.functional.scaled_dot_product_attention(grouped, k, v, attn_mask: mask);   // the mask broadcasts over the rep queries
        return o.reshape(b, numHeads, 1, headDim);
    }

    /// <summary>[B, n_kv, S, hd] → [B, H, S, hd]: query head j reads KV head j / (H / n_kv).</summary>
    private Tensor RepeatKv(Tensor kv)
    {
        if (numKvHeads == numHeads) return kv;
        int rep = numHeads / numKvHeads;
        long b = kv.size(0), s = kv.size(2);
        return kv.unsqueeze(2).expand(b, numKvHeads, rep, s, headDim).reshape(b, numHeads, s, headDim);
    }
}
