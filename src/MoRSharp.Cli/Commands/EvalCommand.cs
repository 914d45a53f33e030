using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Evaluation;
using MoRSharp.Evaluation.Tasks;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Routing;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor eval</c>: perplexity and bits per byte of a text file, a folder of text files or a token shard
/// (<c>--text</c>/<c>--tokens</c>), or few-shot tasks with lm-evaluation-harness semantics (<c>--tasks</c>). MoR models are
/// always scored with the causal routing rule, except <c>--topk-routing</c> for perplexity (labelled as leaking the future).
/// </summary>
public sealed class EvalCommand : ICommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public string Name => "eval";
    public string Summary => "Evaluate a model: perplexity and bits per byte, or few-shot tasks (HellaSwag, PIQA, ARC, WinoGrande, LAMBADA, OpenBookQA).";
    public IReadOnlyList<string> Usage { get; } =
    [
        "mor eval --model DIR --text FILE|DIR [--seq T] [--stride S] [--topk-routing] [--json]",
        "mor eval --model DIR --tokens FILE.bin|DIR [--split val|train] [--seq T] [--stride S] [--json]",
        "mor eval --task image-classification|audio-classification --model DIR [--data PATH] [--depth-map DIR] [--json]",
        "mor eval --model DIR --tasks hellaswag,piqa,arc_easy,arc_challenge,winogrande,lambada,openbookqa [--data-dir PATH] [--shots K] [--limit N] [--batch N] [--seed S] [--json]",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "a model folder (config.json, model.safetensors, tokenizer files), e.g. the --out of mor train"),
        new("--text", "FILE|DIR", "UTF-8 text to score: a file (one stream), or a folder (every .txt below it, each its own stream)"),
        new("--tokens", "FILE|DIR", "a token shard from mor data prepare (.bin), or a prepared folder (its val.bin)"),
        new("--split", "val|train", "with --tokens DIR: which shard (default val)"),
        new("--seq", "T", "perplexity window in tokens (default: the model's context, at most 1024)"),
        new("--stride", "S", "new tokens scored per window, ≤ T − 1 (default T − 1; smaller gives each token more context)"),
        new("--topk-routing", null, "perplexity only: score MoR with training-style top-k routing (leaks future tokens; for comparison)"),
        new("--tasks", "LIST", $"comma-separated tasks: {string.Join(", ", TaskRegistry.Names)}"),
        new("--data-dir", "PATH", $"the eval data folder (default: shared/data/eval, found like the tests find it, or ${SharedDataPath.EnvironmentVariable}/eval)"),
        new("--shots", "K", "few-shot examples per item (default 0); refused for tasks whose data has no split to draw them from"),
        new("--limit", "N", "evaluate only the first N items of each task"),
        new("--batch", "N", "rows per forward pass when scoring tasks (default 8)"),
        new("--scorer", "shared|batched", "batched (default): full context+choice rows, several items per pass; shared: an item's shared context runs once (KV-cached), then its choices — 1.8× faster 5-shot"),
        new("--seed", "S", "few-shot sampling seed (default 1234, the harness' default)"),
        new("--threads", "N", "torch threads"),
        new("--json", null, "print JSON"),
        new("--task", "TASK", "image-classification | audio-classification: accuracy, confusion matrix and FLOPs per example of a classifier"),
        new("--data", "PATH", "with --task: the MNIST or FSDD folder (default: the one the model was trained on)"),
        new("--depth-map", "DIR", "with --task: write PNGs of the recursion depth per patch (images) or per frame (audio)"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string dir = o.Get("--model") ?? throw new UsageException("--model DIR is required");
        if (o.Get("--task") is { } task) return ClassificationTasks.Eval(task, dir, o, stdout, stderr);
        if (o.Has("--data") || o.Has("--depth-map")) throw new UsageException("--data and --depth-map go with --task");
        int modes = (o.Has("--text") ? 1 : 0) + (o.Has("--tokens") ? 1 : 0) + (o.Has("--tasks") ? 1 : 0);
        if (modes != 1) throw new UsageException("give one of --text FILE|DIR, --tokens FILE|DIR or --tasks LIST");
        if (o.Has("--tasks"))
        {
            foreach (var name in new[] { "--seq", "--stride", "--topk-routing", "--split" })
                if (o.Has(name)) throw new UsageException($"{name} applies to --text/--tokens, not --tasks" +
                    (name == "--topk-routing" ? " (tasks are scored with causal routing: top-k routing would let padding and later tokens change the scores)" : ""));
            return Tasks(dir, o, stdout, stderr);
        }
        foreach (var name in new[] { "--data-dir", "--shots", "--limit", "--batch", "--seed", "--scorer" })
            if (o.Has(name)) throw new UsageException($"{name} applies to --tasks");
        if (o.Has("--split") && !o.Has("--tokens")) throw new UsageException("--split applies to --tokens");
        return PerplexityRun(dir, o, stdout, stderr);
    }

    private static (MoRForCausalLM, ITokenizer) Load(string dir, ParsedOptions o)
    {
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        return Checkpoint.LoadModelFolder(dir);
    }

    private static int PerplexityRun(string dir, ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string? textPath = o.Get("--text");
        string? tokensPath = o.Get("--tokens");
        var files = textPath is not null ? PerplexityInputs.TextFiles(textPath) : null;
        if (tokensPath is not null && !File.Exists(tokensPath) && !Directory.Exists(tokensPath))
            throw new FileNotFoundException($"--tokens: {tokensPath} does not exist");
        var (model, tokenizer) = Load(dir, o);
        using var _ = model;
        int seq = o.GetInt("--seq", 2) ?? Math.Min(1024, model.Config.MaxPositionEmbeddings);
        int stride = o.GetInt("--stride", 1) ?? seq - 1;
        var mode = o.Has("--topk-routing") ? RoutingMode.TopK : RoutingMode.Causal;
        IReadOnlyList<string> names = files ?? [tokensPath!];
        var inputs = files is not null
            ? PerplexityInputs.FromText(files, tokenizer)
            : [PerplexityInputs.FromShard(tokensPath!, tokenizer, o.Get("--split") ?? "val")];
        (PerplexityResult Total, IReadOnlyList<(string Name, PerplexityResult Result)> Parts) r;
        using (var bar = new ProgressBar("eval", 1000, stderr))
            r = Perplexity.ScoreAll(model, names, inputs, seq, stride, mode, new SyncProgress<double>(f => bar.Report((long)(f * 1000))));
        var total = r.Total;
        if (o.Has("--json"))
        {
            var json = new JsonObject
            {
                ["model"] = dir, [textPath is not null ? "text" : "tokens"] = textPath ?? tokensPath, ["tokens"] = total.Tokens, ["bytes"] = total.Bytes,
                ["seq"] = total.Window, ["stride"] = total.Stride, ["routing"] = total.Routing, ["nll_per_token"] = total.NllPerToken,
                ["perplexity"] = total.Perplexity, ["bits_per_byte"] = total.BitsPerByte,
            };
            if (r.Parts.Count > 1 || files is { Count: > 1 })
                json["files"] = new JsonArray(r.Parts.Select(p => (JsonNode)new JsonObject
                {
                    ["path"] = p.Name, ["tokens"] = p.Result.Tokens, ["bytes"] = p.Result.Bytes, ["nll_per_token"] = p.Result.NllPerToken,
                    ["perplexity"] = p.Result.Perplexity, ["bits_per_byte"] = p.Result.BitsPerByte,
                }).ToArray());
            stdout.WriteLine(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return CommandLine.ExitOk;
        }
        var t = new ConsoleTable("input", "tokens", "NLL/token", "perplexity", "bits/byte", "window/stride", "routing");
        void Row(string name, PerplexityResult p) => t.AddRow(name, p.Tokens, p.NllPerToken.ToString("F4", Inv), p.Perplexity.ToString("F2", Inv),
            p.BitsPerByte.ToString("F4", Inv), $"{p.Window}/{p.Stride}", p.Routing);
        string root = textPath is not null && Directory.Exists(textPath) ? textPath : Path.GetDirectoryName(names[0]) ?? "";
        if (r.Parts.Count > 1)
            foreach (var (name, p) in r.Parts) Row(Path.GetRelativePath(root, name), p);
        Row(r.Parts.Count > 1 ? $"total ({r.Parts.Count} files)" : Path.GetFileName(r.Parts[0].Name), total);
        stdout.WriteLine(t.ToText());
        return CommandLine.ExitOk;
    }

    private static int Tasks(string dir, ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        var names = (o.Get("--tasks") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0) throw new UsageException("--tasks: give at least one task");
        var tasks = new List<EvalTask>();
        foreach (var name in names)
        {
            try { tasks.Add(TaskRegistry.Get(name)); }
            catch (ArgumentException e) { throw new UsageException("--tasks: " + e.Message); }
        }
        if (tasks.Distinct().Count() != tasks.Count) throw new UsageException("--tasks: a task is named twice");
        var options = new TaskRunOptions { Shots = o.GetInt("--shots", 0) ?? 0, Limit = o.GetInt("--limit", 1), Seed = o.GetInt("--seed") ?? 1234 };
        var refused = tasks.Where(t => options.Shots > 0 && t.Shots == ShotSource.None).Select(t => t.Name).ToList();
        if (refused.Count > 0)
            throw new UsageException($"--shots {options.Shots}: {string.Join(", ", refused)} ha{(refused.Count == 1 ? "s" : "ve")} no split to draw examples " +
                                     $"from in the data (only the evaluated one); run {(refused.Count == 1 ? "it" : "them")} 0-shot. Few-shot works for: " +
                                     string.Join(", ", TaskRegistry.All.Where(t => t.Shots != ShotSource.None).Select(t => $"{t.Name} ({t.ShotSplit})")));
        string dataDir = o.Get("--data-dir") ?? Path.Combine(SharedDataPath.Locate(), "eval");
        if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"--data-dir: {dataDir} does not exist");
        int batch = o.GetInt("--batch", 1) ?? 8;

        var (model, tokenizer) = Load(dir, o);
        using var _ = model;
        string scorerName = o.Get("--scorer") ?? "batched";   // measured faster on HellaSwag here (docs/benchmarks.md)
        IContinuationScorer scorer = scorerName switch
        {
            "shared" => new SharedContextScorer(model, batch),
            "batched" => new BatchedScorer(model, batch, padId: tokenizer.EosId ?? 0),
            _ => throw new UsageException($"--scorer: expected shared or batched, got '{scorerName}'"),
        };
        var evaluator = new TaskEvaluator(tokenizer, scorer);
        stderr.WriteLine($"{dir}: causal routing, {scorerName} scorer, batch {batch}, max length {scorer.MaxLength}, {options.Shots}-shot" +
                         (options.Shots > 0 ? $" (seed {options.Seed})" : "") + (options.Limit is int l ? $", first {l} items per task" : ""));
        var results = new List<TaskResult>();
        foreach (var task in tasks)
        {
            var prepared = evaluator.Prepare(task, dataDir, options);
            using var bar = new ProgressBar(task.Name, prepared.Requests, stderr);
            results.Add(evaluator.Score(prepared, new SyncProgress<long>(n => bar.Report(n))));
        }

        if (o.Has("--json"))
        {
            var json = new JsonObject();
            foreach (var r in results) json[r.Task] = Json(r);
            stdout.WriteLine(new JsonObject
            {
                ["model"] = dir, ["data_dir"] = dataDir, ["routing"] = "causal", ["shots"] = options.Shots, ["seed"] = options.Seed,
                ["limit"] = options.Limit, ["batch"] = batch, ["tasks"] = json,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return CommandLine.ExitOk;
        }
        var t = new ConsoleTable("task", "split", "shots", "n", "acc", "± stderr", "acc_norm", "± stderr", "perplexity", "chance", "items/s");
        foreach (var r in results)
            t.AddRow(r.Task, r.Split, r.Shots, r.N, F(r.Acc), F(r.AccStderr), F(r.AccNorm), F(r.AccNormStderr),
                r.Perplexity is double p ? Fmt.Si(p, 4) : "–", F(r.Chance), r.ItemsPerSecond.ToString("F1", Inv));
        stdout.WriteLine(t.ToText());
        return CommandLine.ExitOk;
    }

    private static string F(double? v) => v is double d ? (double.IsNaN(d) ? "–" : d.ToString("F4", Inv)) : "–";

    private static JsonObject Json(TaskResult r) => new()
    {
        ["n"] = r.N, ["acc"] = Num(r.Acc), ["stderr"] = Num(r.AccStderr), ["acc_stderr"] = Num(r.AccStderr),
        ["acc_norm"] = Num(r.AccNorm), ["acc_norm_stderr"] = Num(r.AccNormStderr), ["perplexity"] = Num(r.Perplexity),
        ["chance"] = Num(r.Chance), ["split"] = r.Split, ["shots"] = r.Shots, ["shot_split"] = r.ShotSplit,
        ["requests"] = r.Requests, ["seconds"] = Math.Round(r.Seconds, 3), ["items_per_second"] = Math.Round(r.ItemsPerSecond, 3),
    };

    /// <summary>JSON has no NaN: null for a missing or undefined value.</summary>
    private static JsonNode? Num(double? v) => v is double d && double.IsFinite(d) ? JsonValue.Create(d) : null;
}
