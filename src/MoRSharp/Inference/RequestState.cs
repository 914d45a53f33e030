using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Inference;

/// <summary>
/// One generation request while it decodes — token budget, stop ids and strings, sampler, text streamer, history — and the
/// rule that turns each sampled token into what the caller receives. <see cref="TextGenerator"/> (one sequence at a time)
/// and <see cref="BatchingEngine"/> (many at once) share it, so both end requests the same way.
/// </summary>
internal sealed class RequestState : IDisposable
{
    public RequestState(IReadOnlyList<int> prompt, GenerationOptions options, ITokenizer tokenizer, int contextLength)
    {
        Budget = Math.Min(options.MaxTokens, contextLength - prompt.Count);
        StopIds = new HashSet<int>(options.StopTokenIds ?? (tokenizer.EosId is { } e ? [e] : []));
        Sampler = new Sampler(options.Sampling);
        Streamer = new TextStreamer(tokenizer, options.StopStrings);
        History = new List<int>(prompt);
    }

    /// <summary>New tokens at most: the request's max_tokens, cut to what the context leaves after the prompt.</summary>
    public int Budget { get; }
    public HashSet<int> StopIds { get; }
    public Sampler Sampler { get; }
    public TextStreamer Streamer { get; }
    /// <summary>Prompt and accepted tokens (what the repetition penalty looks at).</summary>
    public List<int> History { get; }
    public int Generated { get; private set; }

    /// <summary>
    /// The model's next token (and the depth that produced it) → the <see cref="GeneratedToken"/> to stream. Finish is set
    /// when the request ends with it: a stop id (id −1, not counted, the streamer's held-back text flushed), a stop string
    /// (the streamer stops), or the budget. A token that does not end the request joins <see cref="History"/>.
    /// </summary>
    public GeneratedToken Accept(int id, int depth)
    {
        int index = Generated;
        if (StopIds.Contains(id)) return new GeneratedToken(-1, Streamer.Flush(), depth, index) { Finish = FinishReason.Stop };
        Generated++;
        string piece = Streamer.Push(id);
        FinishReason? finish = Streamer.Stopped ? FinishReason.Stop : Generated >= Budget ? FinishReason.Length : null;
        if (finish == FinishReason.Length) piece += Streamer.Flush();
        if (finish is null) History.Add(id);
        return new GeneratedToken(id, piece, depth, index) { Finish = finish };
    }

    /// <summary>How many of <paramref name="held"/> (tokens a cache row already holds) a new prompt can reuse: all of them when
    /// they are a proper prefix of the prompt, else none.</summary>
    public static int ReusablePrefix(IReadOnlyList<int> held, IReadOnlyList<int> prompt)
    {
        if (held.Count == 0 || held.Count >= prompt.Count) return 0;
        for (int i = 0; i < held.Count; i++) if (held[i] != prompt[i]) return 0;
        return held.Count;
    }

    /// <summary>The recursion depth that produced the next-token logits of row 0's last position: the router's choice, all
    /// N_r recursions for a plain recursive model, 0 for a vanilla one.</summary>
    public static int LastTokenDepth(Model.ModelOutput output, Model.RecursionLayout layout) =>
        output.Routing.Depth is { } d ? (int)d[0, -1].item<long>() : layout.Recursions.Length > 0 ? layout.NumRecursion : 0;

    public void Dispose() => Sampler.Dispose();
}
