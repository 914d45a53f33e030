namespace MoRSharp.Evaluation;

/// <summary>One log-likelihood request: how likely are the <see cref="Continuation"/> tokens right after the <see cref="Context"/> tokens?</summary>
/// <param name="Context">At least one token (an empty text context is replaced by EOS before it gets here, as lm-evaluation-harness does).</param>
/// <param name="Continuation">At least one token; these are the scored tokens.</param>
public sealed record ContinuationRequest(int[] Context, int[] Continuation)
{
    public int Length => Context.Length + Continuation.Length;
}

/// <summary>
/// The requests of one task item (one per answer choice). Most tasks share one context across the choices; WinoGrande shares
/// the continuation instead and its contexts share a prefix (the few-shot examples and the sentence up to the blank).
/// <see cref="SharedContextLength"/> is the number of leading context tokens every request has in common — the part a
/// KV-cache scorer can run once for the whole group and reuse for each choice.
/// </summary>
public sealed class RequestGroup
{
    public IReadOnlyList<ContinuationRequest> Requests { get; }
    public int SharedContextLength { get; }

    public RequestGroup(IReadOnlyList<ContinuationRequest> requests)
    {
        if (requests.Count == 0) throw new ArgumentException("a request group needs at least one request", nameof(requests));
        Requests = requests;
        int shared = requests.Min(r => r.Context.Length);
        var first = requests[0].Context;
        foreach (var r in requests)
            for (int i = 0; i < shared; i++)
                if (r.Context[i] != first[i]) { shared = i; break; }
        SharedContextLength = shared;
    }
}

/// <summary>The score of one request.</summary>
/// <param name="LogProb">Σ log p(continuation token | everything before it), natural log.</param>
/// <param name="IsGreedy">True when every continuation token is the argmax of the model's distribution at its position
/// (lm-evaluation-harness <c>is_greedy</c>; LAMBADA's accuracy).</param>
/// <param name="TokenLogProbs">The per-token terms of <see cref="LogProb"/>, in order.</param>
public sealed record ContinuationScore(double LogProb, bool IsGreedy, float[] TokenLogProbs);

/// <summary>
/// Scores continuations given contexts with a causal language model. Implementations: <see cref="BatchedScorer"/> (full
/// context+continuation rows, several per forward pass); a KV-cache scorer can run each group's shared context once and
/// reuse it for every choice. Requests longer than <see cref="MaxLength"/> + 1 tokens are truncated from the left, as
/// lm-evaluation-harness does; every continuation token is scored (one longer than MaxLength in several windows).
/// </summary>
public interface IContinuationScorer
{
    /// <summary>The longest token row one forward pass may take (the model's context length).</summary>
    int MaxLength { get; }

    /// <summary>Scores every request of every group; result[g][i] belongs to groups[g].Requests[i].
    /// <paramref name="progress"/> receives the number of requests scored so far.</summary>
    IReadOnlyList<ContinuationScore[]> Score(IReadOnlyList<RequestGroup> groups, IProgress<long>? progress = null);
}
