using System.Diagnostics;
using System.Runtime.CompilerServices;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Kernels;
using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Inference;

/// <summary>
/// Single-sequence generation with a KV cache: one prefill call over the prompt, then one cached forward per token
/// (causal routing, so each token's depth is what the full forward would give). Requests run one at a time; the
/// batching engine serves many at once.
/// <see cref="GeneratedToken.Depth"/> is the number of recursions of the forward pass that predicted the token (the depth of
/// the position before it).
/// </summary>
public sealed class TextGenerator(MoRForCausalLM model, ITokenizer tokenizer, int? contextLength = null) : IGenerationService, IDisposable
{
    private readonly SemaphoreSlim gate = new(1, 1);
    private long tokensGenerated, promptTokens, completed;
    private readonly long[] perDepth = new long[model.Layout.NumRecursion + 1];
    private readonly Stopwatch busy = new();

    public ITokenizer Tokenizer => tokenizer;
    public int ContextLength { get; } = Math.Min(contextLength ?? model.Config.MaxPositionEmbeddings, model.Config.MaxPositionEmbeddings);
    public MoRForCausalLM Model => model;

    public GenerationMetrics Metrics => new(Interlocked.Read(ref tokensGenerated), Interlocked.Read(ref promptTokens),
        busy.Elapsed.TotalSeconds > 0 ? tokensGenerated / busy.Elapsed.TotalSeconds : 0, gate.CurrentCount == 0 ? 1 : 0,
        gate.CurrentCount == 0 ? 1 : 0, perDepth.ToArray(), Interlocked.Read(ref completed));

    public IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options,
        CancellationToken cancel = default) => GenerateAsync(promptIds, options, null, cancel);

    /// <summary>
    /// A conversation's KV cache kept between requests: when a new prompt starts with every token already cached (the earlier
    /// turns and replies), only the new tokens are run. Exact, because routing is causal: a cached prefix never changes.
    /// </summary>
    public sealed class Session(TextGenerator owner) : IDisposable
    {
        internal readonly Caching.KvCache Cache = owner.Model.CreateCache(1, owner.ContextLength);
        internal readonly List<int> Tokens = [];
        /// <summary>Tokens whose keys/values are cached.</summary>
        public int CachedTokens => Tokens.Count;
        /// <summary>Prompt tokens the last request did not have to run again.</summary>
        public int ReusedTokens { get; internal set; }
        public void Dispose() => Cache.Dispose();
    }

    public Session CreateSession() => new(this);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options, Session? session,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        options.Validate();
        var prompt = GenerationServiceExtensions.FitPrompt(promptIds, options, ContextLength, model.Config.VocabSize);
        await gate.WaitAsync(cancel).ConfigureAwait(false);
        try
        {
            using var request = new RequestState(prompt, options, tokenizer, ContextLength);
            using var ownCache = session is null ? model.CreateCache(1, prompt.Length + request.Budget) : null;
            var cache = ownCache ?? session!.Cache;
            int reuse = 0;
            if (session is not null)
            {
                reuse = RequestState.ReusablePrefix(session.Tokens, prompt);
                if (reuse == 0) { cache.Reset(0); session.Tokens.Clear(); }
                session.ReusedTokens = reuse;
                session.Tokens.AddRange(prompt.Skip(reuse));
            }
            Interlocked.Add(ref promptTokens, prompt.Length);
            busy.Start();
            try
            {
                var (next, depth) = Step(prompt[reuse..], cache, request.Sampler, request.History);
                while (true)
                {
                    cancel.ThrowIfCancellationRequested();
                    var token = request.Accept(next, depth);
                    if (token.Id >= 0)
                    {
                        Interlocked.Increment(ref tokensGenerated);
                        Interlocked.Increment(ref perDepth[Math.Min(depth, perDepth.Length - 1)]);
                    }
                    yield return token;
                    if (token.Finish is not null) yield break;
                    session?.Tokens.Add(next);
                    (next, depth) = Step([next], cache, request.Sampler, request.History);
                }
            }
            finally
            {
                busy.Stop();
                Interlocked.Increment(ref completed);
            }
        }
        finally { gate.Release(); }
    }

    /// <summary>Feeds tokens through the cached model and samples the next one. Synchronous, with its own grad mode and dispose
    /// scope (both are per thread in TorchSharp, and an async iterator may resume on another thread).</summary>
    private (int next, int depth) Step(int[] ids, Caching.KvCache cache, Sampler sampler, List<int> history)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        if (model.training) model.eval();
        (int next, int depth) result = default;
        void Run()
        {
            var input = torch.tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0);          // [1, T]
            var output = model.Forward(input, cache);
            result = (sampler.Next(output.Logits[0, -1], history), RequestState.LastTokenDepth(output, model.Layout));
        }
        // one new token: decode work, so keep the kernel threads awake for it; a prompt's prefill runs on libtorch's threads
        if (ids.Length == 1) KernelThreads.Hold(Run);
        else Run();
        return result;
    }

    public void Dispose() => gate.Dispose();
}
