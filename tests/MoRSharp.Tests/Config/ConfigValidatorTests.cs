using MoRSharp.Config;
using Xunit;

namespace MoRSharp.Tests.Config;

public class ConfigValidatorTests
{
    private static ModelConfig Expert() => Presets.Get("tiny-mor-expert");

    private static string Fails(ModelConfig c) => Assert.Throws<ConfigException>(() => ConfigValidator.Validate(c)).Message;

    [Fact]
    public void AllPresetsAreValid()
    {
        foreach (var name in Presets.Names) ConfigValidator.Validate(Presets.Get(name));
    }

    [Theory]
    [InlineData(new[] { 0.5, 1.0, 0.25 }, "non-increasing")]
    [InlineData(new[] { 1.0, 1.5, 0.5 }, "(0, 1]")]
    [InlineData(new[] { 1.0, 0.5, 0.0 }, "(0, 1]")]
    [InlineData(new[] { 1.0, 0.5, -0.1 }, "(0, 1]")]
    [InlineData(new[] { 1.0, 0.5 }, "one entry per recursion")]
    [InlineData(new[] { 1.0, 0.75, 0.5, 0.25 }, "one entry per recursion")]
    public void BadCapacities(double[] capacity, string expected)
    {
        var c = Expert();
        c.MoR!.Capacity = capacity;
        var msg = Fails(c);
        Assert.StartsWith("mor.capacity:", msg);
        Assert.Contains(expected, msg);
    }

    [Fact]
    public void ValidCustomCapacitiesPass()
    {
        var c = Expert();
        c.MoR!.Capacity = [1, 1, 0.1];
        ConfigValidator.Validate(c);
    }

    [Fact]
    public void HeadsMustDivideHidden()
    {
        var c = Expert();
        c.NumAttentionHeads = 3;   // 64 % 3 != 0
        c.NumKeyValueHeads = 1;
        var msg = Fails(c);
        Assert.StartsWith("num_attention_heads:", msg);
        Assert.Contains("hidden_size", msg);
    }

    [Fact]
    public void KvHeadsMustDivideHeads()
    {
        var c = Presets.Get("micro-vanilla");
        c.NumKeyValueHeads = 3;    // 4 % 3 != 0
        Assert.StartsWith("num_key_value_heads:", Fails(c));
    }

    [Fact]
    public void HeadDimMustBeEven()
    {
        var c = Presets.Get("micro-vanilla");
        c.HiddenSize = 12; c.NumAttentionHeads = 4; c.NumKeyValueHeads = 4;   // head_dim 3
        var msg = Fails(c);
        Assert.StartsWith("hidden_size:", msg);
        Assert.Contains("even", msg);
    }

    [Fact]
    public void ExpertRoutingRequiresLoopedSharing()
    {
        var c = Expert();
        c.MoR!.Sharing = "sequence";
        c.NumHiddenLayers = 6;
        var msg = Fails(c);
        Assert.StartsWith("mor.routing:", msg);
        Assert.Contains("cycle or middle_cycle", msg);
    }

    [Fact]
    public void RoutingRequiresTwoRecursions()
    {
        var c = Expert();
        c.MoR!.NumRecursion = 1;
        c.NumHiddenLayers = 3;
        Assert.StartsWith("mor.num_recursion:", Fails(c));
    }

    [Theory]
    [InlineData("sharing", "middle_cycel", "mor.sharing")]
    [InlineData("routing", "experts", "mor.routing")]
    [InlineData("router_arch", "wide_mlp", "mor.router_arch")]
    [InlineData("router_func", "relu", "mor.router_func")]
    [InlineData("aux_loss", "mse", "mor.aux_loss")]
    [InlineData("balancing", "none", "mor.balancing")]
    [InlineData("kv_cache", "paged", "mor.kv_cache")]
    [InlineData("gating", "mul", "mor.gating")]
    public void BadEnumValuesNameTheField(string field, string value, string expectedField)
    {
        var c = Expert();
        typeof(MoRConfig).GetProperties().Single(p =>
                p.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonPropertyNameAttribute), false)
                    .Cast<System.Text.Json.Serialization.JsonPropertyNameAttribute>().Any(a => a.Name == field))
            .SetValue(c.MoR, value);
        var msg = Fails(c);
        Assert.StartsWith(expectedField + ":", msg);
        Assert.Contains(value, msg);
    }

    [Fact]
    public void RouterFunctionMustMatchRouting()
    {
        var c = Expert();
        c.MoR!.RouterFunc = "softmax";
        Assert.StartsWith("mor.router_func:", Fails(c));
        c = Presets.Get("tiny-mor-token");
        c.MoR!.RouterFunc = "tanh";
        Assert.StartsWith("mor.router_func:", Fails(c));
        c.MoR.RouterFunc = "sigmoid";
        ConfigValidator.Validate(c);
    }

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("intermediate_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    [InlineData("num_key_value_heads")]
    public void SizesMustBePositive(string field)
    {
        var c = Presets.Get("micro-vanilla");
        switch (field)
        {
            case "hidden_size": c.HiddenSize = 0; break;
            case "intermediate_size": c.IntermediateSize = -1; break;
            case "num_hidden_layers": c.NumHiddenLayers = 0; break;
            case "num_attention_heads": c.NumAttentionHeads = 0; break;
            case "num_key_value_heads": c.NumKeyValueHeads = 0; break;
        }
        Assert.StartsWith(field + ":", Fails(c));
    }

    [Fact]
    public void ScalarRanges()
    {
        void Check(Action<ModelConfig> mutate, string field)
        {
            var c = Expert();
            mutate(c);
            Assert.StartsWith(field + ":", Fails(c));
        }
        Check(c => c.VocabSize = 1, "vocab_size");
        Check(c => c.MaxPositionEmbeddings = 0, "max_position_embeddings");
        Check(c => c.RmsNormEps = 0, "rms_norm_eps");
        Check(c => c.RopeTheta = -1, "rope_theta");
        Check(c => c.MoR!.Alpha = 0, "mor.alpha");
        Check(c => c.MoR!.AuxCoeff = -0.1, "mor.aux_coeff");
        Check(c => c.MoR!.ZLossCoeff = -1e-5, "mor.z_loss_coeff");
        Check(c => c.MoR!.BalancingCoeff = double.NaN, "mor.balancing_coeff");
        Check(c => c.MoR!.BiasUpdateRate = -1, "mor.bias_update_rate");
        Check(c => c.MoR!.RouterTemperature = 0, "mor.router_temperature");
        Check(c => c.EosTokenId = 512, "eos_token_id");
        Check(c => c.HiddenAct = "gelu", "hidden_act");
    }

    [Fact]
    public void KvSharingOnlyForLoopedSharing()
    {
        // recursive (no routing) with KV sharing: fine for Middle-Cycle / Cycle
        var c = Presets.Get("tiny-recursive");
        c.MoR!.KvCache = "shared";
        ConfigValidator.Validate(c);
        c.MoR.Sharing = "cycle"; c.NumHiddenLayers = 6;
        ConfigValidator.Validate(c);
        // ... not for Sequence
        c.MoR.Sharing = "sequence";
        Assert.StartsWith("mor.kv_cache:", Fails(c));
        // MoR with sharing needs every token at recursion 1
        c = Expert();
        c.MoR!.KvCache = "shared";
        ConfigValidator.Validate(c);
        c.MoR.Capacity = [0.9, 0.5, 0.2];
        Assert.StartsWith("mor.kv_cache:", Fails(c));
    }

    [Fact]
    public void CapacityWithoutRoutingIsRejected()
    {
        var c = Presets.Get("tiny-recursive");
        c.MoR!.Capacity = [1, 1, 1];
        Assert.StartsWith("mor.capacity:", Fails(c));
    }

    [Fact]
    public void NoSharingNeedsOneRecursion()
    {
        var c = Presets.Get("tiny-vanilla");
        c.MoR = new MoRConfig { Sharing = "none", Routing = "none", NumRecursion = 3 };
        Assert.StartsWith("mor.num_recursion:", Fails(c));
        c.MoR.NumRecursion = 1;
        ConfigValidator.Validate(c);
    }

    [Fact]
    public void ParsedConfigWithTypoFailsEndToEnd()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Parse("""{ "mor": { "rooting": "expert" } }""", "config.json"));
        Assert.Contains("'mor.rooting'", e.Message);
        Assert.Contains("did you mean 'mor.routing'", e.Message);
    }
}
