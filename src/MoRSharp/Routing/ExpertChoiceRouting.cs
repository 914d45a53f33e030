using MoRSharp.Config;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Routing;

/// <summary>
/// Expert-choice MoR (spec §2.1): each recursion r is an expert with its own router that keeps k_r = max(1, ⌊c_r·N⌋)
/// of the tokens that recursion r−1 kept (hierarchical filtering). The shared block runs <b>only on the kept tokens</b>
/// (gathered, original RoPE positions, causal attention among them); their output is gated and scatter-added:
/// H[S] += g·f(H[S]), f including the block's own residuals (spec §10.1).
/// </summary>
public sealed class ExpertChoiceRouting(MoRConfig config, IList<nn.Module<Tensor, Tensor>> routers, IList<nn.Module<Tensor, Tensor>>? auxRouters)
{
    private readonly double[] capacity = config.EffectiveCapacity;
    private readonly double alpha = config.EffectiveAlpha;
    private readonly RouterFunc func = config.EffectiveRouterFunc;
    private readonly AuxLossKind auxKind = config.AuxLossKind;
    private readonly GatingKind gating = config.GatingKind;
    private readonly double temperature = config.RouterTemperature;

    /// <summary>k_r for a sequence of n tokens.</summary>
    public static long Capacity(double c, long n) => Math.Max(1L, (long)Math.Floor(c * n + 1e-9));

    /// <summary>h [B, N, d] → h after the N_r routed recursions, plus statistics and unweighted losses.</summary>
    public (Tensor hidden, RoutingStats stats) Forward(Tensor h, RecursionBlock block, RoutingMode mode)
    {
        int numRec = capacity.Length;
        long b = h.shape[0], n = h.shape[1];
        var tokensPer = new long[numRec];
        Tensor depth = torch.zeros(b, n, dtype: ScalarType.Int64);
        var selected = new List<Tensor>();
        Tensor? bce = null, auxBce = null, zLoss = null, lastMask = null;
        long agree = 0, candidates = 0;

        Tensor? cand = null;          // [B, k_prev] absolute positions of the candidates; null = all N in order
        Tensor? candValid = null;     // causal mode: [B, k_prev] which candidates are real (not padding)
        for (int r = 0; r < numRec; r++)
        {
            var x = cand is null ? h : TokenSelection.Gather(h, cand);                    // [B, k_prev, d]
            long kPrev = x.shape[1];
            var (z, gate, zAux) = Score(r, x);                                            // [B, k_prev] each

            Tensor sel, w;               // sel [B, k] absolute positions (sorted), w [B, k] gates
            Tensor? selValid = null;
            if (mode == RoutingMode.TopK)
            {
                long k = Math.Min(Capacity(capacity[r], n), kPrev);
                var (topW, topJ) = gate.topk((int)k, dim: 1);
                var (j, order) = topJ.sort(dim: 1);                                       // keep causal order
                w = topW.gather(1, order);
                sel = cand is null ? j : cand.gather(1, j);
                var target = torch.zeros_like(z).scatter(1, j, torch.ones_like(w));      // top-k membership of each candidate
                if (!config.RandomRouter)
                {
                    if (auxKind == AuxLossKind.Bce)
                        bce = Add(bce, nn.functional.binary_cross_entropy_with_logits(z, target));
                    if (zAux is not null)
                        auxBce = Add(auxBce, nn.functional.binary_cross_entropy_with_logits(zAux, target));
                    zLoss = Add(zLoss, z.pow(2).mean());
                    using var decide = Decision(zAux ?? z);
                    agree += decide.eq(target.to_type(ScalarType.Bool)).sum().item<long>();
                    candidates += target.numel();
                }
                tokensPer[r] = b * k;
            }
            else
            {
                // Causal rule: continue iff the router says so and the token continued at r−1.
                Tensor cont = Continues(r, z, zAux);
                if (candValid is not null) cont = cont.logical_and(candValid);
                var candIdx = cand ?? torch.arange(n).unsqueeze(0).expand(b, n);              // [B, k_prev] absolute positions
                var activeFull = torch.zeros(b, n, dtype: ScalarType.Bool).scatter(1, candIdx, cont);
                var (idx, valid, kmax) = TokenSelection.Compact(activeFull);
                tokensPer[r] = activeFull.sum().item<long>();
                if (kmax == 0) break;
                bool everyToken = kmax == n && valid.all().item<bool>();
                sel = idx;
                selValid = everyToken ? null : valid;
                // gates of the selected tokens: scatter the candidates' gates to full length, then gather
                var gateFull = torch.zeros(b, n, dtype: gate.dtype).scatter(1, candIdx, gate);
                w = gateFull.gather(1, sel) * valid.to_type(gate.dtype);
            }

            bool all = sel.shape[1] == n && selValid is null;    // k = N distinct sorted positions = every token in order: no gather
            var y = block(r, all ? h : TokenSelection.Gather(h, sel), all ? null : sel, all ? null : selValid);  // [B, k, d] = f(H[S])
            var update = gating == GatingKind.Weighted ? w.unsqueeze(-1).to_type(y.dtype) * y : y;
            if (selValid is not null && gating != GatingKind.Weighted) update = update * selValid.unsqueeze(-1).to_type(y.dtype);
            h = all ? h + update : TokenSelection.ScatterAdd(h, sel, update);

            var selMask = TokenSelection.ToMask(sel, selValid, n);
            depth = depth + selMask.to_type(ScalarType.Int64);
            selected.Add(selMask);
            lastMask = r == numRec - 1 ? selMask : null;
            cand = sel;
            candValid = selValid;
        }

        double? dead = lastMask is null ? (double?)(numRec > 0 ? 1.0 : null)
            : 1.0 - lastMask.any(0).to_type(ScalarType.Float32).mean().item<float>();
        var stats = new RoutingStats
        {
            TokensPerRecursion = tokensPer,
            TotalTokens = b * n,
            Depth = depth,
            Selected = selected.ToArray(),
            BceLoss = bce,
            AuxRouterLoss = auxBce,
            ZLoss = zLoss,
            DeadTokenFraction = dead,
            SamplingAccuracy = candidates > 0 ? (double)agree / candidates : null,
            WeightedLoss = Weighted(bce, config.AuxCoeff, zLoss, config.EffectiveZLossCoeff, auxBce),
        };
        return (h, stats);
    }

    /// <summary>
    /// Router logit z, gate g = α·σ(z) (or α·tanh(z)) and the aux router's logit (when configured) for candidates x [..., d] at
    /// recursion r. Shared by the full-sequence forward and the batching engine, so both route identically.
    /// </summary>
    public (Tensor z, Tensor gate, Tensor? zAux) Score(int r, Tensor x)
    {
        var input = temperature == 1.0 ? x : x / temperature;
        var z = routers[r].forward(input).squeeze(-1);
        if (config.RandomRouter) z = torch.randn_like(z).detach();                        // random-router baseline: no learning signal
        var gate = func == RouterFunc.Tanh ? alpha * z.tanh() : alpha * z.sigmoid();
        Tensor? zAux = auxKind == AuxLossKind.AuxRouter && auxRouters is not null && !config.RandomRouter
            ? auxRouters[r].forward(input.detach()).squeeze(-1)
            : null;
        return (z, gate, zAux);
    }

    /// <summary>The causal rule at recursion r: every token at recursion 1 when c₁ = 1, else the router's own decision.</summary>
    public Tensor Continues(int r, Tensor z, Tensor? zAux) =>
        r == 0 && capacity[0] >= 1.0 ? torch.ones_like(z, dtype: ScalarType.Bool) : Decision(zAux ?? z);

    public int NumRecursion => capacity.Length;

    /// <summary>The per-token causal decision: σ(z) ≥ 0.5 for sigmoid gates, tanh(z) ≥ 0 for tanh — both are z ≥ 0.</summary>
    private static Tensor Decision(Tensor z) => z.ge(0.0);

    private static Tensor Add(Tensor? acc, Tensor term) => acc is null ? term : acc + term;

    /// <summary>coeff·ΣBCE + z_coeff·Σz² (+ the aux-router BCE, whose gradient reaches only the detached aux routers).</summary>
    private static Tensor? Weighted(Tensor? bce, double bceCoeff, Tensor? z, double zCoeff, Tensor? auxBce)
    {
        Tensor? total = null;
        if (bce is not null && bceCoeff > 0) total = Add(total, bce * bceCoeff);
        if (z is not null && zCoeff > 0) total = Add(total, z * zCoeff);
        if (auxBce is not null) total = Add(total, auxBce);
        return total;
    }
}
