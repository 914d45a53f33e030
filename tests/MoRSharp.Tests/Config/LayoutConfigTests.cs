using MoRSharp.Config;
using MoRSharp.Model;
using Xunit;

namespace MoRSharp.Tests.Config;

/// <summary>Sharing strategies → unrolled layout (spec §1.2) and the divisibility errors the validator reports.</summary>
public class LayoutConfigTests
{
    [Fact]
    public void MiddleCycleL11()
    {
        var l = new RecursionLayout(SharingStrategy.MiddleCycle, 11, 3);
        Assert.Equal(new[] { 0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 4 }, l.UniqueIndexOf);
        Assert.Equal(3, l.BlockSize);
        Assert.Equal(5, l.NumUnique);
        Assert.Equal(new[] { 0 }, l.Prelude);
        Assert.Equal(new[] { 4 }, l.Coda);
        Assert.Equal("U0 | (1 2 3) ×3 | U4", l.Describe());
    }

    [Fact]
    public void CycleL9()
    {
        var l = new RecursionLayout(SharingStrategy.Cycle, 9, 3);
        Assert.Equal(new[] { 0, 1, 2, 0, 1, 2, 0, 1, 2 }, l.UniqueIndexOf);
        Assert.Empty(l.Prelude);
        Assert.Empty(l.Coda);
        Assert.Equal(3, l.NumUnique);
    }

    [Fact]
    public void SequenceL9()
    {
        var l = new RecursionLayout(SharingStrategy.Sequence, 9, 3);
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 1, 2, 2, 2 }, l.UniqueIndexOf);
        Assert.False(l.IsLooped);
    }

    [Fact]
    public void MiddleSequenceL11()
    {
        var l = new RecursionLayout(SharingStrategy.MiddleSequence, 11, 3);
        Assert.Equal(new[] { 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4 }, l.UniqueIndexOf);
    }

    [Fact]
    public void Paper360MLayouts()
    {
        Assert.Equal(17, RecursionLayout.From(Presets.Get("smollm-360m-recursive-nr2")).NumUnique);
        var l3 = RecursionLayout.From(Presets.Get("smollm-360m-mor-expert-nr3"));
        Assert.Equal((32, 10, 12), (l3.UnrolledDepth, l3.BlockSize, l3.NumUnique));
        var l4 = RecursionLayout.From(Presets.Get("smollm-360m-mor-expert-nr4"));
        Assert.Equal((34, 8, 10), (l4.UnrolledDepth, l4.BlockSize, l4.NumUnique));
        // 360M Cycle N_r=2 (32 layers): (S1…S16) ×2
        var cyc = new RecursionLayout(SharingStrategy.Cycle, 32, 2);
        Assert.Equal(Enumerable.Range(0, 16).Concat(Enumerable.Range(0, 16)), cyc.UniqueIndexOf);
    }

    [Theory]
    [InlineData("middle_cycle", 32, 4, "1 + B·N_r + 1")]
    [InlineData("middle_sequence", 12, 4, "1 + B·N_r + 1")]
    [InlineData("cycle", 32, 3, "not divisible by num_recursion")]
    [InlineData("sequence", 10, 3, "not divisible by num_recursion")]
    [InlineData("middle_cycle", 4, 3, "cannot be split")]
    public void IndivisibleDepthIsAConfigError(string sharing, int layers, int nr, string expected)
    {
        var c = Presets.Get("tiny-recursive");
        c.MoR!.Sharing = sharing;
        c.MoR.NumRecursion = nr;
        c.NumHiddenLayers = layers;
        var e = Assert.Throws<ConfigException>(() => ConfigValidator.Validate(c));
        Assert.StartsWith("num_hidden_layers:", e.Message);
        Assert.Contains(layers.ToString(), e.Message);
        Assert.Contains(expected, e.Message);
    }
}
