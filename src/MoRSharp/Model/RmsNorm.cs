using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// Weight-only RMSNorm as in HF Llama: normalised in float32, cast back to the input dtype, then scaled.
/// (TorchSharp has no nn.RMSNorm.)
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;   // [d], initialised to 1
    private readonly double eps;

    public RmsNorm(int dim, double eps) : base(nameof(RmsNorm))
    {
        weight = new Parameter(torch.ones(dim));
        this.eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public double Eps => eps;

    public override Tensor forward(Tensor x)          // [..., d]
    {
        if (x.dtype == ScalarType.Float32 && weight.dtype == ScalarType.Float32)
        {
            // fp32 fast path (decoding runs it per token per layer): no casts, no scope; the temporaries go to the caller's scope
            using var rms = x.square().mean([-1L], keepdim: true).add_(eps).rsqrt_();
            return torch.is_grad_enabled() ? weight * (x * rms) : (x * rms).mul_(weight);
        }
        using var scope = NewDisposeScope();
        var xf = x.to_type(ScalarType.Float32);
        var variance = xf.pow(2).mean([-1L], keepdim: true);
        var normed = (xf * torch.rsqrt(variance + eps)).to_type(x.dtype);
        return (weight.to_type(x.dtype) * normed).MoveToOuterDisposeScope();
    }
}
