using TorchSharp;
using TorchSharp.Modules;
using MoRSharp.Kernels;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// x · Wᵀ for few rows (decoding) computed as (W · xᵀ)ᵀ. libtorch's CPU <c>linear</c> hands BLAS a short, wide product
/// (m × d by d × n) that it runs far below memory speed when m is small; the same product with the operands swapped (a
/// tall, thin n × d by d × m) streams the weight faster. Measured on this project's machine with weights not in cache
/// (decoding reads every weight once per token; `MoRSharp.Bench projection-paths`): about 2× for 4 rows, 1.1–1.3× for 32,
/// 0.8–1.2× for a single row of a layer, and 1.5–4× for the LM head
/// (docs/benchmarks.md, "Where decode time goes on this CPU"). A single row is padded to two because libtorch sends
/// a one-column product down its slower matrix-vector path. The result is a transposed view ([m, n] with strides (1, m));
/// every consumer here accepts strided input. Values equal <c>linear</c>'s up to float rounding.
/// Where the CPU has AVX2/FMA, <see cref="SmallGemm"/> (MoRSharp's own decode kernels) takes these products instead, and
/// the swapped product remains the path for other CPUs and for LM-head calls with more than 64 rows.
/// </summary>
public static class InferenceLinear
{
    /// <summary>Rows up to which the swapped product is used for layer projections (measured better for 1–64; for 2,048 rows
    /// — training batches — <c>linear</c> is faster).</summary>
    public const long MaxRows = 64;

    /// <summary>layer(x) for x [..., d] under no-grad with at most <see cref="MaxRows"/> rows: <see cref="SmallGemm"/> where the
    /// CPU has AVX2/FMA (a new contiguous tensor), else the swapped product (a strided view); otherwise <c>layer.forward</c>.
    /// A weight stored narrower than x (bfloat16 for decoding) is read as is by the kernels and widened for libtorch.</summary>
    public static Tensor Forward(Linear layer, Tensor x)
    {
        var weight = layer.weight!;
        if (layer.bias is null && SmallGemm.Accepts(x, weight)) return SmallGemm.Matmul(x, weight);   // no-grad only
        // weights stored narrower than the activations (MoRForCausalLM.StoreWeightsAs): widened for this call
        using var widened = weight.dtype == x.dtype ? null : weight.to_type(x.dtype);
        bool swapped = !torch.is_grad_enabled() && layer.bias is null && x.numel() / Math.Max(1, x.size(-1)) <= MaxRows;
        if (swapped) return Swapped(x, widened ?? weight);
        return widened is null ? layer.forward(x) : nn.functional.linear(x, widened, layer.bias);
    }

    /// <summary>x [..., d] · W[n, d]ᵀ → [..., n] as (W · xᵀ)ᵀ, for any number of rows (autograd flows through it).</summary>
    public static Tensor Swapped(Tensor x, Tensor weight)
    {
        long d = x.shape[^1], m = x.numel() / d, n = weight.shape[0];
        var outShape = x.shape[..^1].Append(n).ToArray();
        using var scope = NewDisposeScope();
        var rows = x.reshape(m, d);                                     // [m, d]
        if (m == 1) rows = torch.cat([rows, rows], 0);                  // [2, d]
        var y = torch.matmul(weight, rows.t()).t();                     // [m, n], strides (1, m)
        if (m == 1) y = y.narrow(0, 0, 1);
        return y.view(outShape).MoveToOuterDisposeScope();
    }
}
