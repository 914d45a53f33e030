using MoRSharp.Config;
using MoRSharp.Kernels;
using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Caching;

/// <summary>How a model's unrolled layers map onto KV-cache slots (spec §3).</summary>
public enum KvCacheStrategy
{
    /// <summary>Every unrolled layer has its own slot holding every token (a vanilla model, or a recursive one cached naively).</summary>
    Full,
    /// <summary>One slot per (recursion, block layer) holding only the tokens that reached that recursion (spec §3.1).</summary>
    RecursionWise,
    /// <summary>Recursion 1 writes one slot per block layer; later recursions read it and write nothing (spec §3.2).</summary>
    Shared,
}

/// <summary>
/// The slots of a model: unique prelude layers, then the recursion slots, then unique coda layers. Unique layers always cache
/// every token. <see cref="RecursionSlot"/> answers which slot recursion r / block layer j reads, and whether it writes.
/// </summary>
public sealed class KvCacheLayout
{
    public KvCacheStrategy Strategy { get; }
    public RecursionLayout Layout { get; }
    public int NumSlots { get; }
    /// <summary>Per slot: a label ("U0", "r2.L1", …) and the fraction of tokens it is expected to hold (sizes the first allocation).</summary>
    public string[] Labels { get; }
    public double[] ExpectedFraction { get; }
    private readonly int[] preludeSlot, codaSlot;
    private readonly int[,] recursionSlot;   // [N_r, B]

    public KvCacheLayout(ModelConfig config)
    {
        Layout = RecursionLayout.From(config);
        var mor = config.Recursion;
        Strategy = !Layout.IsLooped ? KvCacheStrategy.Full
            : mor.KvCacheKind == KvCacheKind.Shared ? KvCacheStrategy.Shared
            : KvCacheStrategy.RecursionWise;
        var labels = new List<string>();
        var fraction = new List<double>();
        preludeSlot = Layout.Prelude.Select(u => { labels.Add($"U{u}"); fraction.Add(1.0); return labels.Count - 1; }).ToArray();
        int nr = Layout.Recursions.Length, b = Layout.BlockSize;
        recursionSlot = new int[nr, b];
        double[] expected = ExpectedRecursionFractions(config, nr);
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < b; j++)
            {
                if (Strategy == KvCacheStrategy.Shared && r > 0) { recursionSlot[r, j] = recursionSlot[0, j]; continue; }
                labels.Add($"r{r + 1}.L{Layout.Recursions[r][j]}");
                fraction.Add(expected[r]);
                recursionSlot[r, j] = labels.Count - 1;
            }
        codaSlot = Layout.Coda.Select(u => { labels.Add($"U{u}"); fraction.Add(1.0); return labels.Count - 1; }).ToArray();
        NumSlots = labels.Count;
        Labels = labels.ToArray();
        ExpectedFraction = fraction.ToArray();
    }

    /// <summary>
    /// The fraction of tokens expected to reach recursion r: the capacities for expert-choice (the causal rule was trained to
    /// follow them), 1 for plain recursion, and an even split over depths for token-choice — a sizing hint only: slots grow on demand.
    /// </summary>
    private static double[] ExpectedRecursionFractions(ModelConfig config, int nr)
    {
        var mor = config.Recursion;
        return mor.RoutingKind switch
        {
            RoutingKind.Expert => mor.EffectiveCapacity.Take(nr).ToArray(),
            RoutingKind.Token => Enumerable.Range(0, nr).Select(r => (double)(nr - r) / nr).ToArray(),
            _ => Enumerable.Repeat(1.0, nr).ToArray(),
        };
    }

    public int PreludeSlot(int i) => preludeSlot[i];
    public int CodaSlot(int i) => codaSlot[i];
    /// <summary>The slot recursion r (0-based), block layer j uses, and whether that call writes its keys/values there.</summary>
    public (int slot, bool writes) RecursionSlot(int r, int j) =>
        (recursionSlot[r, j], Strategy != KvCacheStrategy.Shared || r == 0);
}

/// <summary>One token of a decode call (<see cref="KvCache.AttendDecode"/>): its cache row, the slot it reads (and writes, when
/// <paramref name="Write"/>), and its absolute position (what a read-only slot's query may see up to).</summary>
public readonly record struct DecodeToken(int Slot, int Row, bool Write, long QueryPosition);

/// <summary>
/// Keys and values for <see cref="Rows"/> independent sequences, one pair of tensors per slot, stored [rows, n_kv, capacity, hd]
/// (post-RoPE keys; attention reads a prefix of the capacity axis as a view, without copying). Allocated up front at the layout's expected fraction of <see cref="MaxLength"/> and written in place;
/// a slot that fills up (the causal rule may route more tokens than the capacity) grows by doubling, up to MaxLength.
/// Lengths are kept per (row, slot) on the host: slot s of row i holds the first <c>Length(i, s)</c> entries, in position order.
/// The cache owns its tensors (outside any dispose scope) and frees them on <see cref="Dispose"/>.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys, values;
    private readonly long[,] lengths;   // [rows, slots]
    private readonly long[] positions;  // [rows] tokens consumed so far = the next absolute position
    private readonly long[] capacity;   // [slots] entries each slot's tensors hold per row (read per token: Tensor.shape costs a native call)
    private readonly int kvHeads, headDim;

    public KvCacheLayout Layout { get; }
    public int Rows { get; }
    public int MaxLength { get; }
    public ScalarType DType { get; }

    public KvCache(ModelConfig config, int rows, int maxLength, ScalarType dtype = ScalarType.Float32, KvCacheLayout? layout = null)
    {
        if (rows < 1) throw new ArgumentOutOfRangeException(nameof(rows), $"rows must be at least 1, got {rows}");
        if (maxLength < 1 || maxLength > config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength must be in 1..{config.MaxPositionEmbeddings} (max_position_embeddings), got {maxLength}");
        Layout = layout ?? new KvCacheLayout(config);
        Rows = rows;
        MaxLength = maxLength;
        DType = dtype;
        kvHeads = config.NumKeyValueHeads;
        headDim = config.HeadDim;
        keys = new Tensor[Layout.NumSlots];
        values = new Tensor[Layout.NumSlots];
        capacity = new long[Layout.NumSlots];
        for (int s = 0; s < Layout.NumSlots; s++)
        {
            long cap = capacity[s] = Math.Clamp((long)Math.Ceiling(Layout.ExpectedFraction[s] * maxLength), 1, maxLength);
            keys[s] = torch.zeros(rows, kvHeads, cap, headDim, dtype: dtype).DetachFromDisposeScope();
            values[s] = torch.zeros(rows, kvHeads, cap, headDim, dtype: dtype).DetachFromDisposeScope();
        }
        lengths = new long[rows, Layout.NumSlots];
        positions = new long[rows];
    }

    /// <summary>Tokens row i has consumed: the absolute position of its next token.</summary>
    public long Position(int row) => positions[row];
    public long Length(int row, int slot) => lengths[row, slot];
    public long Capacity(int slot) => capacity[slot];

    /// <summary>Empties a row for a new sequence (the tensors stay allocated).</summary>
    public void Reset(int row)
    {
        positions[row] = 0;
        for (int s = 0; s < Layout.NumSlots; s++) lengths[row, s] = 0;
    }

    /// <summary>Makes row <paramref name="dst"/> a copy of row <paramref name="src"/> (every slot's entries, lengths and position):
    /// a shared prefix computed once continues independently in several rows.</summary>
    public void CopyRow(int src, int dst)
    {
        if (src == dst) return;
        for (int s = 0; s < Layout.NumSlots; s++)
        {
            long n = lengths[src, s];
            if (n > 0)
            {
                keys[s][dst].narrow(1, 0, n).copy_(keys[s][src].narrow(1, 0, n));
                values[s][dst].narrow(1, 0, n).copy_(values[s][src].narrow(1, 0, n));
            }
            lengths[dst, s] = n;
        }
        positions[dst] = positions[src];
    }

    /// <summary>Marks <paramref name="count"/> more tokens consumed by each row (after a forward call over them).</summary>
    public void Advance(IReadOnlyList<long> rows, long count)
    {
        foreach (long r in rows)
        {
            if (positions[r] + count > MaxLength)
                throw new InvalidOperationException($"KV cache row {r}: {positions[r] + count} tokens exceed the cache length {MaxLength}");
            positions[r] += count;
        }
    }

    /// <summary>
    /// Writes new keys/values for a batch of rows into <paramref name="slot"/> and returns what attention reads.
    /// <paramref name="newKeys"/>/<paramref name="newValues"/> [b, n_kv, k, hd] (post-RoPE) for b = rows.Count rows of k tokens
    /// each, the first <paramref name="counts"/>[i] of row i real and the rest padding (written past the row's length, never
    /// visible to real queries, overwritten later). Returns keys/values [b, n_kv, S, hd] and a boolean mask [b, 1, k, S]
    /// (null when plain causal attention over the k new tokens is exact): query q of row i sees entries ≤ Length + q.
    /// With <paramref name="write"/> false (shared-KV recursions ≥ 2) nothing is written and query q sees the entries at
    /// positions ≤ <paramref name="queryPositions"/>[i, q] (the shared slot holds one entry per position from 0).
    /// </summary>
    public (Tensor keys, Tensor values, Tensor? mask) Update(int slot, IReadOnlyList<long> rows, Tensor newKeys, Tensor newValues,
        long[] counts, bool write, Tensor? queryPositions = null)
    {
        int b = rows.Count;
        long k = newKeys.shape[2];
        var old = new long[b];
        for (int i = 0; i < b; i++) old[i] = lengths[rows[i], slot];
        bool sameStart = true;                                    // every row holds as many entries as the first
        for (int i = 1; i < b && sameStart; i++) sameStart = old[i] == old[0];
        bool allRows = b == Rows;
        for (int i = 0; i < b && allRows; i++) allRows = rows[i] == i;
        using var rowsT = allRows || b == 1 ? null : torch.tensor(rows.ToArray());

        long span;
        if (write)
        {
            span = 0;
            for (int i = 0; i < b; i++) span = Math.Max(span, old[i] + k);
            EnsureCapacity(slot, span);
            var kIn = newKeys.dtype == DType ? newKeys : newKeys.to_type(DType);       // [b, n_kv, k, hd]
            var vIn = newValues.dtype == DType ? newValues : newValues.to_type(DType);
            if (allRows && sameStart)
            {
                // every row, all at the same length (a batch decoding in lockstep): one strided copy, no index tensors
                keys[slot].narrow(2, old[0], k).copy_(kIn);
                values[slot].narrow(2, old[0], k).copy_(vIn);
            }
            else if (b == 1)
            {
                long row = rows[0];
                (Rows == 1 ? keys[slot] : keys[slot].narrow(0, row, 1)).narrow(2, old[0], k).copy_(kIn);
                (Rows == 1 ? values[slot] : values[slot].narrow(0, row, 1)).narrow(2, old[0], k).copy_(vIn);
            }
            else
            {
                using var rowIdx = torch.tensor(rows.ToArray()).unsqueeze(1).expand(b, k);                       // [b, k]
                using var posIdx = torch.tensor(old).unsqueeze(1) + torch.arange(k, dtype: ScalarType.Int64);      // [b, k]
                // cache[row, :, pos, :] for each (row, pos) pair: the indexed shape is [b, k, n_kv, hd]
                var at = new[] { TensorIndex.Tensor(rowIdx), TensorIndex.Colon, TensorIndex.Tensor(posIdx) };
                keys[slot].index_put_(kIn.transpose(1, 2), at);
                values[slot].index_put_(vIn.transpose(1, 2), at);
            }
            for (int i = 0; i < b; i++) lengths[rows[i], slot] += counts[i];
        }
        else
        {
            if (queryPositions is null) throw new ArgumentNullException(nameof(queryPositions), "a read-only slot needs the queries' positions");
            // Recursion 1 wrote every token of these rows before this call, so each query's own position is in the slot.
            span = queryPositions.max().item<long>() + 1;
            if (span > Capacity(slot))
                throw new InvalidOperationException($"shared KV slot {Layout.Labels[slot]} holds {Capacity(slot)} entries; a query at position {span - 1} needs more");
        }

        Tensor kAll = keys[slot], vAll = values[slot];
        if (b == 1 && !allRows)
        {
            kAll = kAll.narrow(0, rows[0], 1);
            vAll = vAll.narrow(0, rows[0], 1);
        }
        else if (!allRows)
        {
            kAll = kAll.index_select(0, rowsT!);
            vAll = vAll.index_select(0, rowsT!);
        }
        var kOut = kAll.narrow(2, 0, span);                     // [b, n_kv, S, hd], a view for one row or all rows
        var vOut = vAll.narrow(2, 0, span);

        Tensor? mask;
        if (write)
        {
            // One query per row with every row at the same length, or a fresh causal prefill: no mask needed.
            if (sameStart && (k == 1 || old[0] == 0) && (k == 1 ? span == old[0] + 1 : span == k)) mask = null;
            else
            {
                using var limit = torch.tensor(old).unsqueeze(1) + torch.arange(k, dtype: ScalarType.Int64);       // [b, k]
                mask = torch.arange(span, dtype: ScalarType.Int64).view(1, 1, 1, span).le(limit.view(b, 1, k, 1)); // [b, 1, k, S]
            }
        }
        else
        {
            mask = torch.arange(span, dtype: ScalarType.Int64).view(1, 1, 1, span).le(queryPositions!.view(b, 1, k, 1));
        }
        return (kOut, vOut, mask);
    }

    /// <summary>
    /// Decoding through the <see cref="DecodeAttention"/> kernel: token i of the call (one new token per cache row) writes its
    /// post-RoPE key/value into its row of slot <c>tokens[i].Slot</c> when that slot writes, and attends over the row's entries
    /// up to its own. q [n, H, 1, hd], newKeys/newValues [n, n_kv, 1, hd], all float32 → [n, H, 1, hd]. The same bookkeeping
    /// as <see cref="Update"/> with one count per written row, without building full-batch tensors or masks.
    /// </summary>
    public unsafe Tensor AttendDecode(IReadOnlyList<DecodeToken> tokens, Tensor q, Tensor newKeys, Tensor newValues)
    {
        int n = tokens.Count;
        long heads = q.size(1);
        if (DType != ScalarType.Float32 || q.dtype != ScalarType.Float32 || newKeys.dtype != ScalarType.Float32 || newValues.dtype != ScalarType.Float32)
            throw new ArgumentException("the decode attention kernel needs a float32 cache and float32 q/k/v");
        if (q.size(0) != n || q.size(2) != 1 || q.size(3) != headDim || newKeys.size(0) != n || newKeys.size(1) != kvHeads || newKeys.size(2) != 1
            || !newKeys.shape.SequenceEqual(newValues.shape) || heads % kvHeads != 0)
            throw new ArgumentException($"decode attention: q [{n}, H, 1, {headDim}] and keys/values [{n}, {kvHeads}, 1, {headDim}] expected, " +
                                        $"got [{string.Join(", ", q.shape)}] and [{string.Join(", ", newKeys.shape)}]");
        // Bookkeeping first: growing a slot replaces its storage, so pointers are taken afterwards.
        var seen = new bool[Rows];
        var slotsOf = new DecodeSlot[n];
        for (int i = 0; i < n; i++)
        {
            var t = tokens[i];
            if (t.Row < 0 || t.Row >= Rows || t.Slot < 0 || t.Slot >= Layout.NumSlots)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {i}: row {t.Row} / slot {t.Slot} outside the cache ({Rows} rows, {Layout.NumSlots} slots)");
            if (seen[t.Row]) throw new ArgumentException($"row {t.Row} has two tokens in one decode call", nameof(tokens));
            seen[t.Row] = true;
            long old = lengths[t.Row, t.Slot];
            if (t.Write)
            {
                EnsureCapacity(t.Slot, old + 1);
                slotsOf[i].WriteAt = (int)old;
                slotsOf[i].Length = (int)old + 1;
            }
            else
            {
                // read-only (shared KV): recursion 1 wrote every earlier token and this one, one entry per position
                if (t.QueryPosition + 1 > old)
                    throw new InvalidOperationException($"shared KV slot {Layout.Labels[t.Slot]}, row {t.Row}: holds {old} entries; a query at position {t.QueryPosition} needs {t.QueryPosition + 1}");
                slotsOf[i].WriteAt = -1;
                slotsOf[i].Length = (int)t.QueryPosition + 1;
            }
        }
        var output = torch.empty(n, heads, 1, headDim, dtype: ScalarType.Float32);
        using var qc = q.contiguous();
        using var kc = newKeys.contiguous();
        using var vc = newValues.contiguous();
        for (int i = 0; i < n; i++)
        {
            var t = tokens[i];
            long cap = capacity[t.Slot], rowOffset = (long)t.Row * kvHeads * cap * headDim;
            slotsOf[i].Keys = SmallGemm.Floats(keys[t.Slot]) + rowOffset;
            slotsOf[i].Values = SmallGemm.Floats(values[t.Slot]) + rowOffset;
            slotsOf[i].Capacity = (int)cap;
        }
        fixed (DecodeSlot* sp = slotsOf)
            DecodeAttention.Run(SmallGemm.Floats(qc), SmallGemm.Floats(kc), SmallGemm.Floats(vc), SmallGemm.Floats(output), sp, n, (int)heads, kvHeads, headDim);
        for (int i = 0; i < n; i++)
            if (tokens[i].Write) lengths[tokens[i].Row, tokens[i].Slot]++;
        return output;
    }

    private void EnsureCapacity(int slot, long needed)
    {
        long cap = capacity[slot];
        if (needed <= cap) return;
        if (needed > MaxLength)
            throw new InvalidOperationException($"KV cache slot {Layout.Labels[slot]}: {needed} entries exceed the cache length {MaxLength}");
        long grown = Math.Min(MaxLength, Math.Max(needed, 2 * cap));
        foreach (var store in new[] { keys, values })
        {
            var bigger = torch.zeros(Rows, kvHeads, grown, headDim, dtype: DType).DetachFromDisposeScope();
            bigger.narrow(2, 0, cap).copy_(store[slot]);
            store[slot].Dispose();
            store[slot] = bigger;
        }
        capacity[slot] = grown;
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
