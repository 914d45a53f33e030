using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using static TorchSharp.torch;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor bench generate</c>: decode throughput of vanilla vs MoR (N_r = 2, 3, 4) through the continuous batching engine,
/// at several batch sizes and at the largest batch a memory budget allows, all in one run with the models interleaved.
/// Random weights; MoR routing follows a stated exit distribution (see <c>--exit</c>), gates come from the routers.
/// </summary>
public sealed class BenchGenerateCommand : ICommand
{
    public string Name => "bench generate";
    public string Summary => "Decode throughput and latency: vanilla vs MoR N_r = 2, 3, 4 with continuous depth-wise batching.";
    public IReadOnlyList<string> Usage { get; } =
        ["mor bench generate [--shape micro|small|medium] [--recursions 2,3,4] [--batches 1,8,32] [--max-batch-at N] [--tokens N] [--weights float32|bfloat16] [--rounds R] [--json]"];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--shape", "NAME", "micro (d 256, 8 layers, 4/4 heads, FFN 768), small (SmolLM-135M: d 576, 30 layers, 9/3 heads, FFN 1536) or medium (SmolLM-360M, the paper's throughput model: d 960, 32 layers, 15/5 heads, FFN 2560); vocab 49152, tied (default micro)"),
        new("--recursions", "LIST", "MoR models to compare, by N_r (default 2,3,4); each against a vanilla model of the same unrolled depth"),
        new("--batches", "LIST", "batch sizes (default 1,8,32)"),
        new("--max-batch-at", "N", "also run at the largest batch that fits the memory a vanilla model needs at batch N (default 32; 0 = skip)"),
        new("--tokens", "N", "mean tokens generated per request (normal, sd N/4; default 128); prompts are a single EOS token"),
        new("--requests-per-row", "R", "requests per batch row, so finished rows are refilled from the queue (default 2)"),
        new("--exit", "uniform|router", "MoR exit depths: uniform over 1..N_r (= the default capacities N_r/N_r … 1/N_r; default), or the random routers' own decisions"),
        new("--exit-batch-fraction", "F", "exited tokens wait for the head until they are this fraction of the sequences in flight, 0–1 (default 0.75)"),
        new("--rounds", "R", "repeat the whole interleaved sweep R times: median tokens/s, and the median of the per-round ratios to vanilla (default 1)"),
        new("--weights", "T", "float32 (default) or bfloat16: the type every model holds its projection and embedding weights in (weight-only; activations, sums and the KV cache stay float32)"),
        new("--seed", "S", "seed of weights, lengths and exit draws (default 1)"),
        new("--prompt", "N", "instead: prompt processing — each model prefills one N-token prompt (random ids) and samples one token; tokens/s = N / time to first token (llama-bench's pp N)"),
        new("--soak", "N", "instead: generate N tokens in a loop (MoR-3, batch 8, rows refilled) and print resident memory every N/10 tokens"),
        new("--threads", "N", "torch threads (default: all cores)"),
        new("--json", null, "print JSON"),
    ];

    private sealed record Variant(string Name, ModelConfig Config, int NumRecursion, string Baseline);

    private sealed record Result(string Model, int Batch, string BatchLabel, long Tokens, double Seconds, double TokensPerSecond,
        double P50LatencyMs, double MeanDepth, double KvBytesPerTokenAccounting, double ParamBytes, double SharedBlockBatch)
    {
        public int Round { get; init; }
        /// <summary>Tokens/s over the baseline's in the same round (adjacent runs), one per round; the median is reported.</summary>
        public double[] RoundRatios { get; init; } = [];
        /// <summary>
        /// Tokens/s while every row was busy: from the start until the last queued request took its row (its first token),
        /// so the drain at the end, when fewer sequences are left than rows, is left out. NaN when no request queued.
        /// </summary>
        public double FullTokensPerSecond { get; init; } = double.NaN;
        public double[] FullRoundRatios { get; init; } = [];
    }

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string shape = o.Get("--shape") ?? "micro";
        if (shape is not ("micro" or "small" or "medium")) throw new UsageException($"--shape: expected micro, small or medium, got '{shape}'");
        var recursions = IntList(o.Get("--recursions") ?? "2,3,4", "--recursions");
        var batches = IntList(o.Get("--batches") ?? "1,8,32", "--batches");
        int maxAt = o.GetInt("--max-batch-at", 0) ?? 32;
        int meanTokens = o.GetInt("--tokens", 2) ?? 128;
        int perRow = o.GetInt("--requests-per-row", 1) ?? 2;
        int rounds = o.GetInt("--rounds", 1) ?? 1;
        int seed = o.GetInt("--seed") ?? 1;
        string exit = o.Get("--exit") ?? "uniform";
        if (exit is not ("uniform" or "router")) throw new UsageException($"--exit: expected uniform or router, got '{exit}'");
        double exitFraction = o.GetDouble("--exit-batch-fraction") ?? new EngineOptions().ExitBatchFraction;
        if (exitFraction is < 0 or > 1 || double.IsNaN(exitFraction))
            throw new UsageException($"--exit-batch-fraction: expected a number from 0 to 1, got {exitFraction.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        var weights = WeightsOption.Parse(o);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        int context = Math.Min(2048, 2 * meanTokens + 8);
        if (o.GetInt("--soak", 100) is int soak) return Soak(shape, soak, meanTokens, context, seed, weights, stdout, stderr);
        int? promptLength = o.GetInt("--prompt", 2);
        if (promptLength > MaxPrompt) throw new UsageException($"--prompt: at most {MaxPrompt} tokens, got {promptLength}");
        if (promptLength is int pl) context = pl + 8;

        // Models: each MoR-N_r against a vanilla model with the same unrolled depth (the paper compares MoR-4 with a 34-layer vanilla).
        var variants = new List<Variant>();
        foreach (int nr in recursions)
        {
            var mor = Shape(shape, nr, context);
            string vname = $"vanilla-{mor.NumHiddenLayers}L";
            if (variants.All(v => v.Name != vname)) variants.Add(new Variant(vname, Shape(shape, null, context, mor.NumHiddenLayers), 0, vname));
            variants.Add(new Variant($"MoR-{nr} ({mor.NumHiddenLayers}L)", mor, nr, vname));
        }
        var tokenizer = new IdsOnlyTokenizer(49152);   // random weights: the text is meaningless, only ids flow
        var models = variants.ToDictionary(v => v.Name, v => WeightsOption.Apply(new MoRForCausalLM(v.Config, seed), weights));
        try
        {
            if (promptLength is int promptTokens)
                return Prompts(models, variants, tokenizer, promptTokens, rounds, seed, context, shape, weights, stdout, stderr, o.Has("--json"));
            // Batch settings: fixed sizes, plus "max" = what fits the memory vanilla needs at batch maxAt.
            var runs = new List<(string variant, int batch, string label)>();
            foreach (int b in batches) foreach (var v in variants) runs.Add((v.Name, b, b.ToString(CultureInfo.InvariantCulture)));
            if (maxAt > 0)
                foreach (var v in variants)
                {
                    var baseline = variants.First(x => x.Name == v.Baseline);
                    double budget = Memory(models[baseline.Name], maxAt, context);
                    int fit = MaxBatch(models[v.Name], budget, context);
                    runs.Add((v.Name, fit, $"max={fit} (budget {Fmt.Bytes((long)budget)})"));
                }

            // Warm the process before the first timed run: the JIT recompiles the decode path's methods (tiering) during the
            // first seconds, and with both cores busy decoding that took long enough that the first model measured here ran
            // 20–35% slower than later ones (micro vanilla at batch 1: 90–115 tokens/s first in the process, 118–148 with
            // DOTNET_TieredCompilation=0). Each variant runs for a while at the smallest batch; RunOne warms each engine again.
            foreach (var v in variants) Warm(models[v.Name], tokenizer, v, batches.Min(), context, seed, seconds: 1.5);

            var all = new List<Result>();
            int total = runs.Count * rounds, done = 0;
            using (var bar = new ProgressBar("bench generate", total, stderr))
                for (int round = 0; round < rounds; round++)
                {
                    // Interleave: within each batch setting the models run back to back, alternating order between rounds.
                    var order = round % 2 == 0 ? runs : runs.AsEnumerable().Reverse().ToList();
                    foreach (var (name, batch, label) in order)
                    {
                        var v = variants.First(x => x.Name == name);
                        all.Add(RunOne(models[name], tokenizer, v, batch, label, meanTokens, perRow, exit, exitFraction, seed + round, context) with { Round = round });
                        bar.Report(++done);
                    }
                }

            // Ratios to vanilla are taken within each round (the two runs were adjacent), then their median: this machine's
            // speed drifts by tens of percent over minutes, so a ratio of two medians from different moments would mix that in.
            var results = all.GroupBy(r => (r.Model, r.BatchLabel)).Select(g => Median(g.ToList()) with
            {
                RoundRatios = g.Select(r => RoundRatio(r, all, variants, x => x.TokensPerSecond)).Where(x => !double.IsNaN(x)).Order().ToArray(),
                FullTokensPerSecond = MedianOf(g.Select(r => r.FullTokensPerSecond)),
                FullRoundRatios = g.Select(r => RoundRatio(r, all, variants, x => x.FullTokensPerSecond)).Where(x => !double.IsNaN(x)).Order().ToArray(),
            }).ToList();
            Print(results, variants, shape, exit, meanTokens, weights, stdout, o.Has("--json"));
        }
        finally { foreach (var m in models.Values) m.Dispose(); }
        return CommandLine.ExitOk;
    }

    private static Result RunOne(MoRForCausalLM model, ITokenizer tokenizer, Variant v, int batch, string label, int meanTokens,
        int perRow, string exit, double exitFraction, int seed, int context)
    {
        double[]? forced = v.NumRecursion > 0 && exit != "router" ? Enumerable.Repeat(1.0, v.NumRecursion).ToArray() : null;
        var engineOptions = new EngineOptions { MaxBatch = batch, MaxQueue = batch * perRow + 1, ContextLength = context, ForcedDepthDistribution = forced, ForcedDepthSeed = seed, ExitBatchFraction = exitFraction };
        using var engine = new BatchingEngine(model, tokenizer, engineOptions);
        var rng = new Random(seed);
        int eos = 0;
        // warm-up (allocator, thread pool, first-call costs, and the JIT's tiering of the decode path, which otherwise
        // recompiles hot methods on one of the two cores during the timed run): full batches of short requests for at least 1.5 s
        WarmEngine(engine, batch, 1.5);
        int requests = batch * perRow;
        var lengths = Enumerable.Range(0, requests).Select(_ =>
            (int)Math.Clamp(Math.Round(meanTokens + meanTokens / 4.0 * Gaussian(rng)), Math.Max(2, meanTokens / 4), 2 * meanTokens)).ToArray();
        var latencies = new double[requests];
        var times = new List<double>[requests];   // each request's token times (s from the start)
        var before = engine.Metrics;
        var clock = Stopwatch.StartNew();
        var tasks = lengths.Select((n, i) => Task.Run(async () =>
        {
            var mine = times[i] = new List<double>(n);
            await foreach (var t in engine.GenerateAsync([eos], Greedy(n)))
                if (t.Id >= 0) mine.Add(clock.Elapsed.TotalSeconds);
            latencies[i] = mine.Count > 1 ? (mine[^1] - mine[0]) / (mine.Count - 1) * 1000 : 0;
        })).ToArray();
        Task.WhenAll(tasks).GetAwaiter().GetResult();
        double seconds = clock.Elapsed.TotalSeconds;
        var after = engine.Metrics;
        // Every row was busy until the last queued request got its first token (it had waited for a free row).
        double lastStart = requests > batch ? times.Where(t => t.Count > 0).Max(t => t[0]) : 0;
        double full = lastStart > 0 ? times.Sum(t => t.Count(x => x <= lastStart)) / lastStart : double.NaN;
        long tokens = after.TokensGenerated - before.TokensGenerated;
        var depthCounts = after.TokensPerExitDepth.Select((c, d) => (c - before.TokensPerExitDepth[d], d)).ToArray();
        double meanDepth = depthCounts.Sum(x => x.Item1) > 0 ? depthCounts.Sum(x => (double)x.Item1 * x.d) / depthCounts.Sum(x => x.Item1) : 0;
        var acc = ModelAccounting.Compute(v.Config, context);
        double blockBatch = engine.RecursionSteps > 0 ? (double)engine.RecursionTokens / engine.RecursionSteps : 0;
        return new Result(v.Name, batch, label, tokens, seconds, tokens / seconds, Percentile(latencies, 0.5), meanDepth,
            acc.KvBytesPerTokenFp32, ParamBytes(model), blockBatch) { FullTokensPerSecond = full };
    }

    /// <summary>
    /// Prompt processing: each model prefills one <paramref name="length"/>-token prompt through the engine (as `mor serve`
    /// does: one cached forward over all but the last token, without the head, then the last token with the batch) and
    /// samples one token. tokens/s = length / time to first token, as llama-bench's pp test (logits for the last token only).
    /// </summary>
    private static int Prompts(Dictionary<string, MoRForCausalLM> models, List<Variant> variants, ITokenizer tokenizer, int length,
        int rounds, int seed, int context, string shape, ScalarType weights, TextWriter stdout, TextWriter stderr, bool json)
    {
        var rng = new Random(seed);
        var prompt = Enumerable.Range(0, length).Select(_ => rng.Next(1, 49152)).ToArray();
        var engines = variants.ToDictionary(v => v.Name, v => new BatchingEngine(models[v.Name], tokenizer,
            new EngineOptions { MaxBatch = 1, MaxQueue = 1, ContextLength = context }));
        try
        {
            var seconds = variants.ToDictionary(v => v.Name, _ => new List<double>());
            double Once(string name)
            {
                prompt[0] = rng.Next(1, 49152);   // a new first token: a row that still holds the last prompt must not reuse it
                long reused = engines[name].PromptTokensReused;
                var clock = Stopwatch.StartNew();
                engines[name].CompleteAsync(prompt, Greedy(1)).GetAwaiter().GetResult();
                double s = clock.Elapsed.TotalSeconds;
                if (engines[name].PromptTokensReused != reused) throw new InvalidOperationException("bench: the engine reused a cached prompt");
                return s;
            }
            foreach (var v in variants) { var warm = Stopwatch.StartNew(); do Once(v.Name); while (warm.Elapsed.TotalSeconds < 1.5); }
            int done = 0;
            using (var bar = new ProgressBar("bench generate --prompt", rounds * variants.Count, stderr))
                for (int round = 0; round < rounds; round++)
                    foreach (var v in round % 2 == 0 ? variants : variants.AsEnumerable().Reverse())
                    {
                        seconds[v.Name].Add(Once(v.Name));
                        bar.Report(++done);
                    }
            // The prompt's mean depth under the (random) routers' causal decisions, from one untimed full forward.
            var depth = variants.ToDictionary(v => v.Name, v =>
            {
                if (v.NumRecursion == 0) return double.NaN;
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var (_, stats) = models[v.Name].Model.Forward(tensor(prompt.Select(i => (long)i).ToArray()).unsqueeze(0), Routing.RoutingMode.Causal);
                return stats.TokensPerRecursion.Sum() / (double)stats.TotalTokens;
            });
            var rows = variants.Select(v =>
            {
                double median = seconds[v.Name].Order().ElementAt(rounds / 2);
                var ratios = Enumerable.Range(0, rounds).Select(r => seconds[v.Baseline][r] / seconds[v.Name][r]).Order().ToArray();
                return (v, median, tps: length / median, ratio: ratios[rounds / 2], lo: ratios[0], hi: ratios[^1]);
            }).ToList();
            if (json)
            {
                var arr = new JsonArray(rows.Select(r => (JsonNode)new JsonObject
                {
                    ["model"] = r.v.Name, ["prompt_tokens"] = length, ["seconds_to_first_token"] = r.median, ["tokens_per_second"] = r.tps,
                    ["ratio_to_vanilla"] = r.ratio, ["mean_depth"] = double.IsNaN(depth[r.v.Name]) ? null : depth[r.v.Name],
                    ["param_bytes"] = ParamBytes(models[r.v.Name]),
                    ["seconds_per_round"] = new JsonArray(seconds[r.v.Name].Select(x => (JsonNode)x).ToArray()),
                }).ToArray());
                stdout.WriteLine(new JsonObject { ["shape"] = shape, ["weights"] = WeightsOption.Name(weights), ["prompt_tokens"] = length, ["rounds"] = rounds, ["results"] = arr }
                    .ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return CommandLine.ExitOk;
            }
            var t = new ConsoleTable("model", "prompt", "ms to first token", "tokens/s", "× vanilla", "range", "mean depth");
            foreach (var r in rows)
                t.AddRow(r.v.Name, length, (r.median * 1000).ToString("F1", CultureInfo.InvariantCulture), r.tps.ToString("F1", CultureInfo.InvariantCulture),
                    r.ratio.ToString("F2", CultureInfo.InvariantCulture),
                    r.v.Name == r.v.Baseline || rounds < 2 ? "" : $"{r.lo.ToString("F2", CultureInfo.InvariantCulture)}–{r.hi.ToString("F2", CultureInfo.InvariantCulture)}",
                    double.IsNaN(depth[r.v.Name]) ? "–" : depth[r.v.Name].ToString("F2", CultureInfo.InvariantCulture));
            stdout.WriteLine(t.ToText());
            stdout.WriteLine($"shape {shape}; random {WeightsOption.Name(weights)} weights; one {length}-token prompt of random ids, one new token; " +
                             $"tokens/s = prompt tokens / time to first token (median of {rounds} round{(rounds == 1 ? "" : "s")}, models alternating); " +
                             "MoR depths = the random routers' causal decisions; × vanilla = median of the per-round ratios.");
            return CommandLine.ExitOk;
        }
        finally { foreach (var e in engines.Values) e.Dispose(); }
    }

    private const int MaxPrompt = 8192;

    private static void WarmEngine(BatchingEngine engine, int batch, double seconds)
    {
        var warm = Stopwatch.StartNew();
        do Task.WhenAll(Enumerable.Range(0, batch).Select(_ => engine.CompleteAsync([0], Greedy(16)))).GetAwaiter().GetResult();
        while (warm.Elapsed.TotalSeconds < seconds);
    }

    private static void Warm(MoRForCausalLM model, ITokenizer tokenizer, Variant v, int batch, int context, int seed, double seconds)
    {
        double[]? forced = v.NumRecursion > 0 ? Enumerable.Repeat(1.0, v.NumRecursion).ToArray() : null;
        using var engine = new BatchingEngine(model, tokenizer,
            new EngineOptions { MaxBatch = batch, ContextLength = context, ForcedDepthDistribution = forced, ForcedDepthSeed = seed });
        WarmEngine(engine, batch, seconds);
    }

    /// <summary>Generates <paramref name="total"/> tokens through the engine and reports resident memory along the way.</summary>
    private static int Soak(string shape, int total, int meanTokens, int context, int seed, ScalarType weights, TextWriter stdout, TextWriter stderr)
    {
        var config = Shape(shape, 3, context);
        using var model = WeightsOption.Apply(new MoRForCausalLM(config, seed), weights);
        using var engine = new BatchingEngine(model, new IdsOnlyTokenizer(config.VocabSize),
            new EngineOptions { MaxBatch = 8, ContextLength = context, ForcedDepthDistribution = [1, 1, 1], ForcedDepthSeed = seed });
        var table = new ConsoleTable("tokens", "RSS", "tokens/s");
        var options = new GenerationOptions { MaxTokens = meanTokens, Sampling = new SamplingOptions { Seed = seed }, StopTokenIds = [] };
        long next = 0, step = Math.Max(1, total / 10);
        var clock = Stopwatch.StartNew();
        using (var bar = new ProgressBar("soak", total, stderr))
        while (engine.Metrics.TokensGenerated < total)
        {
            Task.WhenAll(Enumerable.Range(0, 16).Select(_ => engine.CompleteAsync([0], options))).GetAwaiter().GetResult();
            long done = engine.Metrics.TokensGenerated;
            bar.Report(Math.Min(done, total));
            if (done >= next)
            {
                GC.Collect();
                table.AddRow(done, Fmt.Bytes(ResourceUsage.CurrentRssBytes()), (done / clock.Elapsed.TotalSeconds).ToString("F1", CultureInfo.InvariantCulture));
                next += step;
            }
        }
        stdout.WriteLine(table.ToText());
        stdout.WriteLine($"MoR-3 ({config.NumHiddenLayers}L, {shape}, {WeightsOption.Name(weights)} weights), batch 8, {meanTokens} tokens per request, rows refilled from the queue.");
        return CommandLine.ExitOk;
    }

    private static GenerationOptions Greedy(int n) => new() { MaxTokens = n, Sampling = SamplingOptions.Greedy, StopTokenIds = [] };

    /// <summary>Parameters (as stored) + KV cache (fp32) of <paramref name="batch"/> sequences of <paramref name="context"/> tokens.</summary>
    private static double Memory(MoRForCausalLM model, int batch, int context) =>
        ParamBytes(model) + batch * (double)context * ModelAccounting.Compute(model.Config, context).KvBytesPerTokenFp32;

    private static int MaxBatch(MoRForCausalLM model, double budget, int context) =>
        Math.Max(1, (int)Math.Floor((budget - ParamBytes(model)) / (context * ModelAccounting.Compute(model.Config, context).KvBytesPerTokenFp32)));

    private static double ParamBytes(MoRForCausalLM model) => model.parameters().Sum(p => (double)p.numel() * p.element_size());

    /// <summary>
    /// The benchmark shapes (vocab 49152, tied, as the llama.cpp reference runs); MoR = expert-choice Middle-Cycle. Also
    /// used by bench/MoRSharp.LlamaCpp, which runs llama.cpp on the same shapes.
    /// </summary>
    public static ModelConfig Shape(string shape, int? nr, int context, int? vanillaLayers = null)
    {
        (int d, int ffn, int heads, int kv, int layers) = shape switch
        {
            "micro" => (256, 768, 4, 4, 8),
            "small" => (576, 1536, 9, 3, 30),
            "medium" => (960, 2560, 15, 5, 32),     // the paper measures throughput on 360M-based models (spec §5.2)
            _ => throw new ArgumentException($"benchmark shape: expected micro, small or medium, got '{shape}'"),
        };
        int depth = vanillaLayers ?? layers;
        MoRConfig? mor = null;
        if (nr is int n)
        {
            int block = Math.Max(1, (int)Math.Ceiling((layers - 2) / (double)n));   // the paper adds layers when L − 2 is not divisible (135M N_r = 3 → 32)
            depth = 1 + block * n + 1;
            mor = new MoRConfig
            {
                NumRecursion = n, Sharing = "middle_cycle", Routing = "expert", RouterArch = "linear", RouterFunc = "sigmoid",
                Alpha = 0.1, AuxLoss = "bce", KvCache = "recursion_wise",
            };
        }
        return new ModelConfig
        {
            HiddenSize = d, IntermediateSize = ffn, NumHiddenLayers = depth, NumAttentionHeads = heads, NumKeyValueHeads = kv,
            VocabSize = 49152, MaxPositionEmbeddings = context, TieWordEmbeddings = true, InitializerRange = 0.02, MoR = mor,
        };
    }

    private static void Print(List<Result> results, List<Variant> variants, string shape, string exit, int meanTokens, ScalarType weights, TextWriter stdout, bool json)
    {
        static double Mid(double[] xs) => xs.Length == 0 ? double.NaN : xs[xs.Length / 2];
        static double Ratio(Result r) => Mid(r.RoundRatios);
        static string F(double x, string format) => double.IsNaN(x) ? "" : x.ToString(format, CultureInfo.InvariantCulture);
        if (json)
        {
            var arr = new JsonArray(results.Select(r => (JsonNode)new JsonObject
            {
                ["model"] = r.Model, ["batch"] = r.Batch, ["batch_setting"] = r.BatchLabel, ["tokens"] = r.Tokens, ["seconds"] = r.Seconds,
                ["tokens_per_second"] = r.TokensPerSecond, ["ratio_to_vanilla"] = Ratio(r),
                ["ratio_to_vanilla_per_round"] = new JsonArray(r.RoundRatios.Select(x => (JsonNode)x).ToArray()), ["p50_token_latency_ms"] = r.P50LatencyMs,
                ["mean_depth"] = r.MeanDepth, ["kv_bytes_per_token"] = r.KvBytesPerTokenAccounting, ["param_bytes"] = r.ParamBytes,
                ["mean_shared_block_batch"] = r.SharedBlockBatch,
                ["full_batch_tokens_per_second"] = double.IsNaN(r.FullTokensPerSecond) ? null : r.FullTokensPerSecond,
                ["full_batch_ratio_to_vanilla"] = double.IsNaN(Mid(r.FullRoundRatios)) ? null : Mid(r.FullRoundRatios),
                ["full_batch_ratio_to_vanilla_per_round"] = new JsonArray(r.FullRoundRatios.Select(x => (JsonNode)x).ToArray()),
            }).ToArray());
            stdout.WriteLine(new JsonObject { ["shape"] = shape, ["weights"] = WeightsOption.Name(weights), ["exit"] = exit, ["mean_tokens"] = meanTokens, ["results"] = arr }
                .ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return;
        }
        bool rounds = results.Any(r => r.RoundRatios.Length > 1);
        var header = new List<string> { "model", "batch", "tokens/s", "× vanilla" };
        if (rounds) header.Add("range");
        header.AddRange(["full-batch tokens/s", "× vanilla (full)"]);
        if (rounds) header.Add("range (full)");
        header.AddRange(["p50 ms/token", "mean depth", "block batch", "KV bytes/token"]);
        var t = new ConsoleTable(header.ToArray());
        string Range(Result r, double[] ratios) => ratios.Length > 1 && r.Model != variants.First(v => v.Name == r.Model).Baseline
            ? $"{F(ratios[0], "F2")}–{F(ratios[^1], "F2")}" : "";
        foreach (var r in results.OrderBy(r => r.BatchLabel.StartsWith("max") ? int.MaxValue : r.Batch).ThenBy(r => variants.FindIndex(v => v.Name == r.Model)))
        {
            var cells = new List<object> { r.Model, r.BatchLabel, F(r.TokensPerSecond, "F1"), F(Ratio(r), "F2") };
            if (rounds) cells.Add(Range(r, r.RoundRatios));
            cells.AddRange([F(r.FullTokensPerSecond, "F1"), F(Mid(r.FullRoundRatios), "F2")]);
            if (rounds) cells.Add(Range(r, r.FullRoundRatios));
            cells.AddRange(
            [
                r.P50LatencyMs.ToString("F1", CultureInfo.InvariantCulture),
                variants.First(v => v.Name == r.Model).NumRecursion == 0 ? "–" : r.MeanDepth.ToString("F2", CultureInfo.InvariantCulture),
                r.SharedBlockBatch > 0 ? r.SharedBlockBatch.ToString("F1", CultureInfo.InvariantCulture) : "",
                Fmt.Bytes((long)r.KvBytesPerTokenAccounting),
            ]);
            t.AddRow(cells.ToArray());
        }
        stdout.WriteLine(t.ToText());
        stdout.WriteLine($"shape {shape}; random {WeightsOption.Name(weights)} weights; MoR exits {(exit == "router" ? "decided by the (random) routers" : "drawn uniformly over 1..N_r (the default capacities)")}; " +
                         $"prompts = one token, ~{meanTokens} new tokens each; tokens/s = generated tokens / wall time of the whole batch run; " +
                         "full-batch = only while every row was busy (until the last queued request started), without the drain at the end." +
                         (rounds ? " With rounds: tokens/s is the median run; × vanilla is the median of the per-round ratios (adjacent runs), range = their lowest and highest." : ""));
    }

    // r's metric over its baseline's in the same round and batch setting ("max" settings pair with each other).
    private static double RoundRatio(Result r, List<Result> all, List<Variant> variants, Func<Result, double> metric)
    {
        var v = variants.First(x => x.Name == r.Model);
        var baseRow = all.FirstOrDefault(x => x.Round == r.Round && x.Model == v.Baseline
            && (x.BatchLabel == r.BatchLabel || (r.BatchLabel.StartsWith("max") && x.BatchLabel.StartsWith("max"))));
        return baseRow is null ? double.NaN : metric(r) / metric(baseRow);   // NaN stays NaN (no full-batch window)
    }

    private static double MedianOf(IEnumerable<double> xs)
    {
        var s = xs.Where(x => !double.IsNaN(x)).Order().ToList();
        return s.Count == 0 ? double.NaN : s[s.Count / 2];
    }

    private static Result Median(List<Result> rs)
    {
        var sorted = rs.OrderBy(r => r.TokensPerSecond).ToList();
        return sorted[sorted.Count / 2];
    }

    private static double Percentile(double[] xs, double q)
    {
        var s = xs.Where(x => x > 0).OrderBy(x => x).ToArray();
        return s.Length == 0 ? 0 : s[(int)Math.Min(s.Length - 1, Math.Floor(q * s.Length))];
    }

    private static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    private static int[] IntList(string s, string option)
    {
        try
        {
            var list = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            if (list.Length == 0 || list.Any(x => x < 1)) throw new FormatException();
            return list;
        }
        catch (FormatException) { throw new UsageException($"{option}: expected a comma-separated list of positive integers, got '{s}'"); }
    }

    /// <summary>A tokenizer for benchmarks over random weights: ids only, every token's text is empty.</summary>
    public sealed class IdsOnlyTokenizer(int vocab) : ITokenizer
    {
        public string Name => "ids";
        public int VocabSize => vocab;
        public int? EosId => null;
        public int? BosId => null;
        public int[] Encode(string text) => throw new NotSupportedException("the benchmark tokenizer has no text");
        public string Decode(ReadOnlySpan<int> ids) => "";
        public string DecodeToken(int id) => "";
        public void SaveTo(string directory) => throw new NotSupportedException("the benchmark tokenizer is not saved");
    }
}
