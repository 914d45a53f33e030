using MoRSharp.Config;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Routing;

/// <summary>Linear router: z = x·θ (no bias). Output width 1 (expert-choice) or N_r (token-choice). Parameter <c>weight</c> [out, d].</summary>
public sealed class LinearRouter : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public LinearRouter(int hidden, int outputs) : base(nameof(LinearRouter))
    {
        weight = new Parameter(torch.empty(outputs, hidden));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight);   // [..., d] → [..., out]
}

/// <summary>MLP router of the official code: Linear(d → 2d) → GELU → Linear(2d → out), no biases.</summary>
public sealed class MlpRouter : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;

    public MlpRouter(int hidden, int outputs) : base(nameof(MlpRouter))
    {
        fc1 = nn.Linear(hidden, 2 * hidden, hasBias: false);
        fc2 = nn.Linear(2 * hidden, outputs, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var a = nn.functional.gelu(h);
        return fc2.forward(a);
    }
}

public static class Routers
{
    public static nn.Module<Tensor, Tensor> Create(RouterArch arch, int hidden, int outputs) => arch switch
    {
        RouterArch.Linear => new LinearRouter(hidden, outputs),
        RouterArch.Mlp => new MlpRouter(hidden, outputs),
        _ => throw new ArgumentOutOfRangeException(nameof(arch)),
    };
}
