namespace MoRSharp.Training;

/// <summary>What one optimizer step did (averaged over its micro-batches).</summary>
public sealed record StepMetrics
{
    public long Step { get; init; }
    public double Loss { get; init; }            // LM + weighted routing losses
    public double LmLoss { get; init; }
    public double? BceLoss { get; init; }
    public double? ZLoss { get; init; }
    public double? BalancingLoss { get; init; }
    public double? AuxRouterLoss { get; init; }
    public double Lr { get; init; }
    public double GradNorm { get; init; }
    public double TokensPerSecond { get; init; }
    public long TokensSeen { get; init; }
    /// <summary>Fraction of tokens that ran each recursion.</summary>
    public double[]? RecursionFractions { get; init; }
    public double? DeadFraction { get; init; }
    public double? MaxVio { get; init; }
    public double? Entropy { get; init; }
    public double? SamplingAccuracy { get; init; }
    public double ElapsedSeconds { get; init; }
}

/// <summary>Validation result: mean next-token NLL with the causal routing rule and, for expert-choice, with training top-k.</summary>
public sealed record ValidationResult(long Step, double Loss, double? LossTopK, long Tokens);
