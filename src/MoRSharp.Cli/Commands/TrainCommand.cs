using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor train</c>: pretraining on a corpus, or — with no <c>--data</c> — the built-in demo: a byte-level corpus the project
/// generates (arithmetic, reversal, copying, bracket matching, counting), an MoR model and a vanilla model trained on the
/// same FLOPs budget, their validation losses, and a sample coloured by each token's recursion depth.
/// </summary>
public sealed class TrainCommand : ICommand
{
    private const string RunFile = "run.json";
    private const double DemoFlops = 1e12;          // ≈ 1 minute per model on 2 cores (measured: nano ≈ 4,400 tokens/s)

    public string Name => "train";
    public string Summary => "Train an MoR (or vanilla) model; with no --data, a ~2-minute demo on a generated corpus.";

    public IReadOnlyList<string> Usage { get; } =
    [
        "mor train --out DIR                                   (demo: generated corpus, MoR vs vanilla at equal FLOPs)",
        "mor train [--config F|--preset NAME] --data PATH --out DIR [--steps N|--tokens N|--flops F] [--batch B] [--seq T] [--lr X] [--seed S] [--bf16]",
        "mor train --resume DIR",
        "mor train --task image-classification|audio-classification --data PATH --out DIR [--preset NAME|--config F] [--encoder F] [--steps N|--flops F] …",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--config", "FILE", "model config.json (HF Llama fields + \"mor\" block)"),
        new("--preset", "NAME", "a built-in preset (mor info --list-presets); default nano-mor-expert (demo) or micro-mor-expert"),
        new("--data", "PATH", "a prepared folder (train.bin, val.bin, tokenizer/) or .txt/.jsonl/.parquet files or folders to prepare"),
        new("--tokenizer", "NAME|DIR", "gpt2 (default with --data; with --init-from the model's own), bytes, or a tokenizer folder; for raw --data only"),
        new("--field", "NAME", "JSONL field holding the text (default text)"),
        new("--column", "NAME", "Parquet column holding the text (default text)"),
        new("--out", "DIR", "output folder: checkpoints, metrics.jsonl, model.safetensors, config.json, tokenizer, loss.png"),
        new("--steps", "N", "optimizer steps"),
        new("--tokens", "N", "training tokens (steps = N / (batch·seq·grad-accum))"),
        new("--flops", "F", "training budget in the paper's FLOPs accounting (forward FLOPs/token × tokens), e.g. 1e15"),
        new("--batch", "B", "sequences per micro-batch (default 8; demo 16)"),
        new("--seq", "T", "tokens per sequence (default 256; demo 128)"),
        new("--grad-accum", "N", "micro-batches per optimizer step (default 1)"),
        new("--lr", "X", "peak learning rate (default 3e-3)"),
        new("--schedule", "S", "trapezoid (= wsd) | cosine | constant (default trapezoid)"),
        new("--warmup", "F", "warm-up fraction of the steps (default 0.05)"),
        new("--cooldown", "F", "linear cool-down fraction (default 0.2)"),
        new("--weight-decay", "X", "AdamW weight decay on matrices (default 0.1; norms exempt)"),
        new("--clip", "X", "gradient-norm clip (default 1.0; 0 = off)"),
        new("--seed", "S", "seed for weights, data order and the split (default 0)"),
        new("--bf16", null, "bf16 compute with fp32 master weights and optimizer state"),
        new("--eval-every", "N", "validation every N steps (default 100; 0 = only at the end)"),
        new("--eval-batches", "N", "validation batches (default 8)"),
        new("--checkpoint-every", "N", "checkpoint every N steps (default 200; 0 = only at the end)"),
        new("--keep-last", "N", "checkpoints to keep (default 2)"),
        new("--threads", "N", "torch threads (default: all cores)"),
        new("--resume", "DIR", "continue a run (its folder or one of its checkpoints) exactly where it stopped"),
        new("--init-from", "DIR", "start from a model folder's weights, config and tokenizer (ours or Hugging Face Llama; e.g. from mor convert)"),
        new("--no-baseline", null, "demo only: skip the vanilla comparison"),
        new("--task", "TASK", "image-classification (MNIST IDX folder) or audio-classification (FSDD folder): an MoR encoder classifier"),
        new("--encoder", "FILE", "with --task: encoder.json (front end, labels, pooling); default: the task's defaults"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        string? resume = o.Get("--resume");
        if (resume is not null) return Resume(resume, o, stdout, stderr);
        if (o.Get("--task") is { } task) return ClassificationTasks.Train(task, o, stdout, stderr);
        if (o.Has("--encoder")) throw new UsageException("--encoder goes with --task");

        string outDir = o.Get("--out") ?? throw new UsageException("--out DIR is required");
        bool demo = o.Get("--data") is null;
        if (demo && (o.Has("--tokenizer") || o.Has("--field") || o.Has("--column")))
            throw new UsageException("--tokenizer, --field and --column apply to --data");
        Directory.CreateDirectory(outDir);

        var options = BuildOptions(o, demo);
        options.InitFrom = InitFrom(o, demo);
        if (options.Bf16 && CpuFeatures.IsKnown && !CpuFeatures.HasBf16MatrixUnits)
            stderr.WriteLine("warning: --bf16 on a CPU without bf16 matrix units (avx512_bf16 / amx_bf16): libtorch emulates bf16 here, " +
                             "which was measured ~10× slower per training step than fp32 (docs/benchmarks.md); fp32 is the faster choice on this machine");
        var (config, configSource) = LoadConfig(o, demo);                 // fail fast on a bad config, before any data work
        var (dataDir, tokenizer) = demo ? PrepareDemoData(outDir, options.Seed, stderr) : PrepareData(o, outDir, options.Seed, stderr);
        MatchVocabulary(config, configSource, o.Has("--config") || options.InitFrom is not null, tokenizer, stderr);
        Checkpoint.AtomicWrite(Path.Combine(outDir, RunFile), new JsonObject
        {
            ["data"] = Path.GetFullPath(dataDir), ["demo"] = demo,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        string label = demo ? "MoR" : configSource.StartsWith("preset ") ? configSource["preset ".Length..] : Path.GetFileNameWithoutExtension(configSource);
        var runs = new List<(string label, TrainingSummary summary, ModelAccounting acc)>();
        var mor = TrainOne(label, config, options, dataDir, tokenizer, outDir, null, stdout, stderr);
        runs.Add(mor);

        if (demo && !o.Has("--no-baseline"))
        {
            var vanilla = Presets.Get("nano-vanilla");
            vanilla.VocabSize = config.VocabSize;
            runs.Add(TrainOne("vanilla", vanilla, options, dataDir, tokenizer, Path.Combine(outDir, "baseline-vanilla"), null, stdout, stderr));
        }
        Report(runs, outDir, stdout);
        if (demo) ShowSample(outDir, tokenizer, dataDir, stdout);
        return CommandLine.ExitOk;
    }

    private int Resume(string resume, ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        foreach (var name in Options.Select(x => x.Name).Where(n => n is not "--resume" and not "--threads" and not "--out"))
            if (o.Has(name)) throw new UsageException($"{name} cannot be changed on --resume (the run continues with its saved settings)");
        string checkpoint = Checkpoint.Resolve(resume);
        string outDir = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(checkpoint))!)!;   // OUT/checkpoints/step-N
        string runFile = Path.Combine(outDir, RunFile);
        if (!File.Exists(runFile)) throw new FileNotFoundException($"{runFile} not found: --resume needs a folder written by mor train");
        var run = JsonNode.Parse(File.ReadAllText(runFile))!;
        if (run["task"] is not null) return ClassificationTasks.Resume(checkpoint, outDir, run, stdout, stderr);
        string dataDir = run["data"]!.GetValue<string>();
        var config = ConfigJson.Load(Path.Combine(checkpoint, Checkpoint.ConfigFile));
        var tokenizer = TokenizerFactory.Load(checkpoint);
        var state = Checkpoint.LoadState(checkpoint);
        stderr.WriteLine($"resuming {outDir} from step {state.Step} of {state.TotalSteps}");
        var result = TrainOne("model", config, state.Options, dataDir, tokenizer, outDir, checkpoint, stdout, stderr);
        Report([result], outDir, stdout);
        return CommandLine.ExitOk;
    }

    internal static TrainingOptions BuildOptions(ParsedOptions o, bool demo)
    {
        var t = new TrainingOptions
        {
            Steps = o.GetInt("--steps", 1),
            Tokens = o.GetDouble("--tokens") is { } tk ? (long)tk : null,
            Flops = o.GetDouble("--flops"),
            Batch = o.GetInt("--batch", 1) ?? (demo ? 16 : 8),
            Seq = o.GetInt("--seq", 2) ?? (demo ? 128 : 256),
            GradAccum = o.GetInt("--grad-accum", 1) ?? 1,
            LearningRate = o.GetDouble("--lr") ?? 3e-3,
            Schedule = o.Get("--schedule") ?? "trapezoid",
            WarmupFraction = o.GetDouble("--warmup") ?? 0.05,
            CooldownFraction = o.GetDouble("--cooldown") ?? 0.2,
            WeightDecay = o.GetDouble("--weight-decay") ?? 0.1,
            ClipNorm = o.GetDouble("--clip") ?? 1.0,
            Seed = o.GetInt("--seed", 0) ?? 0,
            Bf16 = o.Has("--bf16"),
            EvalEvery = o.GetInt("--eval-every", 0) ?? (demo ? 50 : 100),
            EvalBatches = o.GetInt("--eval-batches", 1) ?? 8,
            CheckpointEvery = o.GetInt("--checkpoint-every", 0) ?? 200,
            KeepLast = o.GetInt("--keep-last", 1) ?? 2,
        };
        if (t.Steps is null && t.Tokens is null && t.Flops is null)
        {
            if (demo) t.Flops = DemoFlops;
            else throw new UsageException("give a budget: --steps N, --tokens N or --flops F");
        }
        try { t.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return t;
    }

    private static (string dataDir, ITokenizer tokenizer) PrepareDemoData(string outDir, long seed, TextWriter stderr)
    {
        string dataDir = Path.Combine(outDir, "data");
        var tokenizer = TokenizerFactory.Bytes();
        if (File.Exists(Path.Combine(dataDir, DataPreparer.TrainFile))) return (dataDir, tokenizer);
        Directory.CreateDirectory(dataDir);
        string text = Path.Combine(dataDir, "synthetic.txt");
        SyntheticCorpus.WriteText(text, 3_000_000, seed);
        stderr.WriteLine($"generated a 3 MB synthetic corpus ({text}): arithmetic, reversal, copying, brackets, counting");
        var result = DataPreparer.Prepare(new DataPrepareOptions { Inputs = [text], OutputDirectory = dataDir, ValFraction = 0.02, Seed = seed }, tokenizer);
        stderr.WriteLine($"tokenized with {tokenizer.Name}: {result.Train.Tokens:N0} train and {result.Val.Tokens:N0} validation tokens");
        return (dataDir, tokenizer);
    }

    private static (string dataDir, ITokenizer tokenizer) PrepareData(ParsedOptions o, string outDir, long seed, TextWriter stderr)
    {
        string data = o.Get("--data")!;
        if (Directory.Exists(data) && File.Exists(Path.Combine(data, DataPreparer.TrainFile)))
        {
            if (o.Has("--tokenizer") || o.Has("--field") || o.Has("--column"))
                throw new UsageException($"{data} is already prepared; --tokenizer, --field and --column apply to raw text");
            string tokDir = Path.Combine(data, DataPreparer.TokenizerFolder);
            return (data, TokenizerFactory.Load(Directory.Exists(tokDir) ? tokDir : "gpt2"));
        }
        if (!File.Exists(data) && !Directory.Exists(data)) throw new FileNotFoundException($"--data: {data} does not exist");
        var tokenizer = TokenizerFactory.Load(o.Get("--tokenizer") ?? o.Get("--init-from") ?? "gpt2");
        string dataDir = Path.Combine(outDir, "data");
        using var bar = new ProgressBar("prepare", 1000);
        var result = DataPreparer.Prepare(new DataPrepareOptions
        {
            Inputs = [data], OutputDirectory = dataDir, Seed = seed,
            Corpus = new CorpusOptions { JsonlField = o.Get("--field") ?? "text", ParquetColumn = o.Get("--column") ?? "text" },
        }, tokenizer, new Progress<DataProgress>(p => bar.Report((long)(p.Fraction * 1000))));
        bar.Dispose();
        stderr.WriteLine($"prepared {data}: {result.Train.Documents:N0} documents, {result.Train.Tokens:N0} train / {result.Val.Tokens:N0} validation tokens ({tokenizer.Name})");
        if (result.ReplacedBytes > 0) stderr.WriteLine($"warning: {result.ReplacedBytes:N0} undecodable bytes were replaced with U+FFFD");
        return (dataDir, tokenizer);
    }

    /// <summary>--init-from DIR (uptraining): the folder must hold a model; its config replaces --config/--preset.</summary>
    private static string? InitFrom(ParsedOptions o, bool demo)
    {
        if (o.Get("--init-from") is not { } dir) return null;
        if (demo) throw new UsageException("--init-from needs --data (the demo trains from scratch)");
        if (o.Has("--config") || o.Has("--preset")) throw new UsageException("--init-from takes the model's config from its folder; drop --config/--preset");
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--init-from: model folder {dir} does not exist");
        return Path.GetFullPath(dir);
    }

    private static (ModelConfig config, string source) LoadConfig(ParsedOptions o, bool demo)
    {
        if (o.Get("--init-from") is { } init)
        {
            using var weights = IO.SafeTensorsCheckpoint.Open(init);
            return (IO.HfModelFolder.ReadConfig(init, weights), Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(init))));
        }
        if (o.Has("--config") && o.Has("--preset")) throw new UsageException("give --config or --preset, not both");
        if (o.Get("--config") is { } file) return (ConfigJson.Load(file), file);
        string preset = o.Get("--preset") ?? (demo ? "nano-mor-expert" : "micro-mor-expert");
        return (Presets.Get(preset), $"preset {preset}");
    }

    /// <summary>A preset takes the tokenizer's vocabulary; a config file must already cover it.</summary>
    private static void MatchVocabulary(ModelConfig config, string source, bool fromFile, ITokenizer tokenizer, TextWriter stderr)
    {
        if (config.VocabSize == tokenizer.VocabSize) return;
        if (fromFile)
        {
            if (config.VocabSize < tokenizer.VocabSize)
                throw new ConfigException($"{source}: vocab_size {config.VocabSize} is smaller than the tokenizer's {tokenizer.VocabSize} ({tokenizer.Name})");
            return;
        }
        stderr.WriteLine($"{source}: vocab_size set to {tokenizer.VocabSize} to match the tokenizer ({tokenizer.Name})");
        config.VocabSize = tokenizer.VocabSize;
        config.BosTokenId = tokenizer.BosId ?? tokenizer.EosId;
        config.EosTokenId = tokenizer.EosId;
    }

    private static (string, TrainingSummary, ModelAccounting) TrainOne(string label, ModelConfig config, TrainingOptions options, string dataDir,
        ITokenizer tokenizer, string outDir, string? resume, TextWriter stdout, TextWriter stderr)
    {
        using var trainShard = new TokenShardReader(Path.Combine(dataDir, DataPreparer.TrainFile));
        using var valShard = new TokenShardReader(Path.Combine(dataDir, DataPreparer.ValFile));
        if (trainShard.VocabSize > config.VocabSize)
            throw new ConfigException($"the data was tokenized with a {trainShard.VocabSize}-token vocabulary, the model has {config.VocabSize}");
        bool hasVal = valShard.Count >= (long)options.Batch * options.Seq;
        if (!hasVal) stderr.WriteLine($"warning: validation split has {valShard.Count} tokens, fewer than one batch; no validation");
        using var trainer = new Trainer(config, options, ShardBatchSource.Train(trainShard, options.Batch, options.Seq, options.Seed),
            hasVal ? ShardBatchSource.Validation(valShard, options.Batch, options.Seq) : null, outDir, tokenizer.SaveTo, resume);
        var acc = trainer.Accounting;
        stderr.WriteLine($"{label}: {config.Recursion.RoutingKind.ToString().ToLowerInvariant()} routing, {acc.LayoutDescription}, {Fmt.Si(acc.TotalParams)} parameters, " +
                         $"{trainer.TotalSteps:N0} steps × {options.TokensPerStep:N0} tokens{(options.Bf16 ? ", bf16" : "")} → {outDir}");
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); stderr.WriteLine("stopping after this step (checkpoint follows)…"); };
        Console.CancelKeyPress += onCancel;
        try
        {
            using var bar = new ProgressBar(label, trainer.TotalSteps, stderr);
            string val = "–";
            trainer.Validated += v => val = v.Loss.ToString("F3", System.Globalization.CultureInfo.InvariantCulture);
            trainer.StepCompleted += m => bar.Report(m.Step,
            [
                ("loss", m.Loss.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)),
                ("val", val),
                ("lr", m.Lr.ToString("G2", System.Globalization.CultureInfo.InvariantCulture)),
                ("tok/s", Fmt.Number(m.TokensPerSecond)),
            ]);
            var summary = trainer.Run(cancel.Token);
            return (label, summary, acc);
        }
        finally { Console.CancelKeyPress -= onCancel; }
    }

    private static void Report(List<(string label, TrainingSummary s, ModelAccounting acc)> runs, string outDir, TextWriter stdout)
    {
        var table = new ConsoleTable("model", "unique params", "FLOPs/token (paper)", "steps", "tokens", "wall", "tokens/s", "val NLL (causal)", "val NLL (top-k)");
        foreach (var (label, s, acc) in runs)
            table.AddRow(label, Fmt.Si(acc.TotalParams), Fmt.Si(acc.FlopsPerTokenPaper), s.Steps, Fmt.Si(s.TokensSeen), Fmt.Duration(TimeSpan.FromSeconds(s.WallSeconds)),
                Fmt.Number(s.TokensPerSecond), s.FinalValidation?.Loss.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) ?? "–",
                s.FinalValidation?.LossTopK?.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) ?? "–");
        stdout.WriteLine();
        stdout.WriteLine(table.ToText());

        var series = new List<LossCurveSeries>();
        foreach (var (label, s, _) in runs)
        {
            var lines = MetricsLog.Read(Path.Combine(s.OutDir, "metrics.jsonl"));
            var train = lines.Where(l => l["loss"] is not null).Select(l => ((double)l["tokens"]!, (double)l["loss"]!)).ToList();
            var val = lines.Where(l => l["val_loss"] is not null).Select(l => ((double)l["tokens"]!, (double)l["val_loss"]!)).ToList();
            series.Add(new LossCurveSeries($"{label} train", train, Smoothing: 0.9));
            if (val.Count > 0) series.Add(new LossCurveSeries($"{label} validation", val, Markers: true));
        }
        string png = Path.Combine(outDir, "loss.png");
        LossCurvePlot.Write(png, series, "tokens", "next-token NLL (nats)", "Training loss");
        stdout.WriteLine($"loss curve: {png}; metrics: {Path.Combine(outDir, "metrics.jsonl")}; model: {outDir}");
    }

    private static void ShowSample(string outDir, ITokenizer tokenizer, string dataDir, TextWriter stdout)
    {
        var config = ConfigJson.Load(Path.Combine(outDir, Checkpoint.ConfigFile));
        if (config.Recursion.RoutingKind == Config.RoutingKind.None) return;
        using var model = new MoRForCausalLM(config);
        IO.ModelWeights.Load(model, Path.Combine(outDir, Checkpoint.ModelFile));
        int maxDepth = model.Layout.NumRecursion;
        stdout.WriteLine();
        stdout.WriteLine($"Recursion depth per token (causal routing; 1 = fewest recursions, {maxDepth} = all):");
        foreach (var prompt in new[] { "add 37+85=", "rev hello>", "brk ([{}" })
        {
            var tokens = DepthSample.Generate(model, tokenizer, prompt, 24);
            stdout.WriteLine(DepthColoring.ColorSupported(stdout) ? DepthColoring.Ansi(tokens, maxDepth) : Plain(tokens));
        }
    }

    private static string Plain(IEnumerable<(string text, int depth)> tokens) =>
        string.Concat(tokens.Select(t => t.text == "\n" ? "⏎\n" : $"{t.text}{Sub(t.depth)}"));

    private static string Sub(int d) => string.Concat(d.ToString().Select(c => "₀₁₂₃₄₅₆₇₈₉"[c - '0']));
}
