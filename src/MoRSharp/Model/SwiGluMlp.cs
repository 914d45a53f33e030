using TorchSharp;
using TorchSharp.Modules;
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
}
