using static TorchSharp.torch;

namespace MoRSharp.Routing;

/// <summary>
/// Runs the shared block of recursion <c>r</c> on a compacted, position-sorted set of tokens.
/// <paramref name="positions"/> [B, k] are their indices in the sequence (sorted; RoPE and causal order follow them); null means
/// every position in order. <paramref name="valid"/> [B, k] marks the real tokens of a ragged selection (padding comes after
/// them in each row); null means all are real. Padded rows' outputs are discarded by the caller.
/// </summary>
public delegate Tensor RecursionBlock(int recursion, Tensor hidden, Tensor? positions, Tensor? valid);

/// <summary>Gather/scatter along the sequence axis, and turning a ragged active mask into a padded index set.</summary>
public static class TokenSelection
{
    /// <summary>h [B, N, d], idx [B, k] → [B, k, d].</summary>
    public static Tensor Gather(Tensor h, Tensor idx) =>
        h.gather(1, idx.unsqueeze(-1).expand(idx.shape[0], idx.shape[1], h.shape[2]));

    /// <summary>h [B, N, d] with src [B, k, d] added at rows idx [B, k] (out of place).</summary>
    public static Tensor ScatterAdd(Tensor h, Tensor idx, Tensor src) =>
        h.scatter_add(1, idx.unsqueeze(-1).expand(src.shape), src);

    /// <summary>
    /// active [B, N] bool → (idx [B, kmax] positions of active tokens sorted ascending, then inactive ones as padding;
    /// valid [B, kmax] bool; kmax = the largest active count). Padding sits after every real token, so causal attention
    /// among the compacted tokens never lets a real token see it; the padded rows' outputs are discarded.
    /// </summary>
    public static (Tensor idx, Tensor valid, long kmax) Compact(Tensor active)
    {
        long n = active.shape[1];
        long kmax = active.sum(1).max().item<long>();
        if (kmax == 0) return (torch.empty(0), torch.empty(0), 0);
        using var scope = NewDisposeScope();
        var pos = torch.arange(n, dtype: ScalarType.Int64).unsqueeze(0).expand_as(active);
        var key = torch.where(active, pos, pos + n);                               // active first, each group in position order
        var (sortedKey, _) = key.topk((int)kmax, dim: 1, largest: false, sorted: true);
        var idx = sortedKey.remainder(n);
        var valid = sortedKey.lt(n);
        return (idx.MoveToOuterDisposeScope(), valid.MoveToOuterDisposeScope(), kmax);
    }

    /// <summary>[B, k] index set → [B, N] bool mask of the selected rows (valid ones only).</summary>
    public static Tensor ToMask(Tensor idx, Tensor? valid, long n)
    {
        var mask = torch.zeros(idx.shape[0], n, dtype: ScalarType.Bool);
        var src = valid ?? torch.ones(idx.shape, dtype: ScalarType.Bool);
        return mask.scatter(1, idx, src);
    }
}
