using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Evaluation;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Routing;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary><c>mor eval --model DIR --text FILE</c>: perplexity and bits per byte with the causal routing rule.</summary>
public sealed class EvalCommand : ICommand
{
    public string Name => "eval";
    public string Summary => "Score a text file with a trained model: NLL per token, perplexity, bits per byte.";
    public IReadOnlyList<string> Usage { get; } =
    [
        "mor eval --model DIR --text FILE [--seq T] [--stride S] [--topk-routing] [--json]",
        "mor eval --task image-classification|audio-classification --model DIR [--data PATH] [--depth-map DIR] [--json]",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "a model folder (config.json, model.safetensors, tokenizer files), e.g. the --out of mor train"),
        new("--text", "FILE", "UTF-8 text to score (the whole file as one stream)"),
        new("--seq", "T", "window length in tokens (default: the model's context, at most 1024)"),
        new("--stride", "S", "new tokens scored per window, ≤ T − 1 (default T − 1; smaller gives each token more context)"),
        new("--topk-routing", null, "score MoR with training-style top-k routing (leaks future tokens; for comparison only)"),
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
        string file = o.Get("--text") ?? throw new UsageException("--text FILE is required (few-shot tasks come with the evaluation issue)");
        if (!File.Exists(file)) throw new FileNotFoundException($"--text: {file} does not exist");
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        var (model, tokenizer) = Checkpoint.LoadModelFolder(dir);
        using var _ = model;
        int seq = o.GetInt("--seq", 2) ?? Math.Min(1024, model.Config.MaxPositionEmbeddings);
        int stride = o.GetInt("--stride", 1) ?? seq - 1;
        var mode = o.Has("--topk-routing") ? RoutingMode.TopK : RoutingMode.Causal;
        string text = File.ReadAllText(file);
        PerplexityResult r;
        using (var bar = new ProgressBar("eval", 1000, stderr))
            r = Perplexity.Score(model, tokenizer, text, seq, stride, mode, new Progress<double>(f => bar.Report((long)(f * 1000))));
        if (o.Has("--json"))
        {
            stdout.WriteLine(new JsonObject
            {
                ["model"] = dir, ["text"] = file, ["tokens"] = r.Tokens, ["bytes"] = r.Bytes, ["seq"] = r.Window, ["stride"] = r.Stride,
                ["routing"] = r.Routing, ["nll_per_token"] = r.NllPerToken, ["perplexity"] = r.Perplexity, ["bits_per_byte"] = r.BitsPerByte,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            var t = new ConsoleTable("text", "tokens", "NLL/token", "perplexity", "bits/byte", "window/stride", "routing");
            t.AddRow(Path.GetFileName(file), r.Tokens, r.NllPerToken.ToString("F4", CultureInfo.InvariantCulture),
                r.Perplexity.ToString("F2", CultureInfo.InvariantCulture), r.BitsPerByte.ToString("F4", CultureInfo.InvariantCulture), $"{r.Window}/{r.Stride}", r.Routing);
            stdout.WriteLine(t.ToText());
        }
        return CommandLine.ExitOk;
    }
}
