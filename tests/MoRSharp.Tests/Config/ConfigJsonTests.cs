using MoRSharp.Config;
using Xunit;

namespace MoRSharp.Tests.Config;

public class ConfigJsonTests
{
    /// <summary>The SmolLM-360M config.json as published on the Hugging Face Hub (HF keys we ignore included).</summary>
    private const string SmolLM360M = """
    {
      "architectures": ["LlamaForCausalLM"],
      "attention_bias": false,
      "attention_dropout": 0.0,
      "bos_token_id": 0,
      "eos_token_id": 0,
      "hidden_act": "silu",
      "hidden_size": 960,
      "initializer_range": 0.02,
      "intermediate_size": 2560,
      "is_llama_config": true,
      "max_position_embeddings": 2048,
      "model_type": "llama",
      "num_attention_heads": 15,
      "num_hidden_layers": 32,
      "num_key_value_heads": 5,
      "pretraining_tp": 1,
      "rms_norm_eps": 1e-05,
      "rope_interleaved": false,
      "rope_scaling": null,
      "rope_theta": 10000.0,
      "tie_word_embeddings": true,
      "torch_dtype": "float32",
      "transformers_version": "4.42.3",
      "use_cache": true,
      "vocab_size": 49152
    }
    """;

    private static ConfigException ParseFails(string json) =>
        Assert.Throws<ConfigException>(() => ConfigJson.Parse(json, "config.json"));

    [Fact]
    public void HuggingFaceLlamaConfigParses()
    {
        var c = ConfigJson.Parse(SmolLM360M, "config.json");
        ConfigValidator.Validate(c);
        Assert.Equal(960, c.HiddenSize);
        Assert.Equal(2560, c.IntermediateSize);
        Assert.Equal(32, c.NumHiddenLayers);
        Assert.Equal(15, c.NumAttentionHeads);
        Assert.Equal(5, c.NumKeyValueHeads);
        Assert.Equal(49152, c.VocabSize);
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(0, c.BosTokenId);
        Assert.Null(c.MoR);
        Assert.Equal(ConfigJson.Serialize(Presets.Get("smollm-360m-vanilla")), ConfigJson.Serialize(c));
    }

    [Fact]
    public void SharedGoldenConfigLoads()
    {
        // the golden-test config written by the independent numpy reference (HF keys incl. null bos/eos)
        var c = ConfigJson.Load(SharedData.Path("golden/tiny-llama/config.json"));
        Assert.Equal((64, 160, 2, 4, 2, 512), (c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.VocabSize));
        Assert.Null(c.BosTokenId);
    }

    [Fact]
    public void MoRBlockParses()
    {
        var c = ConfigJson.Parse("""
            { "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 5,
              "mor": { "num_recursion": 3, "routing": "token", "capacity": [1, 0.5, 0.25], "alpha": null, "kv_cache": "shared" } }
            """, "x.json");
        Assert.NotNull(c.MoR);
        Assert.Equal("token", c.MoR!.Routing);
        Assert.Equal(new[] { 1, 0.5, 0.25 }, c.MoR.Capacity);
        Assert.Null(c.MoR.Alpha);
        Assert.Equal(1.0, c.MoR.EffectiveAlpha);
        Assert.Equal(KvCacheKind.Shared, c.MoR.KvCacheKind);
    }

    [Fact]
    public void UnknownNestedKeyNamesSourcePathAndSuggestion()
    {
        var e = ParseFails("""{ "mor": { "capacty": [1, 0.5] } }""");
        Assert.Equal("config.json: unknown key 'mor.capacty' (did you mean 'mor.capacity'?)", e.Message);
    }

    [Fact]
    public void UnknownTopLevelKeySuggests()
    {
        var e = ParseFails("""{ "hiden_size": 64 }""");
        Assert.Contains("config.json", e.Message);
        Assert.Contains("unknown key 'hiden_size'", e.Message);
        Assert.Contains("did you mean 'hidden_size'", e.Message);
    }

    [Fact]
    public void UnknownKeyFarFromEverythingHasNoSuggestion()
    {
        var e = ParseFails("""{ "completely_unrelated_thing": 1 }""");
        Assert.Equal("config.json: unknown key 'completely_unrelated_thing'", e.Message);
    }

    [Fact]
    public void HfIgnoredKeysAreOnlyAcceptedAtTopLevel()
    {
        var e = ParseFails("""{ "mor": { "torch_dtype": "float32" } }""");
        Assert.Contains("unknown key 'mor.torch_dtype'", e.Message);
    }

    [Theory]
    [InlineData("""{ "hidden_size": "960" }""", "hidden_size: expected an integer, got a string")]
    [InlineData("""{ "hidden_size": 960.5 }""", "hidden_size: expected an integer, got the number 960.5")]
    [InlineData("""{ "hidden_size": null }""", "hidden_size: expected an integer, got null")]
    [InlineData("""{ "rms_norm_eps": "1e-5" }""", "rms_norm_eps: expected a number, got a string")]
    [InlineData("""{ "tie_word_embeddings": 1 }""", "tie_word_embeddings: expected true or false, got the number 1")]
    [InlineData("""{ "mor": { "sharing": 3 } }""", "mor.sharing: expected a string, got the number 3")]
    [InlineData("""{ "mor": { "capacity": 0.5 } }""", "mor.capacity: expected an array of numbers, got the number 0.5")]
    [InlineData("""{ "mor": { "capacity": [1, "x"] } }""", "mor.capacity[1]: expected a number, got a string")]
    [InlineData("""{ "mor": [] }""", "mor: expected an object (or null), got an array")]
    public void WrongTypesNameKeyAndExpectedType(string json, string expected)
    {
        var e = ParseFails(json);
        Assert.Equal("config.json: " + expected, e.Message);
    }

    [Theory]
    [InlineData("""{ "rope_scaling": { "type": "linear", "factor": 2.0 } }""", "rope_scaling: must be null")]
    [InlineData("""{ "model_type": "gpt2" }""", "model_type: must be \"llama\"")]
    [InlineData("""{ "attention_bias": true }""", "attention_bias: must be false")]
    [InlineData("""{ "mlp_bias": true }""", "mlp_bias: must be false")]
    [InlineData("""{ "hidden_size": 256, "num_attention_heads": 4, "head_dim": 32 }""", "head_dim: must equal hidden_size / num_attention_heads")]
    public void HfKeysThatWouldChangeTheModelAreChecked(string json, string expected)
    {
        var e = ParseFails(json);
        Assert.StartsWith("config.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MatchingHeadDimIsAccepted()
    {
        var c = ConfigJson.Parse("""{ "hidden_size": 256, "num_attention_heads": 4, "head_dim": 64 }""", "config.json");
        Assert.Equal(64, c.HeadDim);
    }

    [Fact]
    public void DuplicateKeysAndBadJsonAreRejected()
    {
        Assert.Contains("duplicate key 'hidden_size'", ParseFails("""{ "hidden_size": 64, "hidden_size": 64 }""").Message);
        var e = ParseFails("""{ "hidden_size": 64 """);
        Assert.StartsWith("config.json: invalid JSON", e.Message);
        Assert.Contains("expected a JSON object", ParseFails("[1,2]").Message);
    }

    [Fact]
    public void CommentsAndTrailingCommasAreTolerated()
    {
        var c = ConfigJson.Parse("{ // shape\n \"hidden_size\": 128, }", "config.json");
        Assert.Equal(128, c.HiddenSize);
    }

    [Theory]
    [InlineData("smollm-360m-vanilla")]
    [InlineData("smollm-360m-mor-expert-nr3")]
    [InlineData("smollm-1.7b-mor-token-nr3")]
    [InlineData("tiny-mor-token")]
    public void SaveLoadRoundTripPreservesConfig(string preset)
    {
        var dir = Path.Combine(Path.GetTempPath(), "morsharp-cfg-" + Guid.NewGuid().ToString("N"));
        try
        {
            var c = Presets.Get(preset);
            if (c.MoR is { Routing: not "none" }) c.MoR.Capacity = c.MoR.EffectiveCapacity;   // exercise arrays too
            var path = Path.Combine(dir, "sub", "config.json");
            ConfigJson.Save(c, path);
            Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));   // no temp file left behind
            var back = ConfigJson.Load(path);
            Assert.Equal(ConfigJson.Serialize(c), ConfigJson.Serialize(back));
            Assert.Equal(c.HiddenSize, back.HiddenSize);
            Assert.Equal(c.MoR?.Routing, back.MoR?.Routing);
            Assert.Equal(c.MoR?.Capacity, back.MoR?.Capacity);

            // overwrite in place
            c.RopeTheta = 500000;
            ConfigJson.Save(c, path);
            Assert.Equal(500000, ConfigJson.Load(path).RopeTheta);
            Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void CloneIsDeep()
    {
        var c = Presets.Get("micro-mor-expert");
        c.MoR!.Capacity = [1, 0.5, 0.25];
        var d = ConfigJson.Clone(c);
        d.MoR!.Capacity![1] = 0.1;
        d.HiddenSize = 1;
        Assert.Equal(0.5, c.MoR.Capacity[1]);
        Assert.Equal(256, c.HiddenSize);
    }

    [Fact]
    public void LoadNamesMissingFileAndValidationFailures()
    {
        var missing = Path.Combine(Path.GetTempPath(), "does-not-exist-" + Guid.NewGuid().ToString("N"), "config.json");
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Load(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("not found", e.Message);

        var path = Path.Combine(Path.GetTempPath(), "morsharp-bad-" + Guid.NewGuid().ToString("N") + ".json");
        try
        {
            File.WriteAllText(path, """{ "hidden_size": 100, "num_attention_heads": 3 }""");
            var v = Assert.Throws<ConfigException>(() => ConfigJson.Load(path));
            Assert.StartsWith(path + ": num_attention_heads:", v.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
