using System.Globalization;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Training;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor convert</c>: a pretrained vanilla model (our folder or a Hugging Face Llama folder) becomes a recursive or MoR model
/// (spec §7): the shared block is filled by an initialisation rule, first/last layers copied for Middle-*, routers fresh.
/// </summary>
public sealed class ConvertCommand : ICommand
{
    public string Name => "convert";
    public string Summary => "Convert a pretrained vanilla model into a recursive or MoR model (stepwise/average/lower/upper/random init).";

    public IReadOnlyList<string> Usage { get; } =
    [
        "mor convert --from DIR --to DIR --sharing S --recursions N --init stepwise|average|lower|upper|random [--routing none|expert|token] [--capacity C1,C2,…]",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--from", "DIR", "the pretrained vanilla model folder (config.json + safetensors; ours or Hugging Face Llama/SmolLM)"),
        new("--to", "DIR", "the new model folder (must not exist or be empty)"),
        new("--sharing", "S", "cycle | sequence | middle_cycle | middle_sequence"),
        new("--recursions", "N", "number of recursions N_r"),
        new("--init", "M", "stepwise | average | lower | upper | random (how the shared block is filled, spec §7)"),
        new("--routing", "R", "none (recursive model, default) | expert | token (MoR; needs cycle or middle_cycle)"),
        new("--capacity", "C1,C2,…", "expert-choice capacities per recursion, non-increasing in (0, 1] (default (N_r − r + 1)/N_r)"),
        new("--seed", "S", "seed for the routers and the random init (default 0)"),
        new("--dtype", "T", "float32 (default) | bfloat16 | float16 for the written weights"),
        new("--max-shard-size", "SIZE", "split the weights into shards of at most SIZE bytes (e.g. 2GB, 500MB; default 5GB)"),
        new("--threads", "N", "torch threads"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string from = o.Get("--from") ?? throw new UsageException("--from DIR is required");
        string to = o.Get("--to") ?? throw new UsageException("--to DIR is required");
        var options = new ConversionOptions
        {
            Sharing = Parse<SharingStrategy>(o.Get("--sharing") ?? throw new UsageException("--sharing S is required"), "--sharing"),
            NumRecursion = o.GetInt("--recursions", 1) ?? throw new UsageException("--recursions N is required"),
            Init = Parse<InitMethod>(o.Get("--init") ?? throw new UsageException("--init M is required"), "--init"),
            Routing = Parse<RoutingKind>(o.Get("--routing") ?? "none", "--routing"),
            Capacity = o.Get("--capacity") is { } cap ? ParseList(cap) : null,
            Seed = o.GetInt("--seed", 0) ?? 0,
        };
        var dtype = ParseDType(o);
        long shard = ParseSize(o.Get("--max-shard-size"));
        PrepareTarget(from, to);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));

        using var source = HfModelFolder.LoadModel(from);
        var (model, plan) = MoRConversion.Convert(source, options);
        using var _ = model;
        WriteFolder(to, from, dir => HfModelFolder.Write(dir, model, dtype, shard));

        var before = ModelAccounting.Compute(source.Config, Math.Min(2048, source.Config.MaxPositionEmbeddings));
        var after = ModelAccounting.Compute(model.Config, Math.Min(2048, model.Config.MaxPositionEmbeddings));
        if (plan.Kept.Length != plan.SourceLayers)
            stderr.WriteLine($"note: {plan.SourceLayers} layers are not 1 + B·N_r + 1 / B·N_r; using layers {string.Join(" ", plan.Kept)} (evenly spaced, as the official code does)");
        var table = new ConsoleTable("unique layer", "initialised from source layer(s)");
        for (int u = 0; u < plan.SourcesOfUnique.Length; u++)
            table.AddRow($"model.layers.{u}", string.Join(", ", plan.SourcesOfUnique[u]) + (plan.SourcesOfUnique[u].Length > 1 ? " (mean)" : ""));
        stdout.WriteLine($"{from} ({source.Config.NumHiddenLayers} layers, {Fmt.Si(before.TotalParams)} parameters) → {to}");
        stdout.WriteLine($"{ConfigNames.ToName(options.Sharing)}, N_r = {options.NumRecursion}, {ConfigNames.ToName(options.Routing)} routing, {ConfigNames.ToName(options.Init)} init: " +
                         $"{model.Layout.Describe()}, {Fmt.Si(after.TotalParams)} parameters");
        stdout.WriteLine(table.ToText());
        if (options.Routing != RoutingKind.None) stdout.WriteLine($"routers: freshly initialised, N(0, {model.Config.InitializerRange}), seed {options.Seed}");
        return CommandLine.ExitOk;
    }

    internal static T Parse<T>(string value, string option) where T : struct, Enum
    {
        try { return ConfigNames.Parse<T>(value, option); }
        catch (ConfigException e) { throw new UsageException(e.Message); }
    }

    internal static TorchSharp.torch.ScalarType ParseDType(ParsedOptions o)
    {
        try { return HfModelFolder.ParseDType(o.Get("--dtype") ?? "float32"); }
        catch (ArgumentException e) { throw new UsageException("--dtype: " + e.Message); }
    }

    private static double[] ParseList(string s)
    {
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        return parts.Select(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v
            : throw new UsageException($"--capacity: '{p}' is not a number (expected e.g. 1,0.67,0.33)")).ToArray();
    }

    /// <summary>"2GB", "500MB", "1.5GiB", "1000000" → bytes (decimal units as Hugging Face's max_shard_size; KiB/MiB/GiB binary).</summary>
    internal static long ParseSize(string? s)
    {
        if (s is null) return SafeTensorsCheckpoint.DefaultMaxShardBytes;
        string t = s.Trim().ToUpperInvariant();
        (string unit, double mult)[] units = [("GIB", 1L << 30), ("MIB", 1L << 20), ("KIB", 1L << 10), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)];
        foreach (var (unit, mult) in units)
            if (t.EndsWith(unit, StringComparison.Ordinal) && double.TryParse(t[..^unit.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0)
                return (long)(v * mult);
        if (long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long b) && b > 0) return b;
        throw new UsageException($"--max-shard-size: '{s}' is not a size (e.g. 2GB, 500MB, 1048576)");
    }

    /// <summary>--to must differ from --from and be absent or empty, so nothing is overwritten.</summary>
    internal static void PrepareTarget(string from, string to)
    {
        if (Path.GetFullPath(from).TrimEnd('/') == Path.GetFullPath(to).TrimEnd('/')) throw new UsageException("--to must be a different folder from the source");
        if (Directory.Exists(to) && Directory.EnumerateFileSystemEntries(to).Any())
            throw new IOException($"--to: {to} exists and is not empty (choose a new folder)");
    }

    /// <summary>Writes into a temporary sibling folder, copies the tokenizer/generation files, then renames it to <paramref name="to"/>,
    /// so an interrupted run never leaves a half-written model under the final name.</summary>
    internal static void WriteFolder(string to, string from, Action<string> write)
    {
        string full = Path.GetFullPath(to).TrimEnd('/');
        string tmp = full + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        try
        {
            Directory.CreateDirectory(tmp);
            write(tmp);
            HfModelFolder.CopySideFiles(from, tmp);
            if (Directory.Exists(full)) Directory.Delete(full);          // empty (checked by PrepareTarget)
            Directory.Move(tmp, full);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }
}
