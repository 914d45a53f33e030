using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// Rotary position embedding tables (HF Llama convention: the pair (i, i + d/2) rotates together).
/// Not a module: the tables are derived from the config, never saved, and indexed by absolute position —
/// a token keeps its original position when an MoR recursion runs on a compacted subset of the sequence.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor cosTable;   // [maxPos, hd] float32
    private readonly Tensor sinTable;   // [maxPos, hd] float32
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
        sinTable = emb.sin().to_type(ScalarType.Float32).DetachFromDisposeScope();
    }

    /// <summary>cos/sin for absolute positions [B, T] → each [B, 1, T, hd] (broadcast over heads), in <paramref name="dtype"/>.</summary>
    public (Tensor cos, Tensor sin) At(Tensor positions, ScalarType dtype)
    {
        long b = positions.shape[0], t = positions.shape[1];
        var flat = positions.reshape(-1);
        var cos = cosTable.index_select(0, flat).view(b, 1, t, -1).to_type(dtype);
        var sin = sinTable.index_select(0, flat).view(b, 1, t, -1).to_type(dtype);
        return (cos, sin);
    }

    /// <summary>x [B, H, T, hd] rotated by the tables of its positions.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var x1 = x[.., .., .., ..(int)half];
        var x2 = x[.., .., .., (int)half..];
        var rotated = torch.cat([-x2, x1], dim: -1);
        return x * cos + rotated * sin;
    }

    public void Dispose()
    {
        cosTable.Dispose();
        sinTable.Dispose();
    }
}
