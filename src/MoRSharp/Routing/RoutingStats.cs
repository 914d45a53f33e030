using static TorchSharp.torch;

namespace MoRSharp.Routing;

/// <summary>
/// What one forward pass did with routing: how many tokens each recursion ran, each token's depth,
/// the auxiliary losses (differentiable tensors, unweighted) and balance diagnostics.
/// </summary>
public sealed class RoutingStats
{
    /// <summary>Tokens (summed over the batch) that ran recursion r, r = 0..N_r−1.</summary>
    public long[] TokensPerRecursion { get; init; } = [];
    /// <summary>Tokens in the batch (B·T).</summary>
    public long TotalTokens { get; init; }
    /// <summary>[B, T] number of recursions each token ran (0..N_r).</summary>
    public Tensor? Depth { get; init; }

    /// <summary>Selected[r] = [B, T] bool: which tokens ran recursion r.</summary>
    public Tensor[]? Selected { get; init; }

    /// <summary>Expert-choice: Σ_r mean BCE(z_r, top-k membership) over each step's candidates (spec §2.1).</summary>
    public Tensor? BceLoss { get; init; }
    /// <summary>Expert-choice with <c>aux_router</c>: Σ_r BCE of the detached auxiliary routers against top-k.</summary>
    public Tensor? AuxRouterLoss { get; init; }
    /// <summary>Router z-loss: mean (logsumexp z)², summed over steps for expert-choice.</summary>
    public Tensor? ZLoss { get; init; }
    /// <summary>Token-choice balancing loss Σ_i f_i·P_i.</summary>
    public Tensor? BalancingLoss { get; init; }

    /// <summary>Expert-choice: fraction of sequence positions that no sample of the batch selected at the last recursion.</summary>
    public double? DeadTokenFraction { get; init; }
    /// <summary>Token-choice: tokens assigned to each depth (expert) i = 1..N_r.</summary>
    public long[]? LoadPerExpert { get; init; }
    /// <summary>Token-choice: (max_i load_i − mean load)/mean load.</summary>
    public double? MaxVio { get; init; }
    /// <summary>Token-choice: entropy (nats) of the depth-assignment distribution; ln N_r is perfectly balanced.</summary>
    public double? Entropy { get; init; }
    /// <summary>Expert-choice top-k mode: agreement of the causal rule (σ(z) ≥ 0.5) with top-k membership over candidates.</summary>
    public double? SamplingAccuracy { get; init; }

    /// <summary>The weighted routing loss to add to the LM loss (coefficients from the config).</summary>
    public Tensor? WeightedLoss { get; init; }

    public static RoutingStats None(long totalTokens) => new() { TotalTokens = totalTokens };
}
