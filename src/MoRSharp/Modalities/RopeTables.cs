using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Modalities;

/// <summary>
/// Rotary tables for an encoder's token sequence, indexed by the token's place in the sequence (class token at 0).
/// <para><b>Why RoPE and not learned positions:</b> MoR runs a recursion on a gathered subset of the tokens; the core's
/// <see cref="Routing.RecursionBlock"/> hands the block the subset's original indices, and rotary tables looked up by those
/// indices keep every token's position exactly, with no parameters and with relative (translation-equivariant) attention.
/// A learned table would be added once at the input and work as well for routing; RoPE keeps the encoder a Llama stack.</para>
/// <para><b>Audio</b> (<see cref="Sequence"/>): 1-D RoPE over the frame index, the core <see cref="RotaryEmbedding"/>.
/// <b>Images</b> (<see cref="Grid"/>): 2-D axial RoPE. In the core's rotate-half convention, pair (i, i + hd/2) turns by
/// angle θ_i; the first hd/4 pairs turn by row·f_j and the last hd/4 by column·f_j, f_j = θ^(−j/(hd/4)), so the query–key
/// score depends on the row offset through one half of the pairs and on the column offset through the other
/// (head dim divisible by 4). The class token gets angle 0 (no rotation): it is not on the grid.</para>
/// </summary>
public sealed class RopeTables : IDisposable
{
    private readonly Tensor cosTable;   // [N, hd] float32
    private readonly Tensor sinTable;   // [N, hd] float32, signed (RotaryEmbedding.SignedSin)

    public int Length { get; }

    private RopeTables(Tensor angles)   // [N, hd/2] float64
    {
        Length = (int)angles.shape[0];
        using var scope = NewDisposeScope();
        var emb = torch.cat([angles, angles], dim: -1);   // [N, hd]: pair (i, i + hd/2) shares angle i
        cosTable = emb.cos().to_type(ScalarType.Float32).DetachFromDisposeScope();
        sinTable = RotaryEmbedding.SignedSin(emb.sin()).to_type(ScalarType.Float32).DetachFromDisposeScope();
    }

    private RopeTables(Tensor cos, Tensor sin)
    {
        Length = (int)cos.shape[0];
        cosTable = cos;
        sinTable = sin;
    }

    /// <summary>1-D positions 0..length−1: the core's Llama RoPE.</summary>
    public static RopeTables Sequence(int headDim, int length, double theta)
    {
        using var rope = new RotaryEmbedding(headDim, length, theta);
        using var scope = NewDisposeScope();
        var (cos, sin) = rope.At(torch.arange(length, dtype: ScalarType.Int64).unsqueeze(0), ScalarType.Float32);   // [1, 1, N, hd]
        return new RopeTables(cos.view(length, headDim).DetachFromDisposeScope(), sin.view(length, headDim).DetachFromDisposeScope());
    }

    /// <summary>2-D axial positions of a rows × cols patch grid in row-major order, after an optional class token.</summary>
    public static RopeTables Grid(int headDim, int rows, int cols, double theta, bool classToken)
    {
        if (headDim % 4 != 0)
            throw new Config.ConfigException($"hidden_size / num_attention_heads = {headDim}: 2-D RoPE for image patches needs a head dimension divisible by 4");
        int quarter = headDim / 4, offset = classToken ? 1 : 0, n = rows * cols + offset;
        var angles = new double[n, headDim / 2];
        for (int p = 0; p < rows * cols; p++)
        {
            int row = p / cols, col = p % cols;
            for (int j = 0; j < quarter; j++)
            {
                double f = Math.Pow(theta, -(double)j / quarter);
                angles[p + offset, j] = row * f;
                angles[p + offset, quarter + j] = col * f;
            }
        }
        using var t = torch.tensor(angles);
        return new RopeTables(t);
    }

    /// <summary>cos/signed sin of the tokens at sequence indices [B, k] → each [B, 1, k, hd] in <paramref name="dtype"/>.</summary>
    public (Tensor cos, Tensor sin) At(Tensor positions, ScalarType dtype)
    {
        long b = positions.shape[0], k = positions.shape[1];
        var flat = positions.reshape(-1);
        return (cosTable.index_select(0, flat).view(b, 1, k, -1).to_type(dtype), sinTable.index_select(0, flat).view(b, 1, k, -1).to_type(dtype));
    }

    /// <summary>The whole sequence for a batch of <paramref name="batch"/>: each [B, 1, N, hd].</summary>
    public (Tensor cos, Tensor sin) All(long batch, ScalarType dtype) =>
        (cosTable.to_type(dtype).unsqueeze(0).unsqueeze(0).expand(batch, 1, Length, -1),
         sinTable.to_type(dtype).unsqueeze(0).unsqueeze(0).expand(batch, 1, Length, -1));

    public void Dispose()
    {
        cosTable.Dispose();
        sinTable.Dispose();
    }
}
