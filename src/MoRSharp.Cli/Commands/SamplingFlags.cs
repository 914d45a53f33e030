using MoRSharp.Inference;

namespace MoRSharp.Cli.Commands;

/// <summary>The sampling and stopping options shared by <c>mor generate</c> and <c>mor chat</c>.</summary>
internal static class SamplingFlags
{
    public static IReadOnlyList<CliOption> Options { get; } =
    [
        new("--max-tokens", "N", "new tokens at most (default 128)"),
        new("--temperature", "T", "0 = greedy; otherwise sample at this temperature (default 0.8)"),
        new("--top-k", "K", "sample among the K most likely tokens (0 = off, default 40)"),
        new("--top-p", "P", "nucleus sampling: smallest set of tokens reaching probability P (default 0.95)"),
        new("--repetition-penalty", "R", "HF-style penalty on tokens already seen, > 1 discourages repeats (default 1.0 = off)"),
        new("--seed", "S", "seed of the sampling stream (default: random)"),
        new("--stop", "TEXT", "stop before this text (repeatable)", Repeatable: true),
        new("--truncate-prompt", null, "keep the end of a prompt longer than the context instead of refusing it"),
    ];

    public static GenerationOptions Parse(ParsedOptions o)
    {
        int? seed = o.GetInt("--seed");
        var sampling = new SamplingOptions
        {
            Temperature = o.GetDouble("--temperature") ?? 0.8,
            TopK = o.GetInt("--top-k") ?? 40,
            TopP = o.GetDouble("--top-p") ?? 0.95,
            RepetitionPenalty = o.GetDouble("--repetition-penalty") ?? 1.0,
            Seed = seed,
        };
        var options = new GenerationOptions
        {
            MaxTokens = o.GetInt("--max-tokens") ?? 128,
            Sampling = sampling,
            StopStrings = o.GetAll("--stop"),
            TruncatePrompt = o.Has("--truncate-prompt"),
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException("--" + e.Message.Replace('_', '-')); }
        return options;
    }
}
