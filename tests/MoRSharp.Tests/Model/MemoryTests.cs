using System.Diagnostics;
using MoRSharp.Model;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Model;

/// <summary>Runs alone (after the parallel tests): other tests' allocations would show in this process's RSS.</summary>
[CollectionDefinition(nameof(MemoryTests), DisableParallelization = true)]
public class MemoryCollection;

[Collection(nameof(MemoryTests))]
public class MemoryTests(ITestOutputHelper output)
{
    /// <summary>
    /// 200 AdamW steps of a micro MoR model: no tensor outlives its step, and resident memory stops growing once the
    /// allocator has warmed up (glibc arenas grow for the first ~100 steps, then stay flat: measured 289 → 296 → 300 → 300 MB
    /// at steps 100/200/300/600). A per-step leak of activations would add megabytes every step.
    /// </summary>
    [Fact]
    public void No_native_memory_growth_over_200_training_steps()
    {
        var config = TestConfigs.Tiny("expert", numRecursion: 3, blockSize: 2, hidden: 128, heads: 4, kvHeads: 2, vocab: 512, context: 64);
        using var model = new MoRForCausalLM(config, seed: 31);
        model.train();
        using var opt = optim.AdamW(model.parameters(), lr: 1e-3, beta1: 0.9, beta2: 0.95, weight_decay: 0.1);
        using var ids = ModelTestUtil.RandomIds(4, 64, config.VocabSize, 32);
        var process = Process.GetCurrentProcess();
        long liveAfterWarmup = 0, rssAfterWarmup = 0;
        const int warmup = 100, steps = 200;
        for (int step = 0; step < steps; step++)
        {
            ModelTestUtil.TrainStep(model, opt, ids);
            if (step == warmup - 1)
            {
                GC.Collect(); GC.WaitForPendingFinalizers();
                process.Refresh();
                liveAfterWarmup = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                rssAfterWarmup = process.WorkingSet64;
            }
        }
        GC.Collect(); GC.WaitForPendingFinalizers();
        process.Refresh();
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long growth = process.WorkingSet64 - rssAfterWarmup;
        output.WriteLine($"live tensors after warm-up {liveAfterWarmup}, at the end {live}; RSS growth over {steps - warmup} steps: {growth / 1e6:F1} MB");
        Assert.Equal(liveAfterWarmup, live);
        Assert.True(growth < 24_000_000, $"resident memory grew by {growth / 1e6:F1} MB");
    }

    /// <summary>
    /// Generation through the batching engine (4 concurrent sequences, rows freed and refilled): after a warm-up of 1,000
    /// tokens, 4,000 more leave resident memory flat — every engine step runs in its own dispose scope and the KV cache is
    /// allocated once. (`mor bench generate --soak 10000` runs the 10,000-token version and prints the RSS curve.)
    /// </summary>
    [Fact]
    public async Task No_memory_growth_while_generating()
    {
        using var model = MoRSharp.Tests.Inference.BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 33, context: 96);
        using var engine = new MoRSharp.Inference.BatchingEngine(model, MoRSharp.Data.Tokenizers.TokenizerFactory.Bytes(),
            new MoRSharp.Inference.EngineOptions { MaxBatch = 4 });
        var options = new MoRSharp.Inference.GenerationOptions { MaxTokens = 50, Sampling = new() { Seed = 1 }, StopTokenIds = [] };
        async Task Generate(int tokens)
        {
            long start = engine.Metrics.TokensGenerated;
            while (engine.Metrics.TokensGenerated - start < tokens)
                await Task.WhenAll(Enumerable.Range(0, 8).Select(i => MoRSharp.Inference.GenerationServiceExtensions.CompleteAsync(engine, [65 + i], options)));
        }
        await Generate(1000);
        GC.Collect(); GC.WaitForPendingFinalizers();
        var process = Process.GetCurrentProcess();
        process.Refresh();
        long rss0 = process.WorkingSet64;
        await Generate(4000);
        GC.Collect(); GC.WaitForPendingFinalizers();
        process.Refresh();
        long growth = process.WorkingSet64 - rss0;
        output.WriteLine($"RSS growth over 4,000 generated tokens: {growth / 1e6:F1} MB");
        Assert.True(growth < 16_000_000, $"resident memory grew by {growth / 1e6:F1} MB while generating");
    }
}
