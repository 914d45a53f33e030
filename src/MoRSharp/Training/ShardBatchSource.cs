using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Data;

namespace MoRSharp.Training;

/// <summary>Batches from a memory-mapped token shard (<see cref="TokenLoader"/>), with its exact position as trainer state.</summary>
public sealed class ShardBatchSource(TokenLoader loader) : IBatchSource
{
    public int Batch => loader.Batch;
    public int Seq => loader.Seq;
    public long[] NextBatch() => loader.NextBatch();
    public JsonNode SaveState() => JsonSerializer.SerializeToNode(loader.State)!;
    public void RestoreState(JsonNode state) =>
        loader.Restore(state.Deserialize<LoaderState>() ?? throw new InvalidDataException("trainer state: empty data position"));

    /// <summary>Training batches: seeded random windows over the shard.</summary>
    public static ShardBatchSource Train(TokenShardReader shard, int batch, int seq, long seed) =>
        new(new TokenLoader(shard, batch, seq, LoaderMode.RandomWindows, seed));

    /// <summary>Validation batches: the shard from its start, the same windows every time.</summary>
    public static Func<IBatchSource> Validation(TokenShardReader shard, int batch, int seq) =>
        () => new ShardBatchSource(new TokenLoader(shard, batch, seq, LoaderMode.Sequential, 0));
}
