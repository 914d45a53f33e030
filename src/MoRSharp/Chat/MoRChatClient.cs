using MoRSharp.Data.Tokenizers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using MoRSharp.Inference;

namespace MoRSharp.Chat;

/// <summary>Limits and names of a <see cref="MoRChatClient"/>.</summary>
public sealed record MoRChatClientOptions
{
    /// <summary>The model id reported in responses (and metadata).</summary>
    public string ModelId { get; init; } = "mor";
    /// <summary>Longest prompt in tokens after the chat template (null: the context length − 1).</summary>
    public int? MaxPromptTokens { get; init; }
    /// <summary>New tokens when <see cref="ChatOptions.MaxOutputTokens"/> is not set (null: the rest of the context).</summary>
    public int? DefaultMaxOutputTokens { get; init; }
}

/// <summary>
/// A <see cref="IChatClient"/> (Microsoft.Extensions.AI) over any <see cref="IGenerationService"/> — the single-sequence
/// generator or the batching engine. Messages go through an <see cref="IChatFormatter"/> (chat template), the tokenizer's
/// BOS is prepended when it has one, and <see cref="ChatOptions"/> map to <see cref="GenerationOptions"/>:
/// Temperature, TopP, TopK, MaxOutputTokens, StopSequences, Seed, and <c>AdditionalProperties["repetition_penalty"]</c>.
/// Responses carry usage (prompt and generated tokens), the finish reason (stop / length), and in
/// <see cref="ChatResponse.AdditionalProperties"/> <c>"mor_depths"</c>: the number of recursions each generated token ran.
/// </summary>
/// <remarks>
/// The client is stateless like the interface: every call re-encodes and prefills the whole conversation. The KV cache of
/// an earlier turn is not reused, because <see cref="IGenerationService"/> owns its caches per request and has no notion of
/// a conversation; prefix reuse belongs in the engine (keyed by <see cref="ChatOptions.ConversationId"/> or by prompt prefix).
/// Not supported (they throw <see cref="NotSupportedException"/> naming the option): tools, JSON response formats, frequency
/// and presence penalties, and non-text message content.
/// </remarks>
public sealed class MoRChatClient(IGenerationService service, IChatFormatter? formatter = null, MoRChatClientOptions? options = null) : IChatClient
{
    private readonly IChatFormatter formatter = formatter ?? PlainChatFormatter.Instance;
    private readonly MoRChatClientOptions options = options ?? new();

    public IGenerationService Service => service;
    public ChatClientMetadata Metadata => new("MoRSharp", null, options.ModelId);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? chatOptions = null,
        CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, chatOptions);
        var (text, tokens, finish) = await service.CompleteAsync(prompt, generation, cancellationToken).ConfigureAwait(false);
        string id = NewId();
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text) { MessageId = id })
        {
            ResponseId = id,
            ModelId = options.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Map(finish),
            Usage = Usage(prompt.Length, tokens.Count),
            AdditionalProperties = new() { ["mor_depths"] = tokens.Select(t => t.Depth).ToArray() },
        };
    }

    /// <summary>One update per non-empty piece of text, then a last update with the finish reason and a <see cref="UsageContent"/>.</summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? chatOptions = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, chatOptions);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        int generated = 0;
        FinishReason finish = FinishReason.Length;
        await foreach (var t in service.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
        {
            if (t.Id >= 0) generated++;
            if (t.Finish is { } f) finish = f;
            if (t.Text.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, t.Text)
                    { ResponseId = id, MessageId = id, ModelId = options.ModelId, CreatedAt = created };
        }
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(prompt.Length, generated))])
            { ResponseId = id, MessageId = id, ModelId = options.ModelId, CreatedAt = created, FinishReason = Map(finish) };
    }

    /// <summary>The prompt ids (BOS + the rendered template) and the generation options for a call. Throws
    /// <see cref="ArgumentException"/> (message starting with the OpenAI field name, e.g. <c>messages: …</c>) for a bad value.</summary>
    public (int[] promptIds, GenerationOptions options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? chatOptions)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(chatOptions?.Instructions)) turns.Add(new ChatTurn("system", chatOptions.Instructions));
        int i = 0;
        foreach (var m in messages)
        {
            foreach (var c in m.Contents)
                if (c is not (TextContent or UsageContent or TextReasoningContent))
                    throw new NotSupportedException($"messages[{i}].content: {c.GetType().Name} is not supported (text only)");
            turns.Add(new ChatTurn(m.Role.Value, m.Text));
            i++;
        }
        if (i == 0) throw new ArgumentException("messages: at least one message is required");
        var tokenizer = service.Tokenizer;
        var ids = ChatFormats.Encode(formatter, tokenizer, turns);
        CheckPromptLength(ids.Length, "messages");
        return (ids, ToGenerationOptions(chatOptions, formatter.StopStrings, DefaultMaxTokens(ids.Length)));
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="field"/> when a prompt exceeds the limit or leaves no room to generate.</summary>
    public void CheckPromptLength(int tokens, string field)
    {
        int room = service.ContextLength - 1;
        int limit = Math.Min(options.MaxPromptTokens ?? room, room);
        if (tokens > limit)
            throw new ArgumentException($"{field}: the prompt has {tokens} tokens, more than the limit of {limit} " +
                                        $"(the model's context is {service.ContextLength} tokens, at least one must be left to generate)");
    }

    /// <summary>New tokens when the request does not say: the configured default, else the rest of the context.</summary>
    public int DefaultMaxTokens(int promptTokens) =>
        Math.Max(1, Math.Min(options.DefaultMaxOutputTokens ?? int.MaxValue, service.ContextLength - promptTokens));

    /// <summary>Maps <see cref="ChatOptions"/> to <see cref="GenerationOptions"/>; <paramref name="extraStops"/> (the chat
    /// template's end-of-turn strings) come after the caller's stop sequences. Also used by the server's <c>/v1/completions</c>.</summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? o, IEnumerable<string> extraStops, int defaultMaxTokens)
    {
        if (o?.Tools is { Count: > 0 }) throw new NotSupportedException("tools: function calling is not supported by MoRSharp models");
        if (o?.ResponseFormat is ChatResponseFormatJson) throw new NotSupportedException("response_format: only plain text responses are supported");
        if (o?.FrequencyPenalty is { } fp && fp != 0) throw new NotSupportedException("frequency_penalty: not supported (use repetition_penalty)");
        if (o?.PresencePenalty is { } pp && pp != 0) throw new NotSupportedException("presence_penalty: not supported (use repetition_penalty)");
        var defaults = new SamplingOptions();
        var sampling = new SamplingOptions
        {
            Temperature = o?.Temperature ?? defaults.Temperature,
            TopP = o?.TopP ?? defaults.TopP,
            TopK = o?.TopK ?? defaults.TopK,
            Seed = o?.Seed,
            RepetitionPenalty = RepetitionPenalty(o) ?? defaults.RepetitionPenalty,
        };
        var generation = new GenerationOptions
        {
            MaxTokens = o?.MaxOutputTokens ?? defaultMaxTokens,
            Sampling = sampling,
            StopStrings = [.. o?.StopSequences ?? [], .. extraStops],
        };
        generation.Validate();
        return generation;
    }

    private static double? RepetitionPenalty(ChatOptions? o)
    {
        if (o?.AdditionalProperties is null || !o.AdditionalProperties.TryGetValue("repetition_penalty", out var v) || v is null) return null;
        return v switch
        {
            double d => d,
            float f => f,
            int n => n,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Number } e => e.GetDouble(),
            _ => throw new ArgumentException($"repetition_penalty: expected a number, got {v.GetType().Name}"),
        };
    }

    private static UsageDetails Usage(int prompt, int generated) =>
        new() { InputTokenCount = prompt, OutputTokenCount = generated, TotalTokenCount = prompt + generated };

    private static ChatFinishReason? Map(FinishReason finish) => finish switch
    {
        FinishReason.Stop => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => null,
    };

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(service)) return service;
        return null;
    }

    /// <summary>The client does not own the service (one service usually backs several clients and the server).</summary>
    public void Dispose() { }
}
