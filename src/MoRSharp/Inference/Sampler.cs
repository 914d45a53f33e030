using static TorchSharp.torch;

namespace MoRSharp.Inference;

/// <summary>
/// How the next token is chosen. Defaults are plain sampling at temperature 1; <see cref="Temperature"/> 0 is greedy.
/// Names follow the OpenAI / Hugging Face fields they map to.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>0 = greedy (argmax); otherwise logits are divided by it before sampling.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens; 0 = off.</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>HF-style repetition penalty over the prompt and the generated tokens: 1 = off, &gt; 1 discourages repeats.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>Seed of this request's random stream; null draws one.</summary>
    public long? Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Throws <see cref="ArgumentException"/> naming the field for a value outside its range.</summary>
    public void Validate()
    {
        if (!double.IsFinite(Temperature) || Temperature < 0) throw new ArgumentException($"temperature: must be a finite number ≥ 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top_k: must be ≥ 0 (0 = off), got {TopK}");
        if (!double.IsFinite(TopP) || TopP <= 0 || TopP > 1) throw new ArgumentException($"top_p: must be in (0, 1], got {TopP}");
        if (!double.IsFinite(RepetitionPenalty) || RepetitionPenalty <= 0) throw new ArgumentException($"repetition_penalty: must be a finite number > 0, got {RepetitionPenalty}");
    }
}

/// <summary>Picks tokens from logits with one request's options and its own seeded random stream.</summary>
public sealed class Sampler : IDisposable
{
    private readonly SamplingOptions options;
    private readonly Generator? generator;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        this.options = options;
        if (options.Temperature > 0) generator = new Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()));
    }

    /// <summary>Greedy with no repetition penalty: the next token is the logits' argmax alone, so a caller holding many
    /// sequences' logits can take all their argmaxes in one call (what <see cref="Next"/> would return, ties to the lowest id).</summary>
    public bool IsPlainArgmax => generator is null && options.RepetitionPenalty == 1.0;

    /// <summary>logits [V] (any float dtype) and the ids seen so far (prompt + generated) → the next id.</summary>
    public int Next(Tensor logits, IReadOnlyCollection<int> history)
    {
        using var scope = NewDisposeScope();
        var x = logits.to_type(ScalarType.Float32).clone();                       // [V]
        if (options.RepetitionPenalty != 1.0 && history.Count > 0)
        {
            var seen = torch.tensor(history.Distinct().Select(i => (long)i).ToArray());
            var s = x.index_select(0, seen);
            x.index_copy_(0, seen, torch.where(s.gt(0), s / options.RepetitionPenalty, s * options.RepetitionPenalty));
        }
        if (generator is null) return (int)x.argmax().item<long>();
        x = x / options.Temperature;
        if (options.TopK > 0 && options.TopK < x.shape[0])
        {
            var kth = x.topk(options.TopK).values[-1];
            x = x.masked_fill(x.lt(kth), double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, order) = x.sort(descending: true);
            var probs = sorted.softmax(0);
            var remove = (probs.cumsum(0) - probs).gt(options.TopP);                // keeps the token that crosses p
            x = x.index_fill(0, order.masked_select(remove), double.NegativeInfinity);
        }
        var p = x.softmax(0);
        return (int)p.multinomial(1, generator: generator).item<long>();
    }

    public void Dispose() => generator?.Dispose();
}
