using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MoRSharp.Config;

/// <summary>
/// Reading and writing <c>config.json</c>: the Hugging Face Llama fields of <see cref="ModelConfig"/> plus the optional
/// <c>"mor"</c> block (<see cref="MoRConfig"/>).
/// <para>
/// Parsing is strict: unknown keys are rejected with the source and the key path (<c>config.json: unknown key
/// 'mor.capacty' (did you mean 'mor.capacity'?)</c>), values of the wrong JSON type name the key and the expected type,
/// and duplicate keys are rejected. The usual extra keys of a Hugging Face Llama <c>config.json</c> are accepted and
/// ignored (listed in <see cref="IgnoredHfKeys"/>); the few that would change the model if they had another value are
/// checked (e.g. <c>rope_scaling</c> must be null). Comments and trailing commas are tolerated.
/// Parsing does <b>not</b> run <see cref="ConfigValidator"/>; <see cref="Load"/> does.
/// </para>
/// </summary>
public static class ConfigJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static readonly JsonDocumentOptions DocOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    /// <summary>
    /// Top-level keys of a Hugging Face Llama <c>config.json</c> that MoRSharp accepts and ignores. The check, when not
    /// null, is run on the value and returns an error message (without the key) when the value would describe a model
    /// MoRSharp does not implement. This is the one place to extend when a new HF key shows up.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, Func<JsonElement, ModelConfig, string?>?> IgnoredHfKeys =
        new Dictionary<string, Func<JsonElement, ModelConfig, string?>?>(StringComparer.Ordinal)
        {
            ["_name_or_path"] = null,
            ["architectures"] = null,
            ["attention_bias"] = (v, _) => IsFalseOrNull(v) ? null : "must be false (MoRSharp's attention has no biases)",
            ["attention_dropout"] = null,            // dropout is not used
            ["mlp_bias"] = (v, _) => IsFalseOrNull(v) ? null : "must be false (MoRSharp's MLP has no biases)",
            ["pretraining_tp"] = null,
            ["torch_dtype"] = null,
            ["transformers_version"] = null,
            ["use_cache"] = null,
            ["pad_token_id"] = null,
            ["is_llama_config"] = null,              // SmolLM (nanotron export)
            ["rope_interleaved"] = (v, _) => IsFalseOrNull(v) ? null : "must be false (MoRSharp uses the HF rotate-half RoPE)",
            ["rope_scaling"] = (v, _) => v.ValueKind == JsonValueKind.Null ? null
                : $"must be null: {RopeKind(v)} RoPE scaling changes the rotary frequencies and is not supported (MoRSharp implements plain RoPE)",
            // transformers ≥ 5 writes RoPE settings here; only the plain kind ("default") is supported (rope_theta is read from it).
            ["rope_parameters"] = (v, c) => v.ValueKind == JsonValueKind.Null ? null
                : v.ValueKind != JsonValueKind.Object ? "expected an object or null"
                : RopeKind(v) is not ("default" or "unspecified") ? $"{RopeKind(v)} RoPE scaling changes the rotary frequencies and is not supported; MoRSharp implements plain RoPE (rope_type \"default\")"
                : v.TryGetProperty("rope_theta", out var th) && (th.ValueKind != JsonValueKind.Number || !th.TryGetDouble(out _)) ? "rope_theta: expected a number"
                : null,
            ["dtype"] = null,                        // transformers ≥ 4.56 spelling of torch_dtype; weights are converted on load
            ["quantization_config"] = (v, _) => v.ValueKind == JsonValueKind.Null ? null
                : "quantized checkpoints (GPTQ, AWQ, bitsandbytes, …) are not supported: load an unquantized F32/F16/BF16 checkpoint",
            ["head_dim"] = (v, c) =>
                v.ValueKind == JsonValueKind.Null ? null
                : v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int hd) ? "expected an integer"
                : c.NumAttentionHeads > 0 && hd * c.NumAttentionHeads == c.HiddenSize ? null
                : $"must equal hidden_size / num_attention_heads = {c.HiddenSize} / {c.NumAttentionHeads}, got {hd}",
        };

    private static bool IsFalseOrNull(JsonElement v) => v.ValueKind is JsonValueKind.False or JsonValueKind.Null;

    private static string RopeKind(JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Object) return "this";
        foreach (var key in new[] { "rope_type", "type" })
            if (v.TryGetProperty(key, out var t) && t.ValueKind == JsonValueKind.String) return t.GetString()!;
        return "unspecified";
    }

    /// <summary>Reads, parses and validates a config file. Throws <see cref="ConfigException"/> naming the file.</summary>
    public static ModelConfig Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found");
        }
        catch (DirectoryNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found (directory does not exist)");
        }
        var config = Parse(text, path);
        try
        {
            ConfigValidator.Validate(config);
        }
        catch (ConfigException e)
        {
            throw new ConfigException($"{path}: {e.Message}");
        }
        return config;
    }

    /// <summary>
    /// Parses config JSON (no validation beyond keys and types; call <see cref="ConfigValidator.Validate"/>).
    /// <paramref name="source"/> names the input in error messages (usually the file name).
    /// </summary>
    public static ModelConfig Parse(string json, string source)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, DocOptions);
        }
        catch (JsonException e)
        {
            string where = e.LineNumber is long line ? $" at line {line + 1}, column {(e.BytePositionInLine ?? 0) + 1}" : "";
            throw new ConfigException($"{source}: invalid JSON{where}: {FirstSentence(e.Message)}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ConfigException($"{source}: expected a JSON object at the top level, got {Describe(root.ValueKind)}");
            var config = new ModelConfig();
            var ignored = new List<JsonProperty>();
            ReadObject(root, config, source, "", ignored);
            foreach (var p in ignored)
            {
                var check = IgnoredHfKeys[p.Name];
                string? error = check?.Invoke(p.Value, config);
                if (error is not null) throw new ConfigException($"{source}: {p.Name}: {error}");
            }
            if (root.TryGetProperty("model_type", out _) && config.ModelType != "llama")
                throw new ConfigException($"{source}: model_type: must be \"llama\" (or absent), got \"{config.ModelType}\" (MoRSharp loads Llama-family models: Llama, SmolLM, TinyLlama, …)");
            if (root.TryGetProperty("architectures", out var arch) && arch.ValueKind == JsonValueKind.Array)
                foreach (var a in arch.EnumerateArray())
                    if (a.ValueKind != JsonValueKind.String || a.GetString() is not ("LlamaForCausalLM" or "LlamaModel" or "MoRForCausalLM"))
                        throw new ConfigException($"{source}: architectures: {a.GetRawText()} is not supported (expected LlamaForCausalLM)");
            if (root.TryGetProperty("rope_parameters", out var rp) && rp.ValueKind == JsonValueKind.Object
                && rp.TryGetProperty("rope_theta", out var theta) && theta.TryGetDouble(out double t))
            {
                if (root.TryGetProperty("rope_theta", out var direct) && direct.TryGetDouble(out double d) && d != t)
                    throw new ConfigException($"{source}: rope_theta {d} and rope_parameters.rope_theta {t} disagree");
                config.RopeTheta = t;
            }
            return config;
        }
    }

    /// <summary>The config as indented JSON (null fields omitted).</summary>
    public static string Serialize(ModelConfig config)
    {
        if (config.EosTokenIds is not { Length: > 1 } ids) return JsonSerializer.Serialize(config, Options);
        var node = JsonSerializer.SerializeToNode(config, Options)!.AsObject();
        node["eos_token_id"] = new System.Text.Json.Nodes.JsonArray(ids.Select(i => (System.Text.Json.Nodes.JsonNode?)i).ToArray());
        return node.ToJsonString(Options);
    }

    /// <summary>Writes the config atomically: to a temporary file in the same directory, then renamed over <paramref name="path"/>.</summary>
    public static void Save(ModelConfig config, string path)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(tmp, Serialize(config) + "\n", new UTF8Encoding(false));
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>A deep copy.</summary>
    public static ModelConfig Clone(ModelConfig config)
    {
        var copy = JsonSerializer.Deserialize<ModelConfig>(JsonSerializer.Serialize(config, Options), Options)!;
        copy.EosTokenIds = config.EosTokenIds?.ToArray();
        return copy;
    }

    // ---------------------------------------------------------------- strict reader

    private sealed record Prop(string Name, PropertyInfo Info);

    private static readonly Dictionary<Type, Dictionary<string, Prop>> PropCache = new();

    private static Dictionary<string, Prop> PropsOf(Type t)
    {
        lock (PropCache)
        {
            if (PropCache.TryGetValue(t, out var d)) return d;
            d = new Dictionary<string, Prop>(StringComparer.Ordinal);
            foreach (var pi in t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (pi.GetCustomAttribute<JsonIgnoreAttribute>() is not null || !pi.CanWrite) continue;
                var name = pi.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name;
                if (name is null) continue;
                d[name] = new Prop(name, pi);
            }
            PropCache[t] = d;
            return d;
        }
    }

    /// <summary>All key paths a config may contain (for documentation and suggestions).</summary>
    public static IReadOnlyList<string> KnownKeys =>
        PropsOf(typeof(ModelConfig)).Keys
            .Concat(PropsOf(typeof(MoRConfig)).Keys.Select(k => "mor." + k))
            .Order(StringComparer.Ordinal).ToList();

    private static void ReadObject(JsonElement obj, object target, string source, string prefix, List<JsonProperty>? ignored)
    {
        var props = PropsOf(target.GetType());
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject())
        {
            string path = prefix + p.Name;
            if (!seen.Add(p.Name)) throw new ConfigException($"{source}: duplicate key '{path}'");
            if (target is ModelConfig mc && p.Name == "eos_token_id" && p.Value.ValueKind == JsonValueKind.Array)
            {
                // Llama 3 lists several end-of-sequence ids; the first is EosTokenId, all are kept for generation and export.
                var ids = new List<int>();
                foreach (var e in p.Value.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
                        throw new ConfigException($"{source}: {path}[{ids.Count}]: expected an integer token id, got {Describe(e.ValueKind)}");
                    ids.Add(id);
                }
                if (ids.Count == 0) throw new ConfigException($"{source}: {path}: the list is empty (use null for no end-of-sequence token)");
                mc.EosTokenId = ids[0];
                mc.EosTokenIds = ids.Count > 1 ? ids.ToArray() : null;
            }
            else if (props.TryGetValue(p.Name, out var prop))
            {
                object? value = ReadValue(p.Value, prop.Info.PropertyType, prop.Info, source, path);
                prop.Info.SetValue(target, value);
            }
            else if (ignored is not null && IgnoredHfKeys.ContainsKey(p.Name))
            {
                ignored.Add(p);
            }
            else
            {
                var candidates = props.Keys.Concat(ignored is not null ? IgnoredHfKeys.Keys : []);
                string? guess = Suggest(p.Name, candidates);
                throw new ConfigException($"{source}: unknown key '{path}'" + (guess is null ? "" : $" (did you mean '{prefix}{guess}'?)"));
            }
        }
    }

    private static object? ReadValue(JsonElement v, Type type, PropertyInfo info, string source, string path)
    {
        var underlying = Nullable.GetUnderlyingType(type);
        bool nullable = underlying is not null || (!type.IsValueType && IsNullableReference(info));
        var t = underlying ?? type;
        if (v.ValueKind == JsonValueKind.Null)
        {
            if (nullable) return null;
            throw TypeError(source, path, t, v);
        }
        if (t == typeof(int))
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
            throw TypeError(source, path, t, v);
        }
        if (t == typeof(double))
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d)) return d;
            throw TypeError(source, path, t, v);
        }
        if (t == typeof(bool))
        {
            if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
            throw TypeError(source, path, t, v);
        }
        if (t == typeof(string))
        {
            if (v.ValueKind == JsonValueKind.String) return v.GetString();
            throw TypeError(source, path, t, v);
        }
        if (t == typeof(double[]))
        {
            if (v.ValueKind != JsonValueKind.Array) throw TypeError(source, path, t, v);
            var list = new List<double>();
            int idx = 0;
            foreach (var e in v.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double d))
                    throw new ConfigException($"{source}: {path}[{idx}]: expected a number, got {Describe(e.ValueKind)}");
                list.Add(d);
                idx++;
            }
            return list.ToArray();
        }
        if (t == typeof(MoRConfig))
        {
            if (v.ValueKind != JsonValueKind.Object) throw TypeError(source, path, t, v);
            var mor = new MoRConfig();
            ReadObject(v, mor, source, path + ".", null);
            return mor;
        }
        throw new InvalidOperationException($"ConfigJson: no reader for property type {t} ({path})");
    }

    private static bool IsNullableReference(PropertyInfo info) =>
        new NullabilityInfoContext().Create(info).WriteState == NullabilityState.Nullable;

    private static ConfigException TypeError(string source, string path, Type t, JsonElement v)
    {
        string expected = t == typeof(int) ? "an integer"
            : t == typeof(double) ? "a number"
            : t == typeof(bool) ? "true or false"
            : t == typeof(string) ? "a string"
            : t == typeof(double[]) ? "an array of numbers"
            : t == typeof(MoRConfig) ? "an object (or null)"
            : t.Name;
        string got = v.ValueKind == JsonValueKind.Number ? $"the number {v.GetRawText()}" : Describe(v.ValueKind);
        return new ConfigException($"{source}: {path}: expected {expected}, got {got}");
    }

    /// <summary>"an object", "a string", … for error messages about JSON values.</summary>
    public static string Describe(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => k.ToString(),
    };

    private static string FirstSentence(string msg)
    {
        int i = msg.IndexOf(" Path:", StringComparison.Ordinal);
        return (i > 0 ? msg[..i] : msg).Trim();
    }

    /// <summary>The closest candidate by edit distance, when close enough to be a plausible typo.</summary>
    public static string? Suggest(string key, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDist = int.MaxValue;
        foreach (var c in candidates)
        {
            int dist = Levenshtein(key.ToLowerInvariant(), c.ToLowerInvariant());
            if (dist < bestDist) { bestDist = dist; best = c; }
        }
        if (best is null) return null;
        int limit = Math.Max(2, Math.Min(key.Length, best.Length) / 3);
        return bestDist <= limit ? best : null;
    }

    private static int Levenshtein(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
            }
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
