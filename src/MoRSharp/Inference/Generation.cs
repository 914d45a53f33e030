using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Inference;

/// <summary>Why a generation ended (OpenAI's finish_reason names).</summary>
public enum FinishReason { Length, Stop, Cancelled }

/// <summary>One generation request's limits and sampling.</summary>
public sealed record GenerationOptions
{
    /// <summary>New tokens at most (the context length also limits it).</summary>
    public int MaxTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Generation ends before the first occurrence of any of these strings (not emitted).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Token ids that end generation (not emitted); null = the tokenizer's EOS.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }
    /// <summary>Prompt longer than the context: error (default), or keep its last tokens.</summary>
    public bool TruncatePrompt { get; init; }

    public void Validate()
    {
        if (MaxTokens < 1) throw new ArgumentException($"max_tokens: must be ≥ 1, got {MaxTokens}");
        Sampling.Validate();
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop: stop strings must not be empty");
    }
}

/// <summary>
/// One generated token: its id, the text it adds (may be empty while a character or a possible stop string is incomplete),
/// the number of recursions it ran (0 for a model without recursions), and on the last item why generation ended.
/// </summary>
public sealed record GeneratedToken(int Id, string Text, int Depth, int Index)
{
    /// <summary>Set on the final item only. The final item may carry no token (Id = −1) when generation ended on a stop token or string.</summary>
    public FinishReason? Finish { get; init; }
}

/// <summary>Counters a serving layer reports (Prometheus /metrics).</summary>
public sealed record GenerationMetrics(long TokensGenerated, long PromptTokens, double TokensPerSecond, int QueueDepth, int Active,
    long[] TokensPerExitDepth, long RequestsCompleted);

/// <summary>Something that turns prompts into token streams: the single-sequence <see cref="TextGenerator"/> or the batching engine.</summary>
public interface IGenerationService
{
    ITokenizer Tokenizer { get; }
    int ContextLength { get; }
    /// <summary>Streams the continuation of <paramref name="promptIds"/>. Throws <see cref="ArgumentException"/> for invalid options
    /// or a prompt that does not fit, <see cref="QueueFullException"/> when the service cannot take more work.</summary>
    IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancel = default);
    GenerationMetrics Metrics { get; }
}

/// <summary>The service's queue is full: retry later (HTTP 429).</summary>
public sealed class QueueFullException(string message) : Exception(message);

public static class GenerationServiceExtensions
{
    /// <summary>Streams the continuation of a text prompt (encoded without special tokens; prepend BOS yourself where the model wants it).</summary>
    public static IAsyncEnumerable<GeneratedToken> GenerateAsync(this IGenerationService service, string prompt, GenerationOptions options,
        CancellationToken cancel = default) => service.GenerateAsync(service.Tokenizer.Encode(prompt), options, cancel);

    /// <summary>The whole continuation as text, with the depths of its tokens and the finish reason.</summary>
    public static Task<(string text, List<GeneratedToken> tokens, FinishReason finish)> CompleteAsync(this IGenerationService service,
        IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancel = default) =>
        Collect(service.GenerateAsync(promptIds, options, cancel));

    /// <summary>As <see cref="CompleteAsync(IGenerationService, IReadOnlyList{int}, GenerationOptions, CancellationToken)"/>, continuing a conversation's cached session.</summary>
    public static Task<(string text, List<GeneratedToken> tokens, FinishReason finish)> CompleteAsync(this TextGenerator generator,
        IReadOnlyList<int> promptIds, GenerationOptions options, TextGenerator.Session session, CancellationToken cancel = default) =>
        Collect(generator.GenerateAsync(promptIds, options, session, cancel));

    private static async Task<(string text, List<GeneratedToken> tokens, FinishReason finish)> Collect(IAsyncEnumerable<GeneratedToken> stream)
    {
        var tokens = new List<GeneratedToken>();
        var text = new System.Text.StringBuilder();
        FinishReason finish = FinishReason.Length;
        await foreach (var t in stream)
        {
            text.Append(t.Text);
            if (t.Id >= 0) tokens.Add(t);
            if (t.Finish is { } f) finish = f;
        }
        return (text.ToString(), tokens, finish);
    }

    /// <summary>The prompt as it will be run: checked against the context, or cut to its last tokens when asked.</summary>
    internal static int[] FitPrompt(IReadOnlyList<int> promptIds, GenerationOptions options, int context, int vocab)
    {
        if (promptIds.Count == 0) throw new ArgumentException("prompt: must contain at least one token (prepend BOS/EOS for an empty prompt)");
        foreach (int id in promptIds)
            if (id < 0 || id >= vocab) throw new ArgumentException($"prompt: token id {id} is outside the vocabulary [0, {vocab})");
        int room = context - 1;   // at least one new token must fit
        if (promptIds.Count > room)
        {
            if (!options.TruncatePrompt)
                throw new ArgumentException($"prompt: {promptIds.Count} tokens do not fit the context of {context} tokens (at most {room} leave room to generate; or truncate the prompt)");
            return promptIds.Skip(promptIds.Count - room).ToArray();
        }
        return promptIds.ToArray();
    }
}
