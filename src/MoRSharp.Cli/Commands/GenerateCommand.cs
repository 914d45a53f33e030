using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Inference;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary><c>mor generate</c>: continue a prompt with a KV-cached model; optionally show each token's recursion depth.</summary>
public sealed class GenerateCommand : ICommand
{
    public string Name => "generate";
    public string Summary => "Continue a prompt with a trained model (streams text; --show-depth colours tokens by recursion depth).";
    public IReadOnlyList<string> Usage { get; } =
        ["mor generate --model DIR --prompt TEXT [--max-tokens N] [--seed S] [--temperature T] [--top-k K] [--top-p P] [--stop TEXT] [--weights bfloat16] [--show-depth] [--html FILE] [--json]"];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "a model folder (config.json, model.safetensors, tokenizer files), e.g. the --out of mor train"),
        new("--prompt", "TEXT", "the text to continue"),
        new("--prompt-file", "FILE", "read the prompt from a UTF-8 file instead"),
        new("--bos", null, "put the tokenizer's BOS token before the prompt (Llama-style models)"),
        .. SamplingFlags.Options,
        new("--show-depth", null, "colour each generated token by its number of recursions (ANSI), with a legend"),
        new("--html", "FILE", "also write the prompt and the generated text, coloured by depth, as an HTML page"),
        WeightsOption.Option,
        new("--threads", "N", "torch threads"),
        new("--json", null, "print JSON (text, token ids, depths, timing) instead of streaming"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string dir = o.Get("--model") ?? throw new UsageException("--model DIR is required");
        string prompt = o.Get("--prompt") ?? (o.Get("--prompt-file") is { } pf
            ? File.Exists(pf) ? File.ReadAllText(pf) : throw new FileNotFoundException($"--prompt-file: {pf} does not exist")
            : throw new UsageException("--prompt TEXT (or --prompt-file FILE) is required"));
        var options = SamplingFlags.Parse(o);
        var weights = WeightsOption.Parse(o);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        var (model, tokenizer) = Checkpoint.LoadModelFolder(dir);
        using var _ = WeightsOption.Apply(model, weights);
        using var generator = new TextGenerator(model, tokenizer);
        var ids = tokenizer.Encode(prompt).ToList();
        if (o.Has("--bos"))
            ids.Insert(0, tokenizer.BosId ?? throw new UsageException($"--bos: the tokenizer of {dir} has no BOS token"));
        if (ids.Count == 0) ids.Add(tokenizer.EosId ?? tokenizer.BosId ?? throw new UsageException("--prompt: empty, and the tokenizer has no EOS/BOS token to start from"));

        bool json = o.Has("--json"), showDepth = o.Has("--show-depth");
        var tokens = new List<GeneratedToken>();
        var text = new System.Text.StringBuilder();
        FinishReason finish = FinishReason.Length;
        var clock = Stopwatch.StartNew();
        double firstTokenSeconds = 0;
        var stream = generator.GenerateAsync(ids, options).GetAsyncEnumerator();
        try
        {
            while (stream.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                var t = stream.Current;
                if (tokens.Count == 0) firstTokenSeconds = clock.Elapsed.TotalSeconds;
                text.Append(t.Text);
                if (t.Id >= 0) tokens.Add(t);
                if (t.Finish is { } f) finish = f;
                if (!json && !showDepth) { stdout.Write(t.Text); stdout.Flush(); }
            }
        }
        finally { stream.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        double seconds = clock.Elapsed.TotalSeconds;
        int maxDepth = Math.Max(1, model.Layout.Recursions.Length > 0 ? model.Layout.NumRecursion : 0);
        var pieces = tokens.Select(t => (tokenizer.DecodeToken(t.Id), t.Depth)).ToList();

        if (json)
        {
            stdout.WriteLine(new JsonObject
            {
                ["model"] = dir, ["prompt"] = prompt, ["prompt_tokens"] = ids.Count, ["text"] = text.ToString(),
                ["finish_reason"] = finish.ToString().ToLowerInvariant(),
                ["tokens"] = new JsonArray(tokens.Select(t => (JsonNode)t.Id).ToArray()),
                ["depths"] = new JsonArray(tokens.Select(t => (JsonNode)t.Depth).ToArray()),
                ["seconds"] = seconds, ["first_token_seconds"] = firstTokenSeconds,
                ["tokens_per_second"] = tokens.Count > 1 ? (tokens.Count - 1) / (seconds - firstTokenSeconds) : 0,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else if (showDepth)
        {
            stdout.Write(prompt);
            stdout.Write(DepthColoring.Ansi(pieces, maxDepth));
        }
        else stdout.WriteLine();

        if (o.Get("--html") is { } html)
        {
            var page = new List<(string, int)> { (prompt, 0) };
            page.AddRange(pieces);
            Checkpoint.AtomicWrite(html, DepthColoring.Html(page, maxDepth, $"mor generate — {Path.GetFileName(Path.GetFullPath(dir))}"));
        }
        if (!json)
        {
            double rate = tokens.Count > 1 ? (tokens.Count - 1) / Math.Max(1e-9, seconds - firstTokenSeconds) : 0;
            string depthInfo = model.Layout.Recursions.Length > 0 && tokens.Count > 0
                ? $", mean depth {tokens.Average(t => t.Depth).ToString("F2", CultureInfo.InvariantCulture)} of {model.Layout.NumRecursion}" : "";
            stderr.WriteLine($"[{tokens.Count} tokens, {finish.ToString().ToLowerInvariant()}; first token {firstTokenSeconds * 1000:F0} ms, then {rate:F1} tokens/s{depthInfo}]");
        }
        return CommandLine.ExitOk;
    }
}
