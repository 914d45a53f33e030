using MoRSharp.Config;
using MoRSharp.Model;
using Xunit;

namespace MoRSharp.Tests.Model;

public class AccountingTests
{
    private const double Budget = 16.5e18;
    private const long TokensPerStep = 2_097_152;   // 1024 × 2048

    private static ModelAccounting Acc(string preset, int context = 2048) => ModelAccounting.Compute(Presets.Get(preset), context);

    private static long Steps(ModelAccounting a) => ModelAccounting.StepsForBudget(Budget, a.FlopsPerTokenPaper, TokensPerStep);

    // ------------------------------------------------------------ parameters ([P] Table 3 / Table 6)

    [Theory]
    [InlineData("smollm-360m-vanilla", 315e6)]
    [InlineData("smollm-360m-recursive-nr2", 167e6)]
    [InlineData("smollm-360m-recursive-nr3", 118e6)]
    [InlineData("smollm-360m-recursive-nr4", 98e6)]
    [InlineData("smollm-360m-mor-expert-nr2", 167e6)]
    [InlineData("smollm-360m-mor-expert-nr3", 118e6)]
    [InlineData("smollm-360m-mor-expert-nr4", 98e6)]
    [InlineData("smollm-360m-mor-token-nr3", 118e6)]
    public void NonEmbeddingParams360M(string preset, double expected)
    {
        var a = Acc(preset);
        Assert.InRange(a.NonEmbeddingParams, expected - 0.5e6, expected + 0.5e6);
    }

    [Theory]
    [InlineData("smollm-135m-vanilla", 106e6)]
    [InlineData("smollm-135m-recursive-nr2", 57e6)]
    [InlineData("smollm-135m-mor-expert-nr3", 42e6)]
    [InlineData("smollm-730m-vanilla", 654e6)]
    [InlineData("smollm-730m-mor-expert-nr3", 252e6)]
    [InlineData("smollm-1.7b-vanilla", 1.61e9)]
    [InlineData("smollm-1.7b-mor-expert-nr2", 0.87e9)]
    [InlineData("smollm-1.7b-mor-expert-nr3", 0.67e9)]
    public void NonEmbeddingParamsOtherBases(string preset, double expected)
    {
        // the paper rounds to the shown digits: allow max(0.5M, 1%)
        var a = Acc(preset);
        double tol = Math.Max(0.5e6, expected * 0.01);
        Assert.InRange(a.NonEmbeddingParams, expected - tol, expected + tol);
    }

    [Fact]
    public void ParameterBreakdown360M()
    {
        var v = Acc("smollm-360m-vanilla");
        Assert.Equal(9_832_320, v.ParamsPerLayer);                 // q 960² + k,v 2·960·320 + o 960² + 3·960·2560 + 2·960
        Assert.Equal(49152L * 960, v.EmbeddingParams);             // tied: once
        Assert.Equal(32L * 9_832_320 + 960, v.NonEmbeddingParams); // + final norm
        Assert.Equal(v.EmbeddingParams + v.NonEmbeddingParams, v.TotalParams);
        Assert.Equal(0, v.RouterParams);

        var e = Acc("smollm-360m-mor-expert-nr3");
        Assert.Equal(3 * 960, e.RouterParams);                     // one linear router per recursion
        Assert.Equal(12L * 9_832_320 + 960 + 3 * 960, e.NonEmbeddingParams);

        var t = Acc("smollm-360m-mor-token-nr3");
        Assert.Equal(960 * 3, t.RouterParams);                     // one router d → N_r

        var mlp = Presets.Get("smollm-360m-mor-expert-nr3");
        mlp.MoR!.RouterArch = "mlp";
        Assert.Equal(3L * (960 * 1920 + 1920), ModelAccounting.Compute(mlp, 2048).RouterParams);
        mlp.MoR.AuxLoss = "aux_router";
        Assert.Equal(6L * (960 * 1920 + 1920), ModelAccounting.Compute(mlp, 2048).RouterParams);

        var untied = Presets.Get("smollm-360m-vanilla");
        untied.TieWordEmbeddings = false;
        Assert.Equal(2L * 49152 * 960, ModelAccounting.Compute(untied, 2048).EmbeddingParams);
    }

    // ------------------------------------------------------------ paper FLOPs and step counts (spec §4.2, §4.4)

    [Fact]
    public void VanillaPaperFlopsExact()
    {
        var a = Acc("smollm-360m-vanilla");
        Assert.Equal(833_617_920d, a.FlopsPerTokenPaper);
        Assert.Equal(3 * 833_617_920d, a.TrainingFlopsPerTokenPaper);
        Assert.Equal(9_438, Steps(a));
    }

    [Theory]
    [InlineData("smollm-360m-mor-expert-nr2", 12_619)]
    [InlineData("smollm-360m-mor-expert-nr3", 14_160)]
    [InlineData("smollm-360m-mor-expert-nr4", 14_216)]
    [InlineData("smollm-360m-mor-token-nr3", 14_160)]   // token-choice assumes perfect balance
    [InlineData("smollm-360m-recursive-nr2", 9_438)]
    [InlineData("smollm-360m-recursive-nr3", 9_438)]
    [InlineData("smollm-360m-recursive-nr4", 8_883)]   // 34 layers
    public void StepCountsOfTheShippedConfigs(string preset, long steps)
    {
        Assert.InRange(Steps(Acc(preset)), steps - 1, steps + 1);
    }

    [Fact]
    public void KvSharingStepCount()
    {
        var c = Presets.Get("smollm-360m-mor-expert-nr3");
        c.MoR!.KvCache = "shared";
        var a = ModelAccounting.Compute(c, 2048);
        Assert.InRange(Steps(a), 14_671, 14_673);
        // F = 2(lin+attn) + B(lin+attn) + B·Σ_{r≥2}((lin − 4d²)c_r + attn·c_r), d = 960, B = 10
        double lin = 2.0 * (4 * 960 * 960 + 3 * 960 * 2560), attn = 2.0 * 2048 * 960;
        double expected = 12 * (lin + attn) + 10 * ((lin - 4 * 960 * 960) * (2.0 / 3 + 1.0 / 3) + attn * (2.0 / 3 + 1.0 / 3));
        Assert.Equal(expected, a.FlopsPerTokenPaper, 1e-6);
    }

    [Fact]
    public void MoRPaperFlopsFormula()
    {
        var a = Acc("smollm-360m-mor-expert-nr3");
        double lin = 22_118_400, attn = 3_932_160;
        double expected = 2 * (lin + attn) + 10 * (lin * (1 + 2.0 / 3 + 1.0 / 3) + attn * (1 + 4.0 / 9 + 1.0 / 9));
        Assert.Equal(expected, a.FlopsPerTokenPaper, 1e-6);
    }

    [Fact]
    public void CycleSharingHasNoUniqueFirstAndLast()
    {
        var c = Presets.Get("smollm-360m-mor-expert-nr3");
        c.MoR!.Sharing = "cycle";
        c.NumHiddenLayers = 30;   // 10 × 3
        var a = ModelAccounting.Compute(c, 2048);
        double lin = 22_118_400, attn = 3_932_160;
        Assert.Equal(10 * (lin * 2 + attn * (14.0 / 9)), a.FlopsPerTokenPaper, 1e-6);
        Assert.Equal(0, a.UniqueOutsideRecursions);
        Assert.Equal(10, a.NumUnique);
        Assert.Equal(10.0 * 2 / 30, a.KvCacheRatio, 12);
    }

    [Fact]
    public void RecursiveWithKvSharingSkipsKvProjectionsAfterRecursionOne()
    {
        var c = Presets.Get("smollm-360m-recursive-nr3");
        c.MoR!.KvCache = "shared";
        var a = ModelAccounting.Compute(c, 2048);
        double lin = 22_118_400, attn = 3_932_160, d2 = 960.0 * 960;
        Assert.Equal(12 * (lin + attn) + 20 * (lin - 4 * d2 + attn), a.FlopsPerTokenPaper, 1e-6);
        Assert.Equal(12.0 / 32, a.KvCacheRatio, 12);
    }

    [Theory]
    [InlineData("smollm-360m-mor-expert-nr2", 12.3)]
    [InlineData("smollm-360m-mor-expert-nr3", 11.0)]
    [InlineData("smollm-360m-mor-expert-nr4", 11.0)]
    public void FixedTokenBudgetsOfTable3(string preset, double flopsE18)
    {
        // [P] Table 3: at "20B" tokens — the vanilla run's 9,438 steps × 2,097,152 = 19.79B tokens — the MoR models
        // cost 12.3 / 11.0 / 11.0 e18 FLOPs
        Assert.Equal(flopsE18, Math.Round(Acc(preset).FlopsPerTokenPaper * 9_438 * TokensPerStep / 1e18, 1));
    }

    [Fact]
    public void Vanilla17BAt20BTokens()
    {
        Assert.Equal(68.5, Math.Round(Acc("smollm-1.7b-vanilla").FlopsPerTokenPaper * 20e9 / 1e18, 1));
    }

    [Fact]
    public void StepsForBudgetFloors()
    {
        Assert.Equal(2, ModelAccounting.StepsForBudget(100, 10, 4));   // 10 tokens / 4 → 2.5 → 2
        Assert.Equal(0, ModelAccounting.StepsForBudget(10, 10, 4));
        Assert.Equal(Accounting.StepsForBudget(Budget, 833_617_920, TokensPerStep), ModelAccounting.StepsForBudget(Budget, 833_617_920, TokensPerStep));
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelAccounting.StepsForBudget(1, 0, 1));
    }

    // ------------------------------------------------------------ exact FLOPs

    [Fact]
    public void VanillaExactFlops()
    {
        var a = Acc("smollm-360m-vanilla");
        // linear with GQA k/v: 2·(960² + 2·960·320 + 960² + 3·960·2560) = 19,660,800
        // attention over (N+1)/2 keys: 4·15·64·2049/2 = 3,934,080; LM head 2·960·49152 = 94,371,840
        Assert.Equal(32 * (19_660_800d + 3_934_080d) + 94_371_840d, a.FlopsPerTokenExact, 1e-3);
        Assert.Equal(3 * a.FlopsPerTokenExact, a.TrainingFlopsPerTokenExact, 1e-3);
    }

    [Fact]
    public void TinyMoRExactFlopsByHand()
    {
        // tiny: d 64, 2 heads (head_dim 32), 1 KV head, FFN 128, vocab 512, L = 1 + 1·3 + 1, context 128
        var a = Acc("tiny-mor-expert", context: 128);
        double lin = 2.0 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128);   // 73,728
        double pair = 4.0 * 2 * 32;
        int[] k = [128, 85, 42];                                               // max(1, ⌊c_r·128⌋), c = 1, 2/3, 1/3
        double expected = 2.0 * 64 * 512 + 2 * (lin + pair * 129 / 2);
        foreach (int kr in k) expected += lin * kr / 128 + pair * kr * (kr + 1) / 2.0 / 128;
        expected += 2.0 * 64 * (128 + 128 + 85) / 128;                          // linear routers on the candidates
        Assert.Equal(expected, a.FlopsPerTokenExact, 1e-6);

        // KV sharing: recursions 2..3 skip k/v projections and attend over the full prefix
        var c = Presets.Get("tiny-mor-expert");
        c.MoR!.KvCache = "shared";
        var s = ModelAccounting.Compute(c, 128);
        double kv = 2.0 * 2 * 64 * 32;
        double sharedExpected = 2.0 * 64 * 512 + 2 * (lin + pair * 129 / 2) + lin + pair * 129 / 2;
        foreach (int kr in k[1..]) sharedExpected += (lin - kv) * kr / 128 + pair * kr * 129 / 2.0 / 128;
        sharedExpected += 2.0 * 64 * (128 + 128 + 85) / 128;
        Assert.Equal(sharedExpected, s.FlopsPerTokenExact, 1e-6);
    }

    [Fact]
    public void ExactIsAboveVanillaForRoutersButBelowForMoR()
    {
        var v = Acc("smollm-360m-vanilla");
        var r = Acc("smollm-360m-recursive-nr3");
        var m = Acc("smollm-360m-mor-expert-nr3");
        Assert.Equal(v.FlopsPerTokenExact, r.FlopsPerTokenExact, 1e-3);   // same unrolled depth, no routers
        Assert.True(m.FlopsPerTokenExact < r.FlopsPerTokenExact);
        Assert.True(m.FlopsPerTokenPaper < m.FlopsPerTokenExact);         // exact adds the LM head
    }

    // ------------------------------------------------------------ KV cache

    [Fact]
    public void KvCacheRatio360M()
    {
        var a = Acc("smollm-360m-mor-expert-nr3");
        Assert.Equal((2 + 10 * 2.0) / 32, a.KvCacheRatio, 12);
        var c = Presets.Get("smollm-360m-mor-expert-nr3");
        c.MoR!.KvCache = "shared";
        Assert.Equal((2 + 10.0) / 32, ModelAccounting.Compute(c, 2048).KvCacheRatio, 12);
        Assert.Equal(1.0, Acc("smollm-360m-vanilla").KvCacheRatio);
        Assert.Equal(1.0, Acc("smollm-360m-recursive-nr3").KvCacheRatio);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RecursionBlocksFollowTable2(int nr)
    {
        var a = Acc($"smollm-360m-mor-expert-nr{nr}");
        Assert.Equal((nr + 1.0) / (2 * nr), a.KvCacheRatioRecursions, 12);
        var c = Presets.Get($"smollm-360m-mor-expert-nr{nr}");
        c.MoR!.KvCache = "shared";
        Assert.Equal(1.0 / nr, ModelAccounting.Compute(c, 2048).KvCacheRatioRecursions, 12);
    }

    [Fact]
    public void KvBytesPerToken()
    {
        var v = Acc("smollm-360m-vanilla");
        Assert.Equal(32 * 2 * 5 * 64 * 4d, v.KvBytesPerTokenFp32);   // 81,920
        Assert.Equal(32 * 2 * 5 * 64 * 2d, v.KvBytesPerTokenBf16);
        var m = Acc("smollm-360m-mor-expert-nr3");
        Assert.Equal(22 * 2 * 5 * 64 * 4d, m.KvBytesPerTokenFp32, 1e-6);
    }

    // ------------------------------------------------------------ layout & JSON

    [Fact]
    public void LayoutIsReported()
    {
        var a = Acc("smollm-360m-mor-expert-nr3");
        Assert.Equal("U0 | (1 2 3 4 5 6 7 8 9 10) ×3 | U11", a.LayoutDescription);
        Assert.Equal(32, a.UniqueIndexOf.Length);
        Assert.Equal(new[] { 0, 1, 2 }, a.UniqueIndexOf[..3]);
        Assert.Equal(new[] { 10, 1 }, a.UniqueIndexOf[10..12]);
        Assert.Equal(11, a.UniqueIndexOf[^1]);
        Assert.Equal((32, 12, 3, 10, 2), (a.UnrolledDepth, a.NumUnique, a.NumRecursion, a.BlockSize, a.UniqueOutsideRecursions));
    }

    [Fact]
    public void JsonFormHasSnakeCaseFields()
    {
        var j = Acc("smollm-360m-vanilla").ToJsonNode();
        Assert.Equal(314_635_200L, (long)j["parameters"]!["non_embedding"]!);
        Assert.Equal(361_821_120L, (long)j["parameters"]!["total"]!);
        Assert.Equal(833_617_920d, (double)j["flops_per_token"]!["paper"]!);
        Assert.NotNull(j["flops_per_token"]!["exact"]);
        Assert.Equal(1.0, (double)j["kv_cache_ratio"]!);
    }

    [Fact]
    public void InvalidConfigAndContextAreRejected()
    {
        var c = Presets.Get("smollm-360m-mor-expert-nr4");
        c.NumHiddenLayers = 32;
        Assert.Throws<ConfigException>(() => ModelAccounting.Compute(c, 2048));
        Assert.Throws<ConfigException>(() => ModelAccounting.Compute(Presets.Get("tiny-vanilla"), 0));
    }
}
