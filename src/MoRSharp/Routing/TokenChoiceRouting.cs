using MoRSharp.Config;
using static TorchSharp.torch;

namespace MoRSharp.Routing;

/// <summary>
/// Token-choice MoR (spec §2.2, following the official code): one router scores N_r depths from the state entering the
/// recursions; each token takes the top-1 depth i and runs recursions 1..i <b>ungated</b>; at its exit the result is
/// gated onto the entry state: out = H¹ + g·f⁽ⁱ⁾(H¹), g = the unbiased probability of the chosen depth.
/// The loss-free bias (not trained by gradients) only shifts the argmax. Causal by construction.
/// </summary>
public sealed class TokenChoiceRouting(MoRConfig config, nn.Module<Tensor, Tensor> router, Tensor routerBias)
{
    private readonly int numRec = config.NumRecursion;
    private readonly double alpha = config.EffectiveAlpha;
    private readonly RouterFunc func = config.EffectiveRouterFunc;
    private readonly double temperature = config.RouterTemperature;

    /// <summary>h [B, N, d] (H¹) → out [B, N, d].</summary>
    public (Tensor hidden, RoutingStats stats) Forward(Tensor h, RecursionBlock block)
    {
        long b = h.shape[0], n = h.shape[1];
        var (logits, probs, expert, gate) = Choose(h);

        // Load and losses over the T = B·N tokens of this micro-batch.
        var counts = torch.zeros(numRec, dtype: ScalarType.Int64).scatter_add(0, expert.reshape(-1), torch.ones(b * n, dtype: ScalarType.Int64));
        long[] load = counts.data<long>().ToArray();
        Tensor? balancing = null, zLoss = null;
        if (!config.RandomRouter)
        {
            var f = counts.to_type(probs.dtype) * ((double)numRec / (b * n));            // f_i = (N_r/T)·#tokens → i
            var p = probs.reshape(-1, numRec).mean([0L]);                                // P_i = mean_t g_t^i
            balancing = (f * p).sum();
            zLoss = logits.logsumexp(-1).pow(2).mean();
        }

        var tokensPer = new long[numRec];
        var selected = Enumerable.Range(0, numRec).Select(r => expert.ge(r)).ToArray();
        var output = h;
        var x = h;                                                                       // state carried between recursions
        for (int r = 0; r < numRec; r++)
        {
            var active = expert.ge(r);                                                   // [B, N]
            var (idx, valid, kmax) = TokenSelection.Compact(active);
            tokensPer[r] = active.sum().item<long>();
            if (kmax == 0) break;
            bool all = kmax == n && valid.all().item<bool>();
            var y = block(r, all ? x : TokenSelection.Gather(x, idx), all ? null : idx, all ? null : valid);  // [B, k, d], ungated
            var exits = all ? expert.eq(r) : expert.gather(1, idx).eq(r).logical_and(valid);   // [B, k]
            var g = all ? gate : gate.gather(1, idx);
            var update = (g * exits.to_type(g.dtype)).unsqueeze(-1).to_type(y.dtype) * y;
            output = all ? output + update : TokenSelection.ScatterAdd(output, idx, update);
            if (r + 1 < numRec)
                x = all ? y : x.scatter(1, idx.unsqueeze(-1).expand(y.shape), y);       // padded rows land on exited tokens: unused
        }

        double mean = load.Average();
        double entropy = -load.Where(c => c > 0).Select(c => (double)c / (b * n)).Sum(q => q * Math.Log(q));
        var stats = new RoutingStats
        {
            TokensPerRecursion = tokensPer,
            TotalTokens = b * n,
            Depth = expert + 1,
            Selected = selected,
            BalancingLoss = balancing,
            ZLoss = zLoss,
            LoadPerExpert = load,
            MaxVio = mean > 0 ? (load.Max() - mean) / mean : 0,
            Entropy = entropy,
            WeightedLoss = Weighted(config, balancing, zLoss),
        };
        return (output, stats);
    }

    /// <summary>
    /// Router logits and probabilities [..., N_r], the chosen depth index (0-based: runs index+1 recursions) and its unbiased
    /// gate [...], for states h [..., d]. Shared by the full-sequence forward and the batching engine.
    /// </summary>
    public (Tensor logits, Tensor probs, Tensor expert, Tensor gate) Choose(Tensor h)
    {
        var logits = router.forward(temperature == 1.0 ? h : h / temperature);          // [..., N_r]
        if (config.RandomRouter) logits = torch.randn_like(logits).detach();
        var probs = func == RouterFunc.Softmax ? alpha * logits.softmax(-1) : alpha * logits.sigmoid();
        var choice = config.BalancingKind == BalancingKind.LossFree && !config.RandomRouter
            ? probs.detach() + routerBias.to_type(probs.dtype)
            : probs.detach();
        var expert = choice.argmax(-1);
        var gate = probs.gather(-1, expert.unsqueeze(-1)).squeeze(-1);
        return (logits, probs, expert, gate);
    }

    public int NumRecursion => numRec;

    private static Tensor? Weighted(MoRConfig config, Tensor? balancing, Tensor? zLoss)
    {
        Tensor? total = null;
        if (balancing is not null && config.BalancingKind == BalancingKind.Loss && config.BalancingCoeff > 0)
            total = balancing * config.BalancingCoeff;
        double zc = config.EffectiveZLossCoeff;
        if (zLoss is not null && zc > 0) total = total is null ? zLoss * zc : total + zLoss * zc;
        return total;
    }

    /// <summary>
    /// Loss-free balancing (Wang et al. 2024): after an optimizer step, with the load summed over its micro-batches,
    /// b_i ← b_i + u·sign(mean(load) − load_i).
    /// </summary>
    public static void UpdateBias(Tensor routerBias, long[] load, double rate)
    {
        double mean = load.Average();
        using var _ = torch.no_grad();
        var delta = load.Select(c => (float)(rate * Math.Sign(mean - c))).ToArray();
        using var d = torch.tensor(delta);
        routerBias.add_(d);
    }
}
