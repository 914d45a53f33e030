using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using MoRSharp.Chat;
using MoRSharp.Inference;
using MoRSharp.Native;
using MoRSharp.Server;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary><c>mor serve --model DIR</c>: the OpenAI-compatible HTTP server over a model folder, until Ctrl+C or SIGTERM.</summary>
public sealed class ServeCommand : ICommand
{
    public string Name => "serve";
    public string Summary => "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /metrics).";
    public IReadOnlyList<string> Usage { get; } =
        ["mor serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-queue N] [--max-batch N] [--threads N]"];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "a model folder (config.json, model.safetensors, tokenizer files), e.g. the --out of mor train"),
        new("--host", "ADDR", "address to bind (default 127.0.0.1; 0.0.0.0 or :: exposes the server: use --api-key then)"),
        new("--port", "N", "port (default 8000; 0 picks a free one, printed at start)"),
        new("--api-key", "KEY", "require 'Authorization: Bearer KEY' on /v1 requests (default: $MOR_API_KEY if set)"),
        new("--max-queue", "N", "requests that may wait for a generation slot; one more gets HTTP 429 (default 64)"),
        new("--max-batch", "N", "sequences generated at once (the batching engine's batch; default 8)"),
        new("--context", "N", "context length in tokens (default and maximum: the model's max_position_embeddings)"),
        new("--max-tokens", "N", "largest max_tokens a request may ask for (default: the context length)"),
        new("--max-prompt-tokens", "N", "longest prompt in tokens (default: the context length − 1)"),
        new("--max-body-bytes", "N", "largest request body (default 1048576)"),
        new("--model-id", "NAME", "the model's id in the API (default: the model folder's name)"),
        WeightsOption.Option,
        new("--threads", "N", "torch threads"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        try { return Run(o, stdout, stderr, stop.Token); }
        finally { Console.CancelKeyPress -= onCancel; }
    }

    /// <summary>Loads the model, serves until <paramref name="stop"/> is cancelled, then stops (cancelling running generations).
    /// <paramref name="started"/> gets the bound address once the server listens.</summary>
    public static int Run(ParsedOptions o, TextWriter stdout, TextWriter stderr, CancellationToken stop, Action<Uri>? started = null)
    {
        string dir = o.Get("--model") ?? throw new UsageException("--model DIR is required");
        int maxQueue = o.GetInt("--max-queue", 0) ?? 64;
        int maxBatch = o.GetInt("--max-batch", 1) ?? 8;
        var serverOptions = new ServerOptions
        {
            Host = o.Get("--host") ?? "127.0.0.1",
            Port = o.GetInt("--port", 0) ?? 8000,
            ApiKey = o.Get("--api-key") ?? NonEmpty(Environment.GetEnvironmentVariable("MOR_API_KEY")),
            ModelId = o.Get("--model-id") ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))),
            MaxTokensLimit = o.GetInt("--max-tokens", 1),
            MaxPromptTokens = o.GetInt("--max-prompt-tokens", 1),
            MaxBodyBytes = o.GetInt("--max-body-bytes", 1024) ?? 1 << 20,
            Log = stderr,
        };
        try { serverOptions.Validate(); }
        catch (ArgumentException e) { throw new UsageException("--" + e.Message); }

        var weights = WeightsOption.Parse(o);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        var (model, tokenizer) = Checkpoint.LoadModelFolder(dir);
        using var _ = WeightsOption.Apply(model, weights);
        int context = o.GetInt("--context", 2) ?? model.Config.MaxPositionEmbeddings;
        if (context > model.Config.MaxPositionEmbeddings)
            throw new UsageException($"--context: {context} is longer than the model's max_position_embeddings ({model.Config.MaxPositionEmbeddings})");

        // Every request goes through the continuous depth-wise batching engine: up to --max-batch sequences decode together,
        // up to --max-queue more wait for a row, beyond that 429.
        using var engine = new BatchingEngine(model, tokenizer, new EngineOptions { MaxBatch = maxBatch, MaxQueue = maxQueue, ContextLength = context });
        IGenerationService service = engine;

        var server = MoRServer.StartAsync(service, serverOptions, ChatFormats.ForModelFolder(dir, tokenizer), cancel: stop).GetAwaiter().GetResult();
        try
        {
            bool exposed = !IPAddress.IsLoopback(serverOptions.BindAddress());
            if (exposed && serverOptions.ApiKey is null)
                stderr.WriteLine($"warning: listening on {serverOptions.Host} without an API key: anyone who can reach this machine can use the model");
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"serving '{serverOptions.ModelId}' ({model.Config.VocabSize} tokens vocabulary, context {context}, batch {maxBatch}, queue {maxQueue}" +
                $"{(weights == TorchSharp.torch.ScalarType.Float32 ? "" : $", {WeightsOption.Name(weights)} weights")}{(serverOptions.ApiKey is null ? "" : ", API key required")}) on {server.Address}"));
            stdout.WriteLine($"  {server.Address}v1/chat/completions · {server.Address}v1/completions · {server.Address}metrics — Ctrl+C stops");
            stdout.Flush();
            started?.Invoke(server.Address);
            stop.WaitHandle.WaitOne();
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        stdout.WriteLine("stopped");
        return CommandLine.ExitOk;
    }

    private static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
