using System.Text.Json;
using MoRSharp.Config;

namespace MoRSharp.IO;

/// <summary>
/// A model folder's generation settings: <c>generation_config.json</c> (Hugging Face), with the token ids of
/// <c>config.json</c> as the fallback. Only fields the file gives are set; a sampler uses its own defaults for the rest.
/// <c>eos_token_id</c> may be one id or a list (Llama 3: end of text, end of turn, …): generation stops at any of them.
/// </summary>
public sealed record GenerationDefaults
{
    public const string FileName = "generation_config.json";

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? BosTokenId { get; init; }
    public int? PadTokenId { get; init; }
    public bool? DoSample { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public double? RepetitionPenalty { get; init; }
    public int? MaxNewTokens { get; init; }
    /// <summary>Prompt + generated tokens (Hugging Face's <c>max_length</c>).</summary>
    public int? MaxLength { get; init; }

    /// <summary>Reads <c>DIR/generation_config.json</c> when present; ids missing there come from <c>DIR/config.json</c>.</summary>
    public static GenerationDefaults FromModelFolder(string dir)
    {
        string path = Path.Combine(dir, FileName);
        var result = File.Exists(path) ? Parse(File.ReadAllText(path), path) : new GenerationDefaults();
        string configPath = Path.Combine(dir, HfModelFolder.ConfigFile);
        if (File.Exists(configPath) && (result.EosTokenIds.Count == 0 || result.BosTokenId is null))
        {
            var config = ConfigJson.Parse(File.ReadAllText(configPath), configPath);
            if (result.EosTokenIds.Count == 0)
                result = result with { EosTokenIds = config.EosTokenIds ?? (config.EosTokenId is int e ? [e] : []) };
            if (result.BosTokenId is null) result = result with { BosTokenId = config.BosTokenId };
        }
        return result;
    }

    /// <summary>Parses generation_config.json text; unknown keys are ignored (the file has many sampler options), wrong types are errors.</summary>
    public static GenerationDefaults Parse(string json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e) { throw new ConfigException($"{source}: invalid JSON ({e.Message})"); }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new ConfigException($"{source}: expected a JSON object");
            return new GenerationDefaults
            {
                EosTokenIds = Ids(r, "eos_token_id", source),
                BosTokenId = Int(r, "bos_token_id", source),
                PadTokenId = Int(r, "pad_token_id", source),
                DoSample = r.TryGetProperty("do_sample", out var ds) && ds.ValueKind is JsonValueKind.True or JsonValueKind.False ? ds.GetBoolean()
                    : ds.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null ? null : throw new ConfigException($"{source}: do_sample: expected true or false"),
                Temperature = Num(r, "temperature", source),
                TopP = Num(r, "top_p", source),
                TopK = Int(r, "top_k", source),
                RepetitionPenalty = Num(r, "repetition_penalty", source),
                MaxNewTokens = Int(r, "max_new_tokens", source),
                MaxLength = Int(r, "max_length", source),
            };
        }
    }

    private static int? Int(JsonElement r, string key, string source)
    {
        if (!r.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        throw new ConfigException($"{source}: {key}: expected an integer, got {ConfigJson.Describe(v.ValueKind)}");
    }

    private static double? Num(JsonElement r, string key, string source)
    {
        if (!r.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d)) return d;
        throw new ConfigException($"{source}: {key}: expected a number, got {ConfigJson.Describe(v.ValueKind)}");
    }

    private static IReadOnlyList<int> Ids(JsonElement r, string key, string source)
    {
        if (!r.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int one)) return [one];
        if (v.ValueKind != JsonValueKind.Array) throw new ConfigException($"{source}: {key}: expected an integer or a list of integers");
        var ids = new List<int>();
        foreach (var e in v.EnumerateArray())
            ids.Add(e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) ? id : throw new ConfigException($"{source}: {key}[{ids.Count}]: expected an integer"));
        return ids;
    }
}
