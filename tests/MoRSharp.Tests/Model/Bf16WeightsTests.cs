using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Kernels;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Tests.Inference;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Model;

/// <summary>
/// Weight-only bfloat16 (<see cref="MoRForCausalLM.StoreWeightsAs"/>): the model computes what a float32 model with the
/// same weights rounded to bfloat16 computes — bitwise in the decode kernels, up to float rounding on libtorch's paths.
/// </summary>
public class Bf16WeightsTests
{
    public static TheoryData<string, string, string> Models => TestConfigs.ModelKinds;

    [Theory]
    [InlineData(1, 64, 40)]       // one row: weights widened as they are loaded
    [InlineData(3, 70, 9)]        // d not a multiple of 8: the scalar tail reads bfloat16 too
    [InlineData(6, 64, 17)]       // 5–7 rows: weight rows widened once into a buffer, then the one-weight-row kernel
    [InlineData(13, 256, 33)]     // 8+ rows: triples widened once, the three-weight-row kernel
    public void Kernel_products_with_bf16_weights_equal_those_of_their_float32_widening_bitwise(int m, int d, int n)
    {
        TorchRuntime.Initialize();
        if (!SmallGemm.IsEnabled) return;   // needs AVX2/FMA; libtorch's paths are covered by the model tests below
        using var scope = NewDisposeScope();
        using var gen = new Generator(5);
        using var _ = no_grad();
        var x = randn(m, d, generator: gen);
        var norm = rand(d, generator: gen) + 0.5f;
        var (w0, w1, w2) = (Narrow(n, d, gen), Narrow(n, d, gen), Narrow(n, d, gen));
        var (f0, f1, f2) = (w0.to_type(ScalarType.Float32), w1.to_type(ScalarType.Float32), w2.to_type(ScalarType.Float32));
        Assert.True(SmallGemm.Accepts(x, w0, w1, w2));
        Assert.False(SmallGemm.Accepts(x, w0, f1), "one call takes weights of one type");

        Same(SmallGemm.Matmul(x, f0), SmallGemm.Matmul(x, w0));
        var narrow = SmallGemm.Project(x, norm, 1e-5, w0, w1, w2);
        var wide = SmallGemm.Project(x, norm, 1e-5, f0, f1, f2);
        for (int s = 0; s < 3; s++) Same(wide[s], narrow[s]);
        Same(SmallGemm.SwiGlu(x, norm, 1e-5, f0, f1), SmallGemm.SwiGlu(x, norm, 1e-5, w0, w1));
        var down = Narrow(d, n, gen);
        var act = randn(m, n, generator: gen);
        Same(SmallGemm.ProjectAdd(act, down.to_type(ScalarType.Float32), x), SmallGemm.ProjectAdd(act, down, x));
        // and libtorch agrees with the widened product up to rounding
        double diff = (SmallGemm.Matmul(x, w0) - nn.functional.linear(x, f0)).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"max |difference| to linear {diff}");
        Assert.Throws<ArgumentException>(() => SmallGemm.Project(x, null, 0, w0, f1));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task A_bf16_weight_model_decodes_as_the_float32_model_with_rounded_weights(string routing, string sharing, string kv)
    {
        using var narrow = BatchingEngineTests.Build(routing, sharing, kv, 52);
        using var rounded = BatchingEngineTests.Build(routing, sharing, kv, 52);
        narrow.StoreWeightsAs(ScalarType.BFloat16);
        RoundInPlace(rounded);
        AssertStoredTypes(narrow);

        // full forward over 80 tokens: more rows than the kernels take, so libtorch's products run on widened weights
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var ids = tensor(Enumerable.Range(0, 80).Select(i => (long)(i * 37 % 251)).ToArray()).unsqueeze(0);
            var a = narrow.Forward(ids).Logits;
            var b = rounded.Forward(ids).Logits;
            Assert.Equal(ScalarType.Float32, a.dtype);
            double diff = (a - b).abs().max().item<float>();
            Assert.True(diff < 1e-4, $"full forward: max |difference| {diff}");
        }

        // the engine (decode kernels where the CPU has them, else libtorch's paths) gives the same tokens and depths
        var tokenizer = TokenizerFactory.Bytes();
        string[] prompts = ["The cat", "Once upon a time there", "x", "1 + 2 ="];
        var options = new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy, StopTokenIds = [] };
        async Task<(int[] ids, int[] depths)[]> Decode(MoRForCausalLM model)
        {
            using var engine = new BatchingEngine(model, tokenizer, new EngineOptions { MaxBatch = 3 });
            var results = await Task.WhenAll(prompts.Select(p => engine.CompleteAsync(tokenizer.Encode(p), options)));
            return results.Select(r => (r.tokens.Select(t => t.Id).ToArray(), r.tokens.Select(t => t.Depth).ToArray())).ToArray();
        }
        var expected = await Decode(rounded);
        var actual = await Decode(narrow);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(expected[i].ids, actual[i].ids);
            Assert.Equal(expected[i].depths, actual[i].depths);
        }
    }

    [Fact]
    public void Single_sequence_decoding_with_the_kernels_off_matches_too()
    {
        using var off = SmallGemm.Disable();
        using var narrow = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 53);
        using var rounded = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 53);
        narrow.StoreWeightsAs(ScalarType.BFloat16);
        RoundInPlace(rounded);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var cacheA = narrow.CreateCache(1, 32);
        var cacheB = rounded.CreateCache(1, 32);
        Assert.Equal(ScalarType.Float32, cacheA.DType);
        long[] ids = [3, 17, 42, 5, 99, 120];
        for (int t = 0; t < ids.Length; t++)
        {
            var id = tensor(new[] { ids[t] }).unsqueeze(0);
            var a = narrow.Forward(id, cacheA).Logits;
            var b = rounded.Forward(id, cacheB).Logits;
            double diff = (a - b).abs().max().item<float>();
            Assert.True(diff < 1e-4, $"token {t}: max |difference| {diff}");
        }
    }

    [Fact]
    public void Only_bfloat16_on_a_float32_model_is_accepted_and_float32_restores_it()
    {
        using var model = BatchingEngineTests.Build("none", "none", "recursion_wise", 54);
        using var rounded = BatchingEngineTests.Build("none", "none", "recursion_wise", 54);
        RoundInPlace(rounded);
        var e = Assert.Throws<ArgumentException>(() => model.StoreWeightsAs(ScalarType.Float16));
        Assert.Contains("bfloat16", e.Message);
        model.StoreWeightsAs(ScalarType.Float32);                     // already float32: nothing to do
        Assert.Equal(ScalarType.Float32, model.WeightType);
        model.StoreWeightsAs(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, model.WeightType);
        model.StoreWeightsAs(ScalarType.BFloat16);                    // twice is fine
        model.StoreWeightsAs(ScalarType.Float32);                     // back to float32: the rounded weights, exactly
        var restored = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in rounded.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, restored[name].dtype);
            Assert.True(p.eq(restored[name]).all().item<bool>(), name);
        }
        using var half = BatchingEngineTests.Build("none", "none", "recursion_wise", 54);
        half.to(ScalarType.BFloat16);
        Assert.Throws<InvalidOperationException>(() => half.StoreWeightsAs(ScalarType.BFloat16));
    }

    private static Tensor Narrow(int n, int d, Generator gen) => (randn(n, d, generator: gen) * 0.1f).to_type(ScalarType.BFloat16);

    private static void Same(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.eq(actual).all().item<bool>(), $"not bitwise equal: max |difference| {(expected - actual).abs().max().item<float>()}");
    }

    /// <summary>The weights StoreWeightsAs narrows, rounded to bfloat16 and kept as float32.</summary>
    internal static void RoundInPlace(MoRForCausalLM model)
    {
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (IsNarrowed(name)) p.copy_(p.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32));
    }

    private static bool IsNarrowed(string name) =>
        name is "model.embed_tokens.weight" or "lm_head.weight" || (name.StartsWith("model.layers.") && name.EndsWith("_proj.weight"));

    private static void AssertStoredTypes(MoRForCausalLM model)
    {
        int narrowed = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            var expected = IsNarrowed(name) ? ScalarType.BFloat16 : ScalarType.Float32;
            Assert.True(p.dtype == expected, $"{name}: {p.dtype}, expected {expected}");
            if (IsNarrowed(name)) narrowed++;
        }
        Assert.True(narrowed > 7, "no projection weights were narrowed");
    }
}
