using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Evaluation;
using MoRSharp.Model;
using MoRSharp.Modalities;
using MoRSharp.Reporting;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor train --task …</c> and <c>mor eval --task …</c>: MoR encoders that classify MNIST digits (patch tokens) or FSDD
/// spoken digits (log-mel frame tokens). The stack comes from a preset or config.json (default <c>tiny-mor-expert</c>), with
/// <c>vocab_size</c> = number of classes and <c>max_position_embeddings</c> = tokens per example; the front end from
/// <c>--encoder</c> or the task's defaults (<see cref="EncoderConfig.Default"/>).
/// </summary>
public static class ClassificationTasks
{
    private const string RunFile = "run.json";
    private const string DefaultPreset = "tiny-mor-expert";
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static ClassificationTask ParseTask(string name)
    {
        try { return EncoderConfig.ParseTask(name); }
        catch (ConfigException e) { throw new UsageException("--" + e.Message); }
    }

    public static int Train(string taskName, ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        var task = ParseTask(taskName);
        foreach (var name in new[] { "--tokenizer", "--field", "--column", "--seq", "--bf16", "--no-baseline" })
            if (o.Has(name)) throw new UsageException($"{name} does not apply to --task (tokens per example come from the encoder; fp32 only)");
        string outDir = o.Get("--out") ?? throw new UsageException("--out DIR is required");
        string data = o.Get("--data") ?? throw new UsageException($"--data PATH is required with --task ({(task == ClassificationTask.ImageClassification ? "a folder of MNIST IDX files" : "the FSDD folder")})");

        var encoder = o.Get("--encoder") is { } file ? EncoderConfig.Load(file) : EncoderConfig.Default(task);
        if (encoder.TaskKind != task) throw new ConfigException($"{o.Get("--encoder")}: task is {encoder.Task}, but --task is {taskName}");
        var (config, label) = StackConfig(o, encoder);
        var options = TrainCommand.BuildOptions(o, demo: false);
        options.Batch = o.GetInt("--batch", 1) ?? 64;
        options.Seq = encoder.Tokens;
        options.LearningRate = o.GetDouble("--lr") ?? 1e-2;             // tuned on d = 64 MNIST runs (docs/results.md)
        options.EvalEvery = o.GetInt("--eval-every", 0) ?? 50;
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        var taskData = LoadData(encoder, data, stderr);
        Directory.CreateDirectory(outDir);
        Checkpoint.AtomicWrite(Path.Combine(outDir, RunFile), new JsonObject
        {
            ["data"] = Path.GetFullPath(data), ["task"] = encoder.Task,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var summary = RunTrainer(label, config, encoder, options, taskData, outDir, null, stderr);
        Report(label, summary, taskData, stdout);
        return CommandLine.ExitOk;
    }

    /// <summary><c>mor train --resume</c> of a classifier run (dispatched by <see cref="TrainCommand"/> when run.json names a task).</summary>
    public static int Resume(string checkpoint, string outDir, JsonNode run, TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigJson.Load(Path.Combine(checkpoint, MoRForClassification.ConfigFile));
        var encoder = EncoderConfig.Load(Path.Combine(checkpoint, EncoderConfig.FileName));
        var state = Checkpoint.LoadState(checkpoint);
        stderr.WriteLine($"resuming {outDir} from step {state.Step} of {state.TotalSteps}");
        var taskData = LoadData(encoder, run["data"]!.GetValue<string>(), stderr);
        var summary = RunTrainer("model", config, encoder, state.Options, taskData, outDir, checkpoint, stderr);
        Report("model", summary, taskData, stdout);
        return CommandLine.ExitOk;
    }

    private static (ModelConfig config, string label) StackConfig(ParsedOptions o, EncoderConfig encoder)
    {
        if (o.Has("--config") && o.Has("--preset")) throw new UsageException("give --config or --preset, not both");
        string preset = o.Get("--preset") ?? DefaultPreset;
        var config = o.Get("--config") is { } file ? ConfigJson.Load(file) : Presets.Get(preset);
        // The stack's "vocabulary" is the label set (the head's width) and its context is one example's tokens.
        config.VocabSize = encoder.NumLabels;
        config.MaxPositionEmbeddings = encoder.Tokens;
        config.BosTokenId = config.EosTokenId = null;
        config.TieWordEmbeddings = false;
        // The presets' initializer_range 0.02 is the language-model recipe (d ≥ 576); a d = 64 encoder trained from scratch on
        // MNIST learned about twice as slowly with it than with 1/√d (measured: docs/results.md). A --config keeps its own value.
        if (!o.Has("--config")) config.InitializerRange = 1 / Math.Sqrt(config.HiddenSize);
        ConfigValidator.Validate(config);
        return (config, o.Get("--config") is { } f ? Path.GetFileNameWithoutExtension(f) : preset);
    }

    private static TaskData LoadData(EncoderConfig encoder, string path, TextWriter stderr)
    {
        TaskData data;
        using (var bar = new ProgressBar("load", 1000, stderr))
            data = TaskData.Load(encoder, path, new Progress<double>(f => bar.Report((long)(f * 1000))));
        stderr.WriteLine($"{path}: {data.SplitDescription}");
        return data;
    }

    private static ClassificationSummary RunTrainer(string label, ModelConfig config, EncoderConfig encoder, TrainingOptions options, TaskData data,
        string outDir, string? resume, TextWriter stderr)
    {
        using var trainer = new ClassificationTrainer(config, encoder, options, data.Train, data.Eval, outDir, resume);
        var acc = trainer.Accounting;
        stderr.WriteLine($"{label}: {encoder.Task}, {encoder.Tokens} tokens/example, {config.Recursion.RoutingKind.ToString().ToLowerInvariant()} routing, " +
                         $"{acc.Stack.LayoutDescription}, {Fmt.Si(acc.UniqueParams)} unique parameters, {Fmt.Si(acc.FlopsPerExample)} FLOPs/example; " +
                         $"{trainer.TotalSteps:N0} steps × {options.Batch * options.GradAccum} examples → {outDir}");
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); stderr.WriteLine("stopping after this step (checkpoint follows)…"); };
        Console.CancelKeyPress += onCancel;
        try
        {
            using var bar = new ProgressBar(label, trainer.TotalSteps, stderr, start: trainer.Step);
            string val = "–";
            trainer.Evaluated += v => val = Percent(v.Accuracy);
            trainer.StepCompleted += m => bar.Report(m.Step,
            [
                ("loss", m.Loss.ToString("F3", Inv)), (data.EvalName == "validation" ? "val acc" : "test acc", val),
                ("lr", m.Lr.ToString("G2", Inv)), ("ex/s", Fmt.Number(m.ExamplesPerSecond)),
            ]);
            return trainer.Run(cancel.Token);
        }
        finally { Console.CancelKeyPress -= onCancel; }
    }

    private static void Report(string label, ClassificationSummary s, TaskData data, TextWriter stdout)
    {
        var t = new ConsoleTable("model", "unique params", "FLOPs/example", "steps", "examples", "wall", $"{data.EvalName} accuracy", "mean depth");
        t.AddRow(label, Fmt.Si(s.Accounting.UniqueParams), Fmt.Si(s.Accounting.FlopsPerExample), s.Steps, Fmt.Si(s.ExamplesSeen),
            Fmt.Duration(TimeSpan.FromSeconds(s.WallSeconds)), s.FinalEval is { } e ? Percent(e.Accuracy) : "–",
            s.FinalEval?.MeanDepth?.ToString("F2", Inv) ?? "–");
        stdout.WriteLine();
        stdout.WriteLine(t.ToText());
        var lines = MetricsLog.Read(Path.Combine(s.OutDir, "metrics.jsonl"));
        var train = lines.Where(l => l["loss"] is not null).Select(l => ((double)l["examples"]!, (double)l["loss"]!)).ToList();
        var val = lines.Where(l => l["val_loss"] is not null).Select(l => ((double)l["examples"]!, (double)l["val_loss"]!)).ToList();
        string png = Path.Combine(s.OutDir, "loss.png");
        LossCurvePlot.Write(png, [new LossCurveSeries($"{label} train", train, Smoothing: 0.9), new LossCurveSeries($"{label} {data.EvalName}", val, Markers: true)],
            "training examples", "cross-entropy (nats)", "Training loss");
        stdout.WriteLine($"loss curve: {png}; metrics: {Path.Combine(s.OutDir, "metrics.jsonl")}; model: {s.OutDir}");
    }

    public static int Eval(string taskName, string dir, ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        var task = ParseTask(taskName);
        foreach (var name in new[] { "--text", "--seq", "--stride", "--topk-routing" })
            if (o.Has(name)) throw new UsageException($"{name} does not apply to --task");
        Native.TorchRuntime.Initialize(o.GetInt("--threads", 1));
        using var model = MoRForClassification.Load(dir);
        if (model.Encoder.TaskKind != task) throw new UsageException($"--task {taskName}, but {dir} holds an {model.Encoder.Task} model");
        if (o.Has("--depth-map") && model.Config.Recursion.RoutingKind == RoutingKind.None)
            throw new UsageException("--depth-map: this model does not route (mor.routing none): every patch/frame runs every recursion, there is no depth to map");
        string data = o.Get("--data") ?? DataOfRun(dir);
        var taskData = LoadData(model.Encoder, data, stderr);
        ClassificationResult r;
        using (var bar = new ProgressBar("eval", taskData.Eval.Count, stderr))
            r = ClassificationEval.Evaluate(model, taskData.Eval, progress: new Progress<double>(f => bar.Report((long)(f * taskData.Eval.Count))));
        var acc = EncoderAccounting.Compute(model.Config, model.Encoder);
        var maps = o.Get("--depth-map") is { } mapDir ? WriteDepthMaps(model, taskData.Eval, r, mapDir) : [];

        if (o.Has("--json"))
        {
            stdout.WriteLine(ToJson(dir, taskData, r, acc, maps).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return CommandLine.ExitOk;
        }
        var summary = new ConsoleTable("task", "split", "examples", "accuracy", "loss", "FLOPs/example", "unique params", "layout", "mean depth");
        summary.AddRow(model.Encoder.Task, taskData.EvalName, r.Examples, Percent(r.Accuracy), r.Loss.ToString("F4", Inv), Fmt.Si(acc.FlopsPerExample),
            Fmt.Si(acc.UniqueParams), acc.Stack.LayoutDescription, r.MeanDepth?.ToString("F2", Inv) ?? "–");
        stdout.WriteLine(summary.ToText());
        if (r.DepthHistogram is { } hist)
            stdout.WriteLine("tokens by depth: " + string.Join(", ", hist.Select((f, d) => $"{d}: {Percent(f)}").Where((_, d) => d > 0 || hist[0] > 0)));
        stdout.WriteLine();
        stdout.WriteLine("confusion matrix (rows: true label, columns: predicted)");
        stdout.WriteLine(Confusion(r, taskData.Eval.LabelNames).ToText());
        if (r.PerGroup.Count > 0)
        {
            var speakers = new ConsoleTable("speaker", "clips", "accuracy");
            foreach (var (name, (correct, total)) in r.PerGroup) speakers.AddRow(name, total, Percent((double)correct / total));
            stdout.WriteLine(speakers.ToText());
        }
        foreach (var m in maps) stdout.WriteLine($"depth map: {m}");
        return CommandLine.ExitOk;
    }

    private static string DataOfRun(string dir)
    {
        string runFile = Path.Combine(dir, RunFile);
        if (!File.Exists(runFile)) throw new UsageException($"--data PATH is required ({runFile} does not say what the model was trained on)");
        return JsonNode.Parse(File.ReadAllText(runFile))?["data"]?.GetValue<string>() ?? throw new UsageException($"--data PATH is required ({runFile} has no data entry)");
    }

    private static ConsoleTable Confusion(ClassificationResult r, string[] labels)
    {
        var t = new ConsoleTable(["true \\ pred", .. labels, "recall"]);
        for (int i = 0; i < labels.Length; i++)
        {
            long row = 0;
            var cells = new List<object?> { labels[i] };
            for (int j = 0; j < labels.Length; j++) { cells.Add(r.Confusion[i, j]); row += r.Confusion[i, j]; }
            cells.Add(row == 0 ? "–" : Percent((double)r.Confusion[i, i] / row));
            t.AddRow([.. cells]);
        }
        return t;
    }

    /// <summary>
    /// One PNG per class (the first held-out example of each label) and one of the mean depth per patch/frame over the whole
    /// held-out split (drawn over the mean image / spectrogram).
    /// </summary>
    private static List<string> WriteDepthMaps(MoRForClassification model, LabeledExamples set, ClassificationResult r, string dir)
    {
        if (r.DepthByPosition is null) throw new InvalidOperationException("no routing depth was recorded");
        Directory.CreateDirectory(dir);
        int maxDepth = model.Layout.NumRecursion;
        bool image = model.Encoder.TaskKind == ClassificationTask.ImageClassification;
        var picks = Enumerable.Range(0, set.LabelNames.Length).Select(c => Array.IndexOf(set.Labels, (long)c)).Where(i => i >= 0).ToArray();
        var (predicted, depth) = ClassificationEval.Predict(model, set, picks);
        var written = new List<string>();
        for (int k = 0; k < picks.Length; k++)
        {
            int i = picks[k];
            string truth = set.LabelNames[set.Labels[i]], pred = set.LabelNames[predicted[k]];
            var row = Enumerable.Range(0, depth!.GetLength(1)).Select(p => (double)depth[k, p]).ToArray();
            string name = Path.Combine(dir, $"{(image ? "image" : "audio")}-{k:D2}-label{truth}-pred{pred}.png");
            string title = $"{set.Ids[i]}: label {truth}, predicted {pred}";
            Draw(name, set.Plane(i), row, title);
            written.Add(name);
        }
        var mean = new float[(int)set.ExampleShape[^2], (int)set.ExampleShape[^1]];
        for (int i = 0; i < set.Count; i++)
        {
            var plane = set.Plane(i);
            for (int a = 0; a < mean.GetLength(0); a++)
                for (int b = 0; b < mean.GetLength(1); b++) mean[a, b] += plane[a, b] / set.Count;
        }
        string meanName = Path.Combine(dir, $"{(image ? "image" : "audio")}-mean-depth.png");
        Draw(meanName, mean, r.DepthByPosition, $"mean depth over the {set.Count:N0} held-out examples");
        written.Add(meanName);
        return written;

        void Draw(string path, float[,] plane, double[] perToken, string title)
        {
            if (image)
            {
                int g = model.Encoder.Image!.GridSize;
                var grid = new double[g, g];
                for (int p = 0; p < perToken.Length; p++) grid[p / g, p % g] = perToken[p];
                DepthMapPlot.WriteImage(path, plane, grid, maxDepth, title);
            }
            else DepthMapPlot.WriteAudio(path, plane, perToken, maxDepth, title);
        }
    }

    private static JsonObject ToJson(string dir, TaskData data, ClassificationResult r, EncoderAccounting acc, List<string> maps)
    {
        var confusion = new JsonArray();
        for (int i = 0; i < r.Confusion.GetLength(0); i++)
            confusion.Add(new JsonArray(Enumerable.Range(0, r.Confusion.GetLength(1)).Select(j => (JsonNode?)JsonValue.Create(r.Confusion[i, j])).ToArray()));
        var json = new JsonObject
        {
            ["model"] = dir, ["split"] = data.EvalName, ["examples"] = r.Examples, ["accuracy"] = r.Accuracy, ["loss"] = r.Loss,
            ["flops_per_example"] = acc.FlopsPerExample, ["unique_params"] = acc.UniqueParams, ["tokens_per_example"] = acc.Tokens,
            ["layout"] = acc.Stack.LayoutDescription, ["confusion"] = confusion,
            ["depth_maps"] = new JsonArray(maps.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
        };
        if (r.MeanDepth is { } md) json["mean_depth"] = md;
        if (r.DepthByPosition is { } byPos) json["depth_by_position"] = new JsonArray(byPos.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());
        if (r.PerGroup.Count > 0)
            json["per_speaker"] = new JsonObject(r.PerGroup.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create((double)kv.Value.correct / kv.Value.total))));
        return json;
    }

    private static string Percent(double f) => (100 * f).ToString("F2", Inv) + "%";
}
