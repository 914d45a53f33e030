using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// Rotary position embedding tables (HF Llama convention: the pair (i, i + d/2) rotates together).
/// The sine table is stored <i>signed</i> — its first half negated — so that HF's <c>rotate_half(x) · sin</c> becomes
/// <c>roll(x, d/2) · signed_sin</c>: one <c>roll</c> and one <c>addcmul</c> instead of two slices, a negation, a concatenation
/// and three arithmetic calls (2.2× faster for a decoding token, 1.7× for a training batch; same values up to rounding).
/// Not a module: the tables are derived from the config, never saved, and indexed by absolute position —
/// a token keeps its original position when an MoR recursion runs on a compacted subset of the sequence.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor cosTable;   // [maxPos, hd] float32
    private readonly Tensor sinTable;   // [maxPos, hd] float32, first half negated (see SignedSin)
    public int MaxPositions { get; }

    public RotaryEmbedding(int headDim, int maxPositions, double theta)
    {
        MaxPositions = maxPositions;
        using var scope = NewDisposeScope();
        var invFreq = 1.0 / torch.pow(theta, torch.arange(0, headDim, 2, dtype: ScalarType.Float64) / headDim);   // [hd/2]
        var t = torch.arange(maxPositions, dtype: ScalarType.Float64);
        var freqs = torch.outer(t, invFreq);                          // [maxPos, hd/2]
        var emb = torch.cat([freqs, freqs], dim: -1);                  // [maxPos, hd]
        cosTable = emb.cos().to_type(ScalarType.Float32).DetachFromDisposeScope();
        sinTable = SignedSin(emb.sin()).to_type(ScalarType.Float32).DetachFromDisposeScope();
    }

    /// <summary>sin [..., hd] → the same with its first half negated: what <see cref="Apply"/> multiplies the rolled input by.</summary>
    public static Tensor SignedSin(Tensor sin)
    {
        long half = sin.shape[^1] / 2;
        return torch.cat([-sin.narrow(-1, 0, half), sin.narrow(-1, half, half)], dim: -1);
    }

    /// <summary>cos/signed sin for absolute positions [B, T] → each [B, 1, T, hd] (broadcast over heads), in <paramref name="dtype"/>.</summary>
    public (Tensor cos, Tensor sin) At(Tensor positions, ScalarType dtype)
    {
        long b = positions.shape[0], t = positions.shape[1];
        var flat = positions.reshape(-1);
        var cos = cosTable.index_select(0, flat).view(b, 1, t, -1).to_type(dtype);
        var sin = sinTable.index_select(0, flat).view(b, 1, t, -1).to_type(dtype);
        return (cos, sin);
    }

    /// <summary>x [B, H, T, hd] rotated by the tables of its positions (<paramref name="signedSin"/> from <see cref="At"/>):
    /// x·cos + rotate_half(x)·sin, where rotate_half(x) = cat(−x₂, x₁) and roll(x, d/2) = cat(x₂, x₁).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        using var rolled = x.roll(x.shape[^1] / 2, -1);
        using var scaled = x * cos;
        return torch.addcmul(scaled, rolled, signedSin, 1);
    }

    public void Dispose()
    {
        cosTable.Dispose();
        sinTable.Dispose();
    }
}
