namespace MoRSharp.Routing;

/// <summary>How expert-choice routing decides which tokens continue (token-choice is the same in both modes).</summary>
public enum RoutingMode
{
    /// <summary>Training rule: each recursion keeps its top-k_r candidates of the whole sequence.
    /// A token's depth then depends on later tokens' scores — it leaks the future and is not usable for decoding.</summary>
    TopK,
    /// <summary>Inference rule (spec §5.1): a token continues at recursion r iff σ(z_r) ≥ 0.5 (tanh(z) ≥ 0) and it continued at r−1;
    /// recursion 1 takes every token when c_1 = 1. Causal: no token's depth depends on later tokens.</summary>
    Causal,
}
