using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Training;

/// <summary>
/// AdamW (decoupled weight decay, PyTorch semantics) with explicit, named moment tensors so that a checkpoint can store
/// and restore them exactly. Parameters are named by their HF keys.
/// Weight decay applies to matrices (Linear, Embedding, routers); 1-D parameters — the RMSNorm weights — are exempt
/// (the usual decay/no-decay split; the model has no biases).
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly List<(string name, Parameter param, bool decay)> parameters;
    private readonly Dictionary<string, (Tensor m, Tensor v)> moments = new();
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }
    /// <summary>Optimizer steps taken (Adam's t).</summary>
    public long Step { get; private set; }

    public AdamW(IEnumerable<(string name, Parameter param)> named, double beta1 = 0.9, double beta2 = 0.95, double eps = 1e-8, double weightDecay = 0.1)
    {
        parameters = named.Select(p => (p.name, p.param, p.param.dim() >= 2)).ToList();
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        foreach (var (name, p, _) in parameters)
            moments[name] = (torch.zeros_like(p).DetachFromDisposeScope(), torch.zeros_like(p).DetachFromDisposeScope());
    }

    public IEnumerable<string> DecayExempt => parameters.Where(p => !p.decay).Select(p => p.name);

    public void ZeroGrad()
    {
        foreach (var (_, p, _) in parameters) p.grad?.zero_();
    }

    /// <summary>One update at learning rate <paramref name="lr"/>; parameters without a gradient are left alone.</summary>
    /// <param name="gradOf">Where gradients live when not on the parameters themselves (bf16 compute copy); cast to the parameter's dtype.</param>
    public void Update(double lr, Func<string, Tensor?>? gradOf = null)
    {
        Step++;
        double bc1 = 1 - Math.Pow(Beta1, Step), bc2 = 1 - Math.Pow(Beta2, Step);
        using var _ = torch.no_grad();
        foreach (var (name, p, decay) in parameters)
        {
            using var scope = NewDisposeScope();
            var g = gradOf is null ? p.grad : gradOf(name);
            if (g is null) continue;
            if (g.dtype != p.dtype) g = g.to_type(p.dtype);
            var (m, v) = moments[name];
            if (decay && WeightDecay > 0) p.mul_(1 - lr * WeightDecay);
            m.mul_(Beta1).add_(g, alpha: 1 - Beta1);
            v.mul_(Beta2).addcmul_(g, g, value: 1 - Beta2);
            var denom = (v.sqrt() / Math.Sqrt(bc2)).add_(Eps);
            p.addcdiv_(m, denom, value: -lr / bc1);
        }
    }

    /// <summary>Moments as named tensors (<c>exp_avg.{name}</c>, <c>exp_avg_sq.{name}</c>) for a checkpoint.</summary>
    public IEnumerable<(string name, Tensor tensor)> StateTensors() =>
        parameters.SelectMany(p => new[] { ($"exp_avg.{p.name}", moments[p.name].m), ($"exp_avg_sq.{p.name}", moments[p.name].v) });

    /// <summary>Restores moments and the step count; a missing or misshapen entry is an error naming it.</summary>
    public void LoadState(Func<string, Tensor?> read, long step, string source)
    {
        using var _ = torch.no_grad();
        foreach (var (name, p, _) in parameters)
        {
            var (m, v) = moments[name];
            foreach (var (key, target) in new[] { ($"exp_avg.{name}", m), ($"exp_avg_sq.{name}", v) })
            {
                using var t = read(key) ?? throw new InvalidDataException($"{source}: optimizer state lacks '{key}'");
                if (!t.shape.SequenceEqual(target.shape)) throw new InvalidDataException($"{source}: '{key}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", target.shape)}]");
                target.copy_(t);
            }
        }
        Step = step;
    }

    public void Dispose()
    {
        foreach (var (m, v) in moments.Values) { m.Dispose(); v.Dispose(); }
        moments.Clear();
    }
}
