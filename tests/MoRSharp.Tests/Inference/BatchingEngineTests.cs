using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Model;

namespace MoRSharp.Tests.Inference;

/// <summary>The continuous depth-wise batching engine decodes each sequence exactly as the single-sequence generator does.</summary>
public class BatchingEngineTests
{
    public static TheoryData<string, string, string> Models => TestConfigs.ModelKinds;

    internal static MoRForCausalLM Build(string routing, string sharing, string kv, long seed, int vocab = 257, int context = 96)
    {
        var config = sharing == "none" ? TestConfigs.Tiny(sharing: "none", blockSize: 4, vocab: vocab, context: context)
            : TestConfigs.Tiny(routing, sharing, vocab: vocab, context: context);
        if (config.MoR is not null) config.MoR.KvCache = kv;
        var model = new MoRForCausalLM(config, seed);
        model.eval();
        return model;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public Task Concurrent_sequences_decode_as_they_would_alone(string routing, string sharing, string kv) =>
        DecodeAsAlone(routing, sharing, kv);

    /// <summary>The same with the decode kernels off: the engine's tensor path (index tensors and query positions built
    /// from the cache groups' host members, scaled-dot-product attention per slot group) and libtorch's products.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public async Task Concurrent_sequences_decode_as_they_would_alone_with_the_kernels_off(string routing, string sharing, string kv)
    {
        using var off = MoRSharp.Kernels.SmallGemm.Disable();
        Assert.False(MoRSharp.Kernels.SmallGemm.IsEnabled);
        await DecodeAsAlone(routing, sharing, kv);
    }

    private static async Task DecodeAsAlone(string routing, string sharing, string kv)
    {
        using var model = Build(routing, sharing, kv, 41);
        var tokenizer = TokenizerFactory.Bytes();
        string[] prompts = ["The cat", "Once upon a time there", "x", "1 + 2 =", "((()", "hello world, again and again"];
        int[] lengths = [12, 7, 20, 3, 15, 9];
        var expected = new List<(int[] ids, int[] depths)>();
        using (var single = new TextGenerator(model, tokenizer))
            for (int i = 0; i < prompts.Length; i++)
            {
                var (_, toks, _) = await single.CompleteAsync(tokenizer.Encode(prompts[i]), Options(lengths[i]));
                Assert.Equal(lengths[i], toks.Count);
                expected.Add((toks.Select(t => t.Id).ToArray(), toks.Select(t => t.Depth).ToArray()));
            }

        // 3 rows for 6 requests: sequences finish at different times and queued ones take their rows mid-flight.
        using var engine = new BatchingEngine(model, tokenizer, new EngineOptions { MaxBatch = 3 });
        var tasks = prompts.Select((p, i) => engine.CompleteAsync(tokenizer.Encode(p), Options(lengths[i]))).ToArray();
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(expected[i].ids, results[i].tokens.Select(t => t.Id).ToArray());
            Assert.Equal(expected[i].depths, results[i].tokens.Select(t => t.Depth).ToArray());
        }
        Assert.True(engine.ExitSteps > 0);
        if (sharing != "none") Assert.True(engine.RecursionTokens > engine.RecursionSteps, "the shared block never ran more than one token at once");
        if (routing != "none")
        {
            var all = results.SelectMany(r => r.tokens.Select(t => t.Depth)).ToArray();
            Assert.True(all.Distinct().Count() > 1, "every token had the same depth: the test would not show depth-wise batching");
        }
    }

    private static GenerationOptions Options(int max) => new()
    {
        MaxTokens = max, Sampling = SamplingOptions.Greedy, StopTokenIds = [],
    };

    [Fact]
    public async Task Forced_depth_distribution_sets_the_exit_depths()
    {
        using var model = Build("expert", "middle_cycle", "recursion_wise", 42);
        using var engine = new BatchingEngine(model, TokenizerFactory.Bytes(),
            new EngineOptions { MaxBatch = 4, ForcedDepthDistribution = [0, 1, 0] });
        var (_, tokens, _) = await engine.CompleteAsync([65, 66], Options(10));
        // the first token comes from the prefill (causal rule); every later one ran exactly 2 recursions
        Assert.All(tokens.Skip(1), t => Assert.Equal(2, t.Depth));
    }

    [Fact]
    public async Task Full_queue_is_refused_and_cancellation_frees_the_row()
    {
        using var model = Build("none", "none", "recursion_wise", 43);
        using var engine = new BatchingEngine(model, TokenizerFactory.Bytes(), new EngineOptions { MaxBatch = 1, MaxQueue = 1 });
        using var cts = new CancellationTokenSource();
        var first = engine.GenerateAsync([65], Options(80), cts.Token).GetAsyncEnumerator();
        Assert.True(await first.MoveNextAsync());                                // running in the only row
        var second = engine.CompleteAsync([66], Options(3));                      // waits in the queue
        await Assert.ThrowsAsync<QueueFullException>(async () => await engine.CompleteAsync([67], Options(3)));
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { while (await first.MoveNextAsync()) { } });
        var (_, tokens, finish) = await second;                                    // took the freed row
        Assert.Equal(3, tokens.Count);
        Assert.Equal(FinishReason.Length, finish);
    }

    [Fact]
    public async Task Bad_requests_are_clear_errors()
    {
        using var model = Build("none", "none", "recursion_wise", 44, context: 16);
        using var engine = new BatchingEngine(model, TokenizerFactory.Bytes(), new EngineOptions { MaxBatch = 2 });
        var tooLong = Enumerable.Repeat(65, 16).ToArray();
        var e = await Assert.ThrowsAsync<ArgumentException>(async () => await engine.CompleteAsync(tooLong, Options(4)));
        Assert.Contains("do not fit the context of 16", e.Message);
        var (_, kept, _) = await engine.CompleteAsync(tooLong, Options(4) with { TruncatePrompt = true });
        Assert.Single(kept);                                                       // 15 prompt tokens leave room for 1
        e = await Assert.ThrowsAsync<ArgumentException>(async () =>
            await engine.CompleteAsync([65], Options(4) with { Sampling = new SamplingOptions { TopP = 1.5 } }));
        Assert.StartsWith("top_p", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(async () => await engine.CompleteAsync([999], Options(4)));
        Assert.Contains("outside the vocabulary", e.Message);
    }

    [Fact]
    public async Task The_next_turn_of_a_conversation_reuses_the_cached_prefix()
    {
        using var model = Build("expert", "middle_cycle", "recursion_wise", 45);
        var tok = TokenizerFactory.Bytes();
        using var engine = new BatchingEngine(model, tok, new EngineOptions { MaxBatch = 2 });
        var first = tok.Encode("User: hi\nAssistant:");
        var (_, reply, _) = await engine.CompleteAsync(first, Options(6));
        var second = first.Concat(reply.Select(t => t.Id)).Concat(tok.Encode("\nUser: more\nAssistant:")).ToArray();
        var (_, continued, _) = await engine.CompleteAsync(second, Options(6));
        Assert.Equal(first.Length + reply.Count - 1, engine.PromptTokensReused);   // the last reply token was never fed
        using var fresh = new BatchingEngine(model, tok, new EngineOptions { MaxBatch = 2 });
        var (_, expected, _) = await fresh.CompleteAsync(second, Options(6));
        Assert.Equal(expected.Select(t => (t.Id, t.Depth)), continued.Select(t => (t.Id, t.Depth)));
        Assert.Equal(0, fresh.PromptTokensReused);
    }
}
