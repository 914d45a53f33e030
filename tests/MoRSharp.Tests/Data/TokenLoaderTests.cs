using System.Text.Json;
using MoRSharp.Data;

namespace MoRSharp.Tests.Data;

public class TokenLoaderTests
{
    /// <summary>A shard whose token i is i % vocab, so a window's content tells where it starts.</summary>
    private static TokenShardReader Shard(TempDir dir, int count, int vocab = 60000)
    {
        string path = dir.File($"shard-{count}.bin");
        using (var w = new TokenShardWriter(path, vocab, 0))
        {
            for (int i = 0; i < count; i++) w.Append(i % vocab);
            w.Complete();
        }
        return new TokenShardReader(path);
    }

    [Fact]
    public void SequentialCoversTheShardInOrder()
    {
        using var dir = new TempDir();
        using var shard = Shard(dir, 1003);
        var loader = new TokenLoader(shard, batch: 4, seq: 10, LoaderMode.Sequential, seed: 0);
        Assert.Equal(100, loader.WindowsPerEpoch);
        var seen = new List<long>();
        for (int b = 0; b < 25; b++)
        {
            var batch = loader.NextBatch();
            Assert.Equal(40, batch.Length);
            seen.AddRange(batch);
        }
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => (long)i), seen);   // the 3-token tail is skipped
        Assert.Equal(1, loader.Epoch);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), loader.NextBatch().Take(10));   // wraps to the start
    }

    [Fact]
    public void RandomWindowsAreDeterministicForASeedAndContiguous()
    {
        using var dir = new TempDir();
        using var shard = Shard(dir, 5000);
        var a = new TokenLoader(shard, 8, 16, LoaderMode.RandomWindows, seed: 123);
        var b = new TokenLoader(shard, 8, 16, LoaderMode.RandomWindows, seed: 123);
        var c = new TokenLoader(shard, 8, 16, LoaderMode.RandomWindows, seed: 124);
        var starts = new HashSet<long>();
        for (int i = 0; i < 20; i++)
        {
            var x = a.NextBatch();
            Assert.Equal(x, b.NextBatch());
            Assert.NotEqual(x, c.NextBatch());
            for (int row = 0; row < 8; row++)
            {
                long start = x[row * 16];
                starts.Add(start);
                Assert.InRange(start, 0, 5000 - 16);
                for (int k = 1; k < 16; k++) Assert.Equal(start + k, x[row * 16 + k]);   // a window of consecutive tokens
            }
        }
        Assert.True(starts.Count > 150);                 // 160 draws from 4985 offsets: nearly all distinct
    }

    [Theory]
    [InlineData(LoaderMode.RandomWindows)]
    [InlineData(LoaderMode.Sequential)]
    public void RestoreContinuesIdentically(LoaderMode mode)
    {
        using var dir = new TempDir();
        using var shard = Shard(dir, 777);
        var original = new TokenLoader(shard, 3, 20, mode, seed: 9);
        for (int i = 0; i < 7; i++) original.NextBatch();
        var state = original.State;
        string json = JsonSerializer.Serialize(state);
        Assert.Contains(mode.ToString(), json);          // the mode is written by name
        var expected = Enumerable.Range(0, 30).Select(_ => original.NextBatch()).ToList();

        var restored = new TokenLoader(shard, 3, 20, mode, seed: 12345);   // a different seed: the state decides
        restored.Restore(JsonSerializer.Deserialize<LoaderState>(json)!);
        Assert.Equal(state, restored.State);
        foreach (var batch in expected) Assert.Equal(batch, restored.NextBatch());
        Assert.Equal(original.State, restored.State);

        Assert.Throws<ArgumentException>(() => new TokenLoader(shard, 3, 21, mode, 0).Restore(state));
        var other = mode == LoaderMode.Sequential ? LoaderMode.RandomWindows : LoaderMode.Sequential;
        Assert.Throws<ArgumentException>(() => new TokenLoader(shard, 3, 20, other, 0).Restore(state));
    }

    [Fact]
    public void ShardShorterThanAWindowIsAClearError()
    {
        using var dir = new TempDir();
        using var shard = Shard(dir, 15);
        var e = Assert.Throws<DataException>(() => new TokenLoader(shard, 1, 16, LoaderMode.RandomWindows, 0));
        Assert.Contains(shard.Path, e.Message);
        Assert.Contains("15 tokens", e.Message);
        var ok = new TokenLoader(shard, 2, 15, LoaderMode.RandomWindows, 0);   // exactly one window
        Assert.Equal(Enumerable.Range(0, 15).Select(i => (long)i).Concat(Enumerable.Range(0, 15).Select(i => (long)i)), ok.NextBatch());
    }

    [Fact]
    public void SplitMix64IsTheReferenceSequence()
    {
        // reference values of SplitMix64 seeded with 1234567 (from the algorithm's C reference)
        var rng = new SplitMix64(1234567L);
        Assert.Equal(6457827717110365317UL, rng.Next());
        Assert.Equal(3203168211198807973UL, rng.Next());
        Assert.Equal(9817491932198370423UL, rng.Next());
    }
}
