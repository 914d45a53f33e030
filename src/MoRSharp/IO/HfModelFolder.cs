using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>
/// Model folders in the Hugging Face <c>LlamaForCausalLM</c> layout — the ones MoRSharp writes and the ones
/// <c>save_pretrained</c> writes (Llama, SmolLM, TinyLlama, …): <c>config.json</c> + <c>model.safetensors</c> or
/// shards with <c>model.safetensors.index.json</c>, beside tokenizer and generation files.
/// <para><b>Reading</b> follows Hugging Face's defaults where a key is absent: <c>num_key_value_heads</c> = heads,
/// <c>rms_norm_eps</c> = 1e-6, and tied embeddings exactly when the weights have no <c>lm_head.weight</c>. Keys that
/// would change the maths and that MoRSharp does not implement (RoPE scaling, biases, quantization, another
/// <c>model_type</c>) are errors naming the key (see <see cref="ConfigJson.IgnoredHfKeys"/>). Weights in F16/BF16 are
/// converted to F32.</para>
/// <para><b>Writing</b> gives the exact <c>LlamaForCausalLM</c> form: HF key names, a config with <c>architectures</c>,
/// <c>model_type: llama</c>, <c>torch_dtype</c>, explicit <c>attention_bias</c>/<c>mlp_bias</c>/<c>rope_scaling</c>.
/// A recursive or MoR model is written the same way plus its <c>"mor"</c> block and <c>architectures:
/// ["MoRForCausalLM"]</c> (its weights hold each shared layer once, which plain Llama code cannot run); a recursive
/// model without routing can instead be written <see cref="Unroll">unrolled</see> into a true Llama.</para>
/// </summary>
public static class HfModelFolder
{
    public const string ConfigFile = "config.json";
    public const string GenerationConfigFile = "generation_config.json";

    /// <summary>The keys a Llama config.json must name (the model's shape); Hugging Face's defaults for them describe a 7B model.</summary>
    private static readonly string[] RequiredKeys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"];

    /// <summary>Reads and validates <c>DIR/config.json</c> with Hugging Face's defaults for absent keys (see the class comment).</summary>
    /// <param name="weights">The folder's weights, to decide tying when <c>tie_word_embeddings</c> is absent.</param>
    public static ModelConfig ReadConfig(string dir, SafeTensorsCheckpoint? weights = null)
    {
        string path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new ConfigException($"{path}: config file not found (a model folder holds {ConfigFile} and weights)");
        string text = File.ReadAllText(path);
        var config = ConfigJson.Parse(text, path);
        var present = new HashSet<string>(StringComparer.Ordinal);
        using (var doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }))
            foreach (var p in doc.RootElement.EnumerateObject()) present.Add(p.Name);
        foreach (var key in RequiredKeys)
            if (!present.Contains(key)) throw new ConfigException($"{path}: {key}: missing (a Llama config.json must give the model's shape)");
        if (!present.Contains("num_key_value_heads")) config.NumKeyValueHeads = config.NumAttentionHeads;
        if (!present.Contains("rms_norm_eps")) config.RmsNormEps = 1e-6;
        if (!present.Contains("tie_word_embeddings") && weights is not null)
            config.TieWordEmbeddings = !weights.Tensors.ContainsKey("lm_head.weight");
        try { ConfigValidator.Validate(config); }
        catch (ConfigException e) { throw new ConfigException($"{path}: {e.Message}"); }
        return config;
    }

    /// <summary>Loads config and weights from a model folder (ours or a Hugging Face Llama folder) as an F32 model.</summary>
    public static MoRForCausalLM LoadModel(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder {dir} does not exist");
        if (!File.Exists(Path.Combine(dir, ConfigFile)))
            throw new FileNotFoundException($"{dir}: missing {ConfigFile} (a model folder holds {ConfigFile}, {SafeTensorsCheckpoint.SingleFile} or shards with {SafeTensorsCheckpoint.IndexFile}, and tokenizer files)");
        if (!SafeTensorsCheckpoint.ExistsIn(dir))
        {
            string hint = File.Exists(Path.Combine(dir, "pytorch_model.bin")) || File.Exists(Path.Combine(dir, "pytorch_model.bin.index.json"))
                ? " (pytorch_model.bin pickles are not read: convert them with safetensors' convert script or save_pretrained(safe_serialization=True))" : "";
            throw new FileNotFoundException($"{dir}: missing {SafeTensorsCheckpoint.SingleFile} or {SafeTensorsCheckpoint.IndexFile}{hint}");
        }
        using var weights = SafeTensorsCheckpoint.Open(dir);
        var config = ReadConfig(dir, weights);
        var model = new MoRForCausalLM(config);
        try { ModelWeights.Load(model, weights); }
        catch { model.Dispose(); throw; }
        return model;
    }

    /// <summary>
    /// Writes the model's weights and config.json into <paramref name="dir"/> (created if missing) in the
    /// <c>LlamaForCausalLM</c> layout; floating-point weights stored as <paramref name="dtype"/> (F32, F16 or BF16).
    /// </summary>
    public static void Write(string dir, MoRForCausalLM model, ScalarType dtype = ScalarType.Float32,
        long maxShardBytes = SafeTensorsCheckpoint.DefaultMaxShardBytes)
    {
        CheckDType(dtype);
        Directory.CreateDirectory(dir);
        var tensors = model.state_dict().Select(kv => (kv.Key, kv.Value)).ToList();
        SafeTensorsCheckpoint.Write(dir, tensors, dtype == ScalarType.Float32 ? null : dtype, maxShardBytes);
        WriteConfig(Path.Combine(dir, ConfigFile), model.Config, dtype);
    }

    /// <summary>
    /// A recursive model without routing as a plain Llama: every unrolled position gets its own copy of the unique layer
    /// it uses (<c>model.layers.{ℓ}</c> ← <c>model.layers.{u(ℓ)}</c>), so Hugging Face's <c>LlamaForCausalLM</c> computes
    /// exactly the same function. Routed models cannot be written this way (routing is not a Llama operation).
    /// </summary>
    public static (ModelConfig config, List<(string name, Tensor tensor)> tensors) Unroll(MoRForCausalLM model)
    {
        var mor = model.Config.Recursion;
        if (mor.RoutingKind != RoutingKind.None)
            throw new ConfigException($"mor.routing: a model with {mor.Routing} routing cannot be unrolled into a plain Llama (routing decides per token which layers run); export it with its \"mor\" block");
        var layout = model.Layout;
        var config = model.Config.Clone();
        config.MoR = null;
        var state = model.state_dict();
        var tensors = new List<(string, Tensor)>();
        foreach (var (name, t) in state)
            if (!name.StartsWith("model.layers.", StringComparison.Ordinal)) tensors.Add((name, t));   // embedding, final norm, lm_head
        for (int l = 0; l < layout.UnrolledDepth; l++)
        {
            string from = $"model.layers.{layout.UniqueIndexOf[l]}.";
            foreach (var (name, t) in state)
                if (name.StartsWith(from, StringComparison.Ordinal)) tensors.Add(($"model.layers.{l}.{name[from.Length..]}", t));
        }
        return (config, tensors);
    }

    /// <summary>Writes <see cref="Unroll"/>'s result as a Hugging Face Llama folder.</summary>
    public static void WriteUnrolled(string dir, MoRForCausalLM model, ScalarType dtype = ScalarType.Float32,
        long maxShardBytes = SafeTensorsCheckpoint.DefaultMaxShardBytes)
    {
        CheckDType(dtype);
        var (config, tensors) = Unroll(model);
        Directory.CreateDirectory(dir);
        SafeTensorsCheckpoint.Write(dir, tensors, dtype == ScalarType.Float32 ? null : dtype, maxShardBytes);
        WriteConfig(Path.Combine(dir, ConfigFile), config, dtype);
    }

    private static void CheckDType(ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16))
            throw new ArgumentException($"weights can be written as float32, float16 or bfloat16, not {dtype}");
    }

    /// <summary>"float32" / "bfloat16" / "float16" ↔ the tensor type (the names of config.json's <c>torch_dtype</c>).</summary>
    public static string TorchDTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32", ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16",
        _ => throw new ArgumentException($"no torch_dtype name for {t}"),
    };

    public static ScalarType ParseDType(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "f32" or "fp32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "f16" or "fp16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"dtype '{name}' is not one of float32|bfloat16|float16"),
    };

    /// <summary>The config.json text of <paramref name="config"/> in Hugging Face's Llama form (plus "mor" when present).</summary>
    public static string ConfigText(ModelConfig config, ScalarType dtype = ScalarType.Float32)
    {
        bool recursive = config.MoR is { } m && m.SharingKind != SharingStrategy.None;
        JsonNode? eos = config.EosTokenIds is { Length: > 1 } ids ? new JsonArray(ids.Select(i => (JsonNode?)i).ToArray())
            : config.EosTokenId is int e ? JsonValue.Create(e) : null;
        var node = new JsonObject
        {
            ["architectures"] = new JsonArray(recursive ? "MoRForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumHiddenLayers,
            ["num_attention_heads"] = config.NumAttentionHeads,
            ["num_key_value_heads"] = config.NumKeyValueHeads,
            ["vocab_size"] = config.VocabSize,
            ["rms_norm_eps"] = PyFloat(config.RmsNormEps),
            ["rope_theta"] = PyFloat(config.RopeTheta),
            ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = config.TieWordEmbeddings,
            ["hidden_act"] = config.HiddenAct,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["rope_scaling"] = null,
            ["initializer_range"] = PyFloat(config.InitializerRange),
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = eos,
            ["torch_dtype"] = TorchDTypeName(dtype),
        };
        if (config.MoR is not null) node["mor"] = JsonSerializer.SerializeToNode(config.MoR, ConfigJson.Options);
        return node.ToJsonString(ConfigJson.Options) + "\n";
    }

    /// <summary>A float written as Python's json writes it (1e-05, 10000.0), so exported configs read like Hugging Face's.</summary>
    private static JsonNode PyFloat(double d)
    {
        string r = d.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (r.Contains('E'))
        {
            var (mant, exp) = (r[..r.IndexOf('E')], int.Parse(r[(r.IndexOf('E') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
            r = $"{mant}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):D2}";
        }
        else if (!r.Contains('.')) r += ".0";
        return JsonNode.Parse(r)!;
    }

    /// <summary>Writes <see cref="ConfigText"/> atomically.</summary>
    public static void WriteConfig(string path, ModelConfig config, ScalarType dtype = ScalarType.Float32) =>
        SafeTensorsCheckpoint.AtomicText(path, ConfigText(config, dtype));

    /// <summary>Copies the tokenizer and generation files of a model folder (whatever of them exists) into another.</summary>
    public static IReadOnlyList<string> CopySideFiles(string fromDir, string toDir)
    {
        var copied = new List<string>();
        foreach (var name in SideFiles)
        {
            string src = Path.Combine(fromDir, name);
            if (!File.Exists(src)) continue;
            string dst = Path.Combine(toDir, name);
            if (Path.GetFullPath(src) == Path.GetFullPath(dst)) continue;
            File.Copy(src, dst, overwrite: true);
            copied.Add(name);
        }
        return copied;
    }

    /// <summary>Files beside the weights that describe text handling and generation (tokenizers, chat template, generation defaults).</summary>
    public static readonly IReadOnlyList<string> SideFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer_info.json", "vocab.json", "merges.txt",
        "added_tokens.json", "chat_template.jinja", "chat_template.json", GenerationConfigFile,
    ];
}
