using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Model;
using MoRSharp.Server;
using MoRSharp.Training;

namespace MoRSharp.Tests.Server;

/// <summary>A tiny expert-choice MoR model (byte tokenizer) written as a model folder and loaded back as <c>mor serve</c> loads
/// it, with one <see cref="TextGenerator"/> over it; shared by the server tests (one collection: they run one after another).</summary>
public sealed class TinyModelFixture : IDisposable
{
    public const string ModelId = "tiny";
    public string Dir { get; }
    public MoRForCausalLM Model { get; }
    public ITokenizer Tokenizer { get; }
    public TextGenerator Generator { get; }

    public TinyModelFixture()
    {
        Dir = Path.Combine(Path.GetTempPath(), "morsharp-serve-" + Guid.NewGuid().ToString("N")[..8], ModelId);
        using (var m = new MoRForCausalLM(TestConfigs.Tiny("expert", hidden: 32, vocab: 257, context: 128), seed: 5))
            Checkpoint.WriteModelFolder(Dir, m, TokenizerFactory.Bytes().SaveTo);
        (Model, Tokenizer) = Checkpoint.LoadModelFolder(Dir);
        Generator = new TextGenerator(Model, Tokenizer);
    }

    public void Dispose()
    {
        Generator.Dispose();
        Model.Dispose();
        try { Directory.Delete(Path.GetDirectoryName(Dir)!, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(nameof(ServerCollection))]
public sealed class ServerCollection : ICollectionFixture<TinyModelFixture>;

public static class ServerTestUtil
{
    public static Task<MoRServer> Start(IGenerationService service, ServerOptions? options = null) =>
        MoRServer.StartAsync(service, (options ?? new ServerOptions()) with { Port = 0, ModelId = TinyModelFixture.ModelId });

    /// <summary>An HttpClient that gives up after 30 s (a hung request fails the test instead of stalling the suite).</summary>
    public static HttpClient Http() => new() { Timeout = TimeSpan.FromSeconds(30) };

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<(int status, JsonNode? body)> Post(HttpClient http, Uri server, string path, string json)
    {
        using var r = await http.PostAsync(new Uri(server, path), Json(json));
        string text = await r.Content.ReadAsStringAsync();
        return ((int)r.StatusCode, text.Length > 0 && text[0] == '{' ? JsonNode.Parse(text) : null);
    }

    /// <summary>Reads a server-sent event stream to its end: the data of each event.</summary>
    public static async Task<List<string>> ReadEvents(HttpResponseMessage response)
    {
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            events.Add(line["data: ".Length..]);
        }
        return events;
    }
}

/// <summary>A scripted generation service: yields <see cref="Pieces"/> (one per token, each after <see cref="Delay"/>; forever
/// with <see cref="Endless"/>), optionally waits on <see cref="Hold"/> first, and records calls and cancellation.</summary>
public sealed class FakeService : IGenerationService
{
    public ITokenizer Tokenizer { get; init; } = TokenizerFactory.Bytes();
    public int ContextLength { get; init; } = 64;
    public string[] Pieces { get; init; } = ["Hel", "lo"];
    public FinishReason Finish { get; init; } = FinishReason.Stop;
    public TimeSpan Delay { get; init; }
    public bool Endless { get; init; }
    public SemaphoreSlim? Hold { get; init; }
    public List<(int[] prompt, GenerationOptions options)> Calls { get; } = [];
    public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public GenerationMetrics Metrics => new(0, 0, 0, 0, 0, [0], 0);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        options.Validate();
        lock (Calls) Calls.Add((promptIds.ToArray(), options));
        Started.TrySetResult();
        try
        {
            if (Hold is not null) await Hold.WaitAsync(cancel);
            for (int i = 0; Endless || i < Pieces.Length; i++)
            {
                if (Delay > TimeSpan.Zero) await Task.Delay(Delay, cancel);
                cancel.ThrowIfCancellationRequested();
                bool last = !Endless && i == Pieces.Length - 1;
                yield return new GeneratedToken(i, Pieces[i % Pieces.Length], 1, i) { Finish = last ? Finish : null };
            }
        }
        finally
        {
            if (cancel.IsCancellationRequested) Cancelled.TrySetResult();
        }
    }
}
