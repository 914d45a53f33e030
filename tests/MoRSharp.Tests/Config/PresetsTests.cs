using MoRSharp.Config;
using MoRSharp.Model;
using Xunit;

namespace MoRSharp.Tests.Config;

public class PresetsTests
{
    [Fact]
    public void NamesCoverEveryFamily()
    {
        foreach (var b in new[] { "135m", "360m", "730m", "1.7b" })
        {
            Assert.Contains($"smollm-{b}-vanilla", Presets.Names);
            foreach (var nr in new[] { 2, 3, 4 })
            {
                Assert.Contains($"smollm-{b}-recursive-nr{nr}", Presets.Names);
                Assert.Contains($"smollm-{b}-mor-expert-nr{nr}", Presets.Names);
            }
            Assert.Contains($"smollm-{b}-mor-token-nr3", Presets.Names);
        }
        foreach (var s in new[] { "micro", "tiny" })
            foreach (var v in new[] { "vanilla", "recursive", "mor-expert", "mor-token" })
                Assert.Contains($"{s}-{v}", Presets.Names);
        Assert.Equal(Presets.Names.Count, Presets.Names.Distinct().Count());
    }

    [Fact]
    public void UnknownPresetListsValidNames()
    {
        var e = Assert.Throws<ConfigException>(() => Presets.Get("smollm-360m-mor-expert-nr5"));
        Assert.Contains("smollm-360m-mor-expert-nr5", e.Message);
        Assert.Contains("did you mean", e.Message);
        Assert.Contains("smollm-360m-vanilla", e.Message);
        Assert.Contains("tiny-mor-token", e.Message);
    }

    [Fact]
    public void GetReturnsFreshCopies()
    {
        var a = Presets.Get("micro-mor-expert");
        a.MoR!.NumRecursion = 9;
        a.HiddenSize = 1;
        var b = Presets.Get("micro-mor-expert");
        Assert.Equal(3, b.MoR!.NumRecursion);
        Assert.Equal(256, b.HiddenSize);
    }

    [Theory]
    [InlineData("smollm-135m-recursive-nr2", 30)]
    [InlineData("smollm-135m-mor-expert-nr3", 32)]
    [InlineData("smollm-135m-mor-expert-nr4", 30)]
    [InlineData("smollm-360m-recursive-nr2", 32)]
    [InlineData("smollm-360m-recursive-nr3", 32)]
    [InlineData("smollm-360m-recursive-nr4", 34)]
    [InlineData("smollm-730m-mor-expert-nr3", 26)]
    [InlineData("smollm-730m-mor-expert-nr2", 26)]
    [InlineData("smollm-1.7b-mor-expert-nr2", 24)]
    [InlineData("smollm-1.7b-mor-expert-nr3", 26)]
    [InlineData("smollm-1.7b-mor-expert-nr4", 26)]
    [InlineData("micro-mor-token", 8)]
    [InlineData("tiny-mor-expert", 5)]
    public void PaperLayouts(string name, int layers)
    {
        var c = Presets.Get(name);
        Assert.Equal(layers, c.NumHiddenLayers);
        Assert.Equal(SharingStrategy.MiddleCycle, c.Recursion.SharingKind);
    }

    [Fact]
    public void PaperShapesAndDefaults()
    {
        var v = Presets.Get("smollm-360m-vanilla");
        Assert.Null(v.MoR);
        Assert.Equal((960, 15, 5, 2560, 32, 49152, 2048), (v.HiddenSize, v.NumAttentionHeads, v.NumKeyValueHeads, v.IntermediateSize, v.NumHiddenLayers, v.VocabSize, v.MaxPositionEmbeddings));
        Assert.True(v.TieWordEmbeddings);
        var r = Presets.Get("smollm-360m-recursive-nr3");
        Assert.Equal(RoutingKind.None, r.Recursion.RoutingKind);
        var e = Presets.Get("smollm-360m-mor-expert-nr3").MoR!;
        Assert.Equal((RoutingKind.Expert, RouterArch.Linear, RouterFunc.Sigmoid, 0.1, 0.001, 0.0, KvCacheKind.RecursionWise),
            (e.RoutingKind, e.RouterArchKind, e.EffectiveRouterFunc, e.EffectiveAlpha, e.AuxCoeff, e.EffectiveZLossCoeff, e.KvCacheKind));
        Assert.Equal(new[] { 1.0, 2.0 / 3, 1.0 / 3 }, e.EffectiveCapacity);
        var t = Presets.Get("smollm-360m-mor-token-nr3").MoR!;
        Assert.Equal((RoutingKind.Token, RouterFunc.Softmax, 1.0, 1e-5, BalancingKind.Loss, 0.1),
            (t.RoutingKind, t.EffectiveRouterFunc, t.EffectiveAlpha, t.EffectiveZLossCoeff, t.BalancingKind, t.BalancingCoeff));
        var m = Presets.Get("micro-vanilla");
        Assert.Equal((256, 4, 4, 768, 50257, 512, 8), (m.HiddenSize, m.NumAttentionHeads, m.NumKeyValueHeads, m.IntermediateSize, m.VocabSize, m.MaxPositionEmbeddings, m.NumHiddenLayers));
        var tiny = Presets.Get("tiny-vanilla");
        Assert.Equal((64, 2, 128, 512, 128, 5), (tiny.HiddenSize, tiny.NumAttentionHeads, tiny.IntermediateSize, tiny.VocabSize, tiny.MaxPositionEmbeddings, tiny.NumHiddenLayers));
    }
}
