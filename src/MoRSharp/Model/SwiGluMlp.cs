using TorchSharp;
using TorchSharp.Modules;
using MoRSharp.Kernels;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>Llama MLP: down(silu(gate(x)) · up(x)), no biases.</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate_proj;   // d → d_inter
    private readonly Linear up_proj;     // d → d_inter
    private readonly Linear down_proj;   // d_inter → d

    public SwiGluMlp(int hidden, int intermediate) : base(nameof(SwiGluMlp))
    {
        gate_proj = nn.Linear(hidden, intermediate, hasBias: false);
        up_proj = nn.Linear(hidden, intermediate, hasBias: false);
        down_proj = nn.Linear(intermediate, hidden, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)   // [B, T, d] → [B, T, d]
    {
        if (!torch.is_grad_enabled())
        {
            using var g = InferenceLinear.Forward(gate_proj, x);    // inference: activation and product in place
            using var u = InferenceLinear.Forward(up_proj, x);
            return InferenceLinear.Forward(down_proj, nn.functional.silu(g, inplace: true).mul_(u));
        }
        using var gate = nn.functional.silu(gate_proj.forward(x));
        using var up = up_proj.forward(x);
        using var prod = gate * up;
        return down_proj.forward(prod);
    }

    /// <summary>h + mlp(norm(h)) under no-grad, for decoding: with <see cref="SmallGemm"/> two kernel calls (norm, gate, up and
    /// SwiGLU in one; down with the residual add in the other) instead of nine tensor operations.</summary>
    public Tensor ForwardResidual(Tensor h, RmsNorm norm)
    {
        if (torch.is_grad_enabled()) return h + forward(norm.forward(h));
        if (norm.Weight.dtype == ScalarType.Float32 && SmallGemm.Accepts(h, gate_proj.weight!, up_proj.weight!))
        {
            using var act = SmallGemm.SwiGlu(h, norm.Weight, norm.Eps, gate_proj.weight!, up_proj.weight!);
            if (SmallGemm.Accepts(act, down_proj.weight!)) return SmallGemm.ProjectAdd(act, down_proj.weight!, h);
            return InferenceLinear.Forward(down_proj, act).add_(h);
        }
        using var normed = norm.forward(h);
        return forward(normed).add_(h);
    }
}
