using System.Text.Json.Serialization;

namespace MoRSharp.Data;

/// <summary>How a <see cref="TokenLoader"/> picks windows.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LoaderMode>))]
public enum LoaderMode
{
    /// <summary>Every row starts at a uniformly random offset in [0, Count − seq] (with replacement; training).</summary>
    RandomWindows,
    /// <summary>Consecutive non-overlapping windows from offset 0; the tail shorter than a window is skipped and the
    /// loader wraps to offset 0 with <see cref="LoaderState.Epoch"/> + 1 (evaluation, or ordered training).</summary>
    Sequential,
}

/// <summary>
/// Everything a <see cref="TokenLoader"/> needs to continue exactly where it was: save it with a checkpoint
/// (it is a plain JSON-serialisable record) and pass it to <see cref="TokenLoader.Restore"/>.
/// </summary>
/// <param name="Mode">The loader's mode (must match on restore).</param>
/// <param name="Seq">Window length (must match on restore).</param>
/// <param name="ShardTokens">Token count of the shard (must match on restore: a different shard would give other batches).</param>
/// <param name="Position">Sequential: offset of the next window. RandomWindows: unused (0).</param>
/// <param name="Epoch">Sequential: completed passes over the shard. RandomWindows: <paramref name="Windows"/> / windows per epoch, rounded down.</param>
/// <param name="RngState">The SplitMix64 state (RandomWindows).</param>
/// <param name="Batches">Batches served so far.</param>
/// <param name="Windows">Windows (rows) served so far.</param>
public sealed record LoaderState(LoaderMode Mode, int Seq, long ShardTokens, long Position, long Epoch, ulong RngState, long Batches, long Windows);

/// <summary>
/// Batches of token windows from a <see cref="TokenShardReader"/>, as row-major <c>long[batch × seq]</c> (each row is
/// <c>seq</c> consecutive tokens; the model's next-token loss shifts inside the row). Pure C#, no tensors: wrap the array
/// with <c>torch.tensor(batch, [B, T])</c>. Deterministic for a seed, and resumable: <see cref="State"/> +
/// <see cref="Restore"/> reproduce the following batches exactly.
/// </summary>
/// <remarks>Not thread-safe (one loader per consumer); the shard reader may be shared.</remarks>
public sealed class TokenLoader
{
    private readonly TokenShardReader _shard;
    private SplitMix64 _rng;
    private long _position;
    private long _epoch;
    private long _batches;
    private long _windowsDrawn;

    public int Batch { get; }
    public int Seq { get; }
    public LoaderMode Mode { get; }
    public TokenShardReader Shard => _shard;
    /// <summary>Non-overlapping windows in one pass: ⌊Count / seq⌋.</summary>
    public long WindowsPerEpoch { get; }
    /// <summary>Sequential mode: completed passes (incremented as soon as the last window of a pass is served).
    /// RandomWindows: windows drawn / <see cref="WindowsPerEpoch"/>.</summary>
    public long Epoch => Mode == LoaderMode.Sequential ? _epoch : _windowsDrawn / WindowsPerEpoch;

    /// <param name="shard">The shard to read (not owned: dispose it yourself).</param>
    /// <param name="batch">Rows per batch (≥ 1).</param>
    /// <param name="seq">Tokens per row (≥ 1); the shard must hold at least one window.</param>
    /// <param name="mode">Random windows (training) or sequential (evaluation).</param>
    /// <param name="seed">Seed of the random windows (the RNG state starts at this value).</param>
    /// <exception cref="DataException">The shard has fewer than <paramref name="seq"/> tokens.</exception>
    public TokenLoader(TokenShardReader shard, int batch, int seq, LoaderMode mode, long seed)
    {
        ArgumentNullException.ThrowIfNull(shard);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch size must be at least 1");
        if (seq < 1) throw new ArgumentOutOfRangeException(nameof(seq), seq, "sequence length must be at least 1");
        if ((long)batch * seq > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(batch), $"batch × seq = {(long)batch * seq} is too large");
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown loader mode");
        if (shard.Count < seq)
            throw new DataException($"{shard.Path}: the shard has {shard.Count} tokens, fewer than one window of {seq} tokens; " +
                                    "use a shorter sequence length or more data");
        _shard = shard;
        Batch = batch;
        Seq = seq;
        Mode = mode;
        WindowsPerEpoch = shard.Count / seq;
        _rng = new SplitMix64(seed);
    }

    /// <summary>The state after the batches served so far.</summary>
    public LoaderState State => new(Mode, Seq, _shard.Count, _position, Epoch, _rng.State, _batches, _windowsDrawn);

    /// <summary>Continues from a saved <see cref="State"/>: the next batches equal those the saving loader would have produced
    /// (the batch size may differ; mode, sequence length and shard length must match).</summary>
    public void Restore(LoaderState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Mode != Mode) throw new ArgumentException($"loader state is for mode {state.Mode}, this loader is {Mode}", nameof(state));
        if (state.Seq != Seq) throw new ArgumentException($"loader state is for sequence length {state.Seq}, this loader uses {Seq}", nameof(state));
        if (state.ShardTokens != _shard.Count)
            throw new ArgumentException($"loader state is for a shard of {state.ShardTokens} tokens, {_shard.Path} has {_shard.Count}", nameof(state));
        if (state.Position < 0 || state.Position > _shard.Count - Seq)
            throw new ArgumentException($"loader state position {state.Position} is outside [0, {_shard.Count - Seq}]", nameof(state));
        _position = state.Position;
        _epoch = state.Epoch;
        _rng.State = state.RngState;
        _batches = state.Batches;
        _windowsDrawn = state.Windows;
    }

    /// <summary>The next batch: <c>Batch × Seq</c> int64 tokens, row-major.</summary>
    public long[] NextBatch()
    {
        var batch = new long[Batch * Seq];
        NextBatch(batch);
        return batch;
    }

    /// <summary>Fills <paramref name="destination"/> (length <c>Batch × Seq</c>) with the next batch.</summary>
    public void NextBatch(Span<long> destination)
    {
        if (destination.Length != Batch * Seq)
            throw new ArgumentException($"destination has {destination.Length} elements, expected batch × seq = {Batch * Seq}", nameof(destination));
        for (int row = 0; row < Batch; row++)
        {
            long start = NextWindowStart();
            _shard.CopyTo(start, destination.Slice(row * Seq, Seq));
        }
        _batches++;
    }

    private long NextWindowStart()
    {
        _windowsDrawn++;
        if (Mode == LoaderMode.RandomWindows) return _rng.NextLong(_shard.Count - Seq + 1);
        long start = _position;
        _position += Seq;
        if (_position > _shard.Count - Seq)
        {
            _position = 0;
            _epoch++;
        }
        return start;
    }
}
