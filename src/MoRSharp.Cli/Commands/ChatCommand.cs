using System.Globalization;
using MoRSharp.Chat;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor chat</c>: an interactive terminal conversation. Each turn is rendered with the model's chat format and the
/// conversation's KV cache is kept between turns, so only the new message is run through the model.
/// </summary>
public sealed class ChatCommand : ICommand
{
    /// <summary>Where user lines come from (the console; tests substitute a reader).</summary>
    public static TextReader Input { get; set; } = Console.In;

    public string Name => "chat";
    public string Summary => "Chat with a model in the terminal (/reset, /system TEXT, /exit); --show-depth colours replies by recursion depth.";
    public IReadOnlyList<string> Usage { get; } = ["mor chat --model DIR [--system TEXT] [--show-depth] [sampling flags]"];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "a model folder (config.json, model.safetensors, tokenizer files)"),
        new("--system", "TEXT", "a system message at the start of the conversation"),
        new("--show-depth", null, "colour each reply token by its number of recursions"),
        .. SamplingFlags.Options,
        WeightsOption.Option,
        new("--threads", "N", "torch threads"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string dir = o.Get("--model") ?? throw new UsageException("--model DIR is required");
        var options = SamplingFlags.Parse(o);
        var weights = WeightsOption.Parse(o);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        var (model, tokenizer) = Checkpoint.LoadModelFolder(dir);
        using var _ = WeightsOption.Apply(model, weights);
        using var generator = new TextGenerator(model, tokenizer);
        using var session = generator.CreateSession();
        var format = ChatFormats.ForModelFolder(dir, tokenizer);
        options = options with { StopStrings = [.. options.StopStrings, .. format.StopStrings] };
        int[] Encode(List<ChatTurn> turns) => ChatFormats.Encode(format, tokenizer, turns);
        var messages = new List<ChatTurn>();
        if (o.Get("--system") is { } sys) messages.Add(new ChatTurn("system", sys));
        bool showDepth = o.Has("--show-depth");
        int maxDepth = Math.Max(1, model.Layout.Recursions.Length > 0 ? model.Layout.NumRecursion : 0);
        bool interactive = !Console.IsInputRedirected && ReferenceEquals(Input, Console.In);
        stderr.WriteLine($"chat with {Path.GetFileName(Path.GetFullPath(dir))} ({ChatFormats.Describe(format)}); /reset, /system TEXT, /exit");

        while (true)
        {
            if (interactive) stdout.Write("> ");
            stdout.Flush();
            string? line = Input.ReadLine();
            if (line is null || line.Trim() is "/exit" or "/quit") break;
            if (line.Trim() == "/reset") { messages.RemoveAll(m => m.Role != "system"); stdout.WriteLine("(conversation cleared)"); continue; }
            if (line.StartsWith("/system ", StringComparison.Ordinal))
            {
                messages.RemoveAll(m => m.Role == "system");
                messages.Insert(0, new ChatTurn("system", line[8..]));
                stdout.WriteLine("(system message set)");
                continue;
            }
            if (string.IsNullOrWhiteSpace(line)) continue;
            messages.Add(new ChatTurn("user", line));

            var prompt = Encode(messages);
            // Drop the oldest turns while the conversation does not leave room for a reply.
            while (prompt.Length + Math.Min(options.MaxTokens, 32) > generator.ContextLength && messages.Count(m => m.Role != "system") > 1)
            {
                messages.RemoveAt(messages.FindIndex(m => m.Role != "system"));
                prompt = Encode(messages);
            }
            var reply = new System.Text.StringBuilder();
            var pieces = new List<(string, int)>();
            try
            {
                var stream = generator.GenerateAsync(prompt, options, session).GetAsyncEnumerator();
                try
                {
                    while (stream.MoveNextAsync().AsTask().GetAwaiter().GetResult())
                    {
                        var t = stream.Current;
                        reply.Append(t.Text);
                        if (t.Id >= 0) pieces.Add((t.Text, t.Depth));
                        if (!showDepth) { stdout.Write(t.Text); stdout.Flush(); }
                    }
                }
                finally { stream.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
            }
            catch (ArgumentException e)
            {
                stderr.WriteLine($"error: {e.Message}");
                messages.RemoveAt(messages.Count - 1);
                continue;
            }
            if (showDepth) stdout.Write(DepthColoring.Ansi(pieces, maxDepth));
            else stdout.WriteLine();
            if (session.ReusedTokens > 0 && CommandLine.DebugEnabled)
                stderr.WriteLine($"[reused {session.ReusedTokens.ToString(CultureInfo.InvariantCulture)} cached tokens]");
            messages.Add(new ChatTurn("assistant", reply.ToString().Trim()));
        }
        return CommandLine.ExitOk;
    }
}
