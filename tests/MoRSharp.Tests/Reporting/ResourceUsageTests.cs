using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

public class ResourceUsageTests
{
    [Fact]
    public void PeakAndCurrentRssArePositiveAndPeakIsAtLeastCurrent()
    {
        long current = ResourceUsage.CurrentRssBytes();
        long peak = ResourceUsage.PeakRssBytes();
        Assert.True(current > 1 << 20, $"current RSS {current}");
        Assert.True(peak >= current, $"peak {peak} < current {current}");
        if (OperatingSystem.IsLinux()) Assert.NotNull(ResourceUsage.ReadStatusKb("VmHWM:"));
        Assert.Matches(@"^rss \d.* (B|KiB|MiB|GiB) \(peak .*\)$", ResourceUsage.Describe());
    }

    [Fact]
    public void TouchedMemoryShowsInCurrentAndPeak()
    {
        long before = ResourceUsage.PeakRssBytes();
        var block = GC.AllocateUninitializedArray<byte>(64 << 20);
        for (int i = 0; i < block.Length; i += 4096) block[i] = 1;      // touch every page
        long current = ResourceUsage.CurrentRssBytes();
        long after = ResourceUsage.PeakRssBytes();
        GC.KeepAlive(block);
        Assert.True(current >= 64L << 20, $"current RSS {current} with 64 MiB touched");
        Assert.True(after >= Math.Max(before, current), $"peak {before} -> {after}, current {current}");
    }

    [Theory]
    [InlineData("   123456 kB", 123456L)]
    [InlineData("\t42 kB", 42L)]
    [InlineData(" 12 MB", null)]
    [InlineData(" x kB", null)]
    public void ParsesStatusFields(string rest, long? expected) => Assert.Equal(expected, ResourceUsage.ParseKb(rest));
}
