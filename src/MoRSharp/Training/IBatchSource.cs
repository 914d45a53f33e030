using System.Text.Json.Nodes;

namespace MoRSharp.Training;

/// <summary>A stream of token batches [batch × seq] (row-major int64) whose position can be saved and restored exactly.</summary>
public interface IBatchSource
{
    int Batch { get; }
    int Seq { get; }
    long[] NextBatch();
    JsonNode SaveState();
    void RestoreState(JsonNode state);
}
