using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Model;

namespace MoRSharp.Cli.Commands;

/// <summary><c>mor info</c>: layout, parameter counts, FLOPs per token and KV-cache size of a config or preset (no weights allocated).</summary>
public sealed class InfoCommand : ICommand
{
    public string Name => "info";

    public string Summary => "Show a model's layout, parameters, FLOPs per token and KV-cache size (no weights are allocated).";

    public IReadOnlyList<string> Usage { get; } =
    [
        "mor info --config FILE|--preset NAME [--context N] [--json]",
        "mor info --list-presets [--json]",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--config", "FILE", "model config.json"),
        new("--preset", "NAME", "a built-in preset (see --list-presets)"),
        new("--context", "N", "context length for the FLOPs count (default: max_position_embeddings)"),
        new("--json", null, "print JSON instead of a table"),
        new("--list-presets", null, "list the built-in presets"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        bool json = o.Has("--json");
        if (o.Has("--list-presets"))
        {
            if (o.Has("--config") || o.Has("--preset") || o.Has("--context"))
                throw new UsageException("--list-presets cannot be combined with --config, --preset or --context");
            ListPresets(stdout, json);
            return CommandLine.ExitOk;
        }

        string? file = o.Get("--config");
        string? preset = o.Get("--preset");
        if ((file is null) == (preset is null))
            throw new UsageException("give exactly one of --config FILE or --preset NAME");
        int? context = o.GetInt("--context", min: 1);

        ModelConfig config = file is not null ? ConfigJson.Load(file) : Presets.Get(preset!);
        int ctx = context ?? config.MaxPositionEmbeddings;
        if (ctx > config.MaxPositionEmbeddings)
            stderr.WriteLine($"warning: --context {ctx} exceeds max_position_embeddings = {config.MaxPositionEmbeddings}");
        var acc = ModelAccounting.Compute(config, ctx);

        if (json)
        {
            var node = new JsonObject
            {
                ["source"] = file is not null ? new JsonObject { ["config"] = file } : new JsonObject { ["preset"] = preset },
                ["model"] = new JsonObject
                {
                    ["hidden_size"] = config.HiddenSize,
                    ["intermediate_size"] = config.IntermediateSize,
                    ["num_hidden_layers"] = config.NumHiddenLayers,
                    ["num_attention_heads"] = config.NumAttentionHeads,
                    ["num_key_value_heads"] = config.NumKeyValueHeads,
                    ["head_dim"] = config.HeadDim,
                    ["vocab_size"] = config.VocabSize,
                    ["tie_word_embeddings"] = config.TieWordEmbeddings,
                    ["max_position_embeddings"] = config.MaxPositionEmbeddings,
                },
            };
            foreach (var (k, v) in acc.ToJsonNode().ToList())
            {
                node[k] = v?.DeepClone();
            }
            stdout.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            WriteTable(stdout, file is not null ? file : $"preset {preset}", config, acc);
        }
        return CommandLine.ExitOk;
    }

    private static void ListPresets(TextWriter w, bool json)
    {
        if (json)
        {
            var arr = new JsonArray();
            foreach (var n in Presets.Names) arr.Add(n);
            w.WriteLine(arr.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return;
        }
        int width = Presets.Names.Max(n => n.Length);
        w.WriteLine($"{"preset".PadRight(width)}  {"d",5} {"L",3}  {"sharing",-12} {"N_r",3}  {"routing",-7} {"non-emb params",15}");
        foreach (var n in Presets.Names)
        {
            var c = Presets.Get(n);
            var a = ModelAccounting.Compute(c, c.MaxPositionEmbeddings);
            w.WriteLine($"{n.PadRight(width)}  {c.HiddenSize,5} {c.NumHiddenLayers,3}  {a.Sharing,-12} {a.NumRecursion,3}  {a.Routing,-7} {Human(a.NonEmbeddingParams),15}");
        }
    }

    private static void WriteTable(TextWriter w, string source, ModelConfig c, ModelAccounting a)
    {
        var mor = c.Recursion;
        w.WriteLine(source);
        Row(w, "model", $"d_model {c.HiddenSize}, heads {c.NumAttentionHeads} (KV {c.NumKeyValueHeads}, head_dim {c.HeadDim}), " +
                        $"d_ff {c.IntermediateSize}, vocab {c.VocabSize}, {(c.TieWordEmbeddings ? "tied" : "untied")} embeddings");
        if (c.MoR is null)
            Row(w, "recursion", "none (vanilla)");
        else
        {
            Row(w, "recursion", $"{a.Sharing}, N_r = {a.NumRecursion}, block B = {a.BlockSize}, kv_cache {a.KvCache}");
            string routing = a.Routing == "none"
                ? "none"
                : $"{a.Routing} ({mor.RouterArch}, {ConfigNames.ToName(mor.EffectiveRouterFunc)}, alpha {F(mor.EffectiveAlpha)})";
            Row(w, "routing", routing);
            if (a.Routing != "none")
                Row(w, "capacities", string.Join(", ", a.Capacities.Select(x => x.ToString("0.####", CultureInfo.InvariantCulture))) +
                                     (a.Routing == "token" ? "   (expected fractions under perfect balance)" : ""));
        }
        bool allUnique = a.NumUnique == a.UnrolledDepth;
        Row(w, "layout", allUnique
            ? $"{a.UnrolledDepth} layers, all unique (no sharing)"
            : $"{a.LayoutDescription}   ({a.UnrolledDepth} unrolled layers, {a.NumUnique} unique)");
        const int perLine = 17;
        for (int s = 0; !allUnique && s < a.UniqueIndexOf.Length; s += perLine)
        {
            var idx = Enumerable.Range(s, Math.Min(perLine, a.UniqueIndexOf.Length - s)).ToList();
            Row(w, "  position", string.Join(" ", idx.Select(i => i.ToString(CultureInfo.InvariantCulture).PadLeft(3))));
            Row(w, "  unique", string.Join(" ", idx.Select(i => a.UniqueIndexOf[i].ToString(CultureInfo.InvariantCulture).PadLeft(3))));
        }
        w.WriteLine("parameters");
        Row(w, "  total", Count(a.TotalParams));
        Row(w, "  embedding", Count(a.EmbeddingParams) + (c.TieWordEmbeddings ? "   (tied with the LM head)" : "   (embedding + LM head)"));
        Row(w, "  non-embedding", Count(a.NonEmbeddingParams));
        Row(w, "  per layer", Count(a.ParamsPerLayer));
        Row(w, "  routers", Count(a.RouterParams));
        w.WriteLine($"FLOPs per token, forward (context {a.Context})");
        Row(w, "  paper", Flops(a.FlopsPerTokenPaper) + "   (spec §4.4: no embedding/head, GQA ignored)");
        Row(w, "  exact", Flops(a.FlopsPerTokenExact) + "   (GQA, LM head, routers)");
        w.WriteLine("training FLOPs per token (3 × forward)");
        Row(w, "  paper", Flops(a.TrainingFlopsPerTokenPaper));
        Row(w, "  exact", Flops(a.TrainingFlopsPerTokenExact));
        w.WriteLine("KV cache");
        Row(w, "  ratio", $"{F(a.KvCacheRatio)} of a vanilla {a.UnrolledDepth}-layer model (recursion blocks: {F(a.KvCacheRatioRecursions)})");
        Row(w, "  bytes/token", $"fp32 {Count((long)Math.Round(a.KvBytesPerTokenFp32))}, bf16 {Count((long)Math.Round(a.KvBytesPerTokenBf16))}");
    }

    private static void Row(TextWriter w, string label, string value) => w.WriteLine($"{label,-18}{value}");

    private static string F(double x) => x.ToString("0.####", CultureInfo.InvariantCulture);

    private static string Count(long n) =>
        n < 1000 ? n.ToString(CultureInfo.InvariantCulture) : $"{n.ToString("N0", CultureInfo.InvariantCulture)} ({Human(n)})";

    private static string Flops(double f) =>
        $"{Math.Round(f).ToString("N0", CultureInfo.InvariantCulture)} ({f.ToString("0.###e+0", CultureInfo.InvariantCulture)})";

    private static string Human(long n) => n switch
    {
        >= 1_000_000_000 => (n / 1e9).ToString("0.###", CultureInfo.InvariantCulture) + "B",
        >= 1_000_000 => (n / 1e6).ToString("0.##", CultureInfo.InvariantCulture) + "M",
        >= 1_000 => (n / 1e3).ToString("0.#", CultureInfo.InvariantCulture) + "K",
        _ => n.ToString(CultureInfo.InvariantCulture),
    };
}
