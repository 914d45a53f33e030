using System.Text.Json.Nodes;
using MoRSharp.Data;

namespace MoRSharp.Modalities;

/// <summary>
/// Training order for a labelled set: each epoch is a fresh permutation (Fisher–Yates with <see cref="SplitMix64"/> seeded by
/// (seed, epoch)), read in batches that run on into the next epoch. The whole state is (epoch, position), so a checkpoint
/// restores the order exactly.
/// </summary>
public sealed class ExampleSampler
{
    private readonly int count;
    private readonly long seed;
    private int[] order;

    public int Batch { get; }
    public long Epoch { get; private set; }
    public int Position { get; private set; }

    public ExampleSampler(int count, int batch, long seed)
    {
        if (count < 1) throw new ArgumentException("no training examples");
        if (batch < 1) throw new ArgumentException("--batch must be at least 1");
        this.count = count;
        this.seed = seed;
        Batch = batch;
        order = Permutation(0);
    }

    /// <summary>The next <see cref="Batch"/> example indices.</summary>
    public int[] Next()
    {
        var batch = new int[Batch];
        for (int i = 0; i < Batch; i++)
        {
            if (Position == count)
            {
                Epoch++;
                Position = 0;
                order = Permutation(Epoch);
            }
            batch[i] = order[Position++];
        }
        return batch;
    }

    private int[] Permutation(long epoch)
    {
        var p = Enumerable.Range(0, count).ToArray();
        var rng = new SplitMix64(SplitMix64.Mix(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)epoch)));
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)rng.NextLong(i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    public JsonNode SaveState() => new JsonObject { ["epoch"] = Epoch, ["position"] = Position, ["count"] = count };

    public void RestoreState(JsonNode state)
    {
        long epoch = state["epoch"]?.GetValue<long>() ?? throw new InvalidDataException("sampler state lacks 'epoch'");
        int position = state["position"]?.GetValue<int>() ?? throw new InvalidDataException("sampler state lacks 'position'");
        int n = state["count"]?.GetValue<int>() ?? count;
        if (n != count) throw new InvalidDataException($"the checkpoint was trained on {n} examples, the data now has {count}");
        Epoch = epoch;
        Position = position;
        order = Permutation(epoch);
    }
}
