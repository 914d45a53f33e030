using System.Runtime.CompilerServices;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;

namespace MoRSharp.Server;

/// <summary>
/// Bounds the work a generation service holds: at most <c>maxActive + maxQueue</c> requests in flight; one more gets
/// <see cref="QueueFullException"/> (HTTP 429) at once instead of waiting in unbounded memory. Put it over a service that
/// queues without limit (the single-sequence <see cref="TextGenerator"/> queues on a semaphore); <see cref="Metrics"/>
/// reports the queue and active counts the limiter sees (active = min(in flight, maxActive)).
/// </summary>
public sealed class QueueLimiter : IGenerationService
{
    private readonly IGenerationService inner;
    private readonly int maxActive, maxQueue;
    private int inFlight;

    public QueueLimiter(IGenerationService inner, int maxActive, int maxQueue)
    {
        if (maxActive < 1) throw new ArgumentException($"max-batch: must be ≥ 1, got {maxActive}");
        if (maxQueue < 0) throw new ArgumentException($"max-queue: must be ≥ 0, got {maxQueue}");
        (this.inner, this.maxActive, this.maxQueue) = (inner, maxActive, maxQueue);
    }

    public ITokenizer Tokenizer => inner.Tokenizer;
    public int ContextLength => inner.ContextLength;
    public IGenerationService Inner => inner;

    public GenerationMetrics Metrics
    {
        get
        {
            int n = Volatile.Read(ref inFlight);
            return inner.Metrics with { QueueDepth = Math.Max(0, n - maxActive), Active = Math.Min(n, maxActive) };
        }
    }

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        if (Interlocked.Increment(ref inFlight) > maxActive + maxQueue)
        {
            Interlocked.Decrement(ref inFlight);
            throw new QueueFullException($"the server is busy: {maxActive} generating and {maxQueue} waiting (the queue limit); retry later");
        }
        try
        {
            await foreach (var t in inner.GenerateAsync(promptIds, options, cancel).ConfigureAwait(false))
                yield return t;
        }
        finally { Interlocked.Decrement(ref inFlight); }
    }
}
