using MoRSharp.Config;

namespace MoRSharp.Model;

/// <summary>
/// Which unique layer each unrolled position uses (spec §1.2), and how the unrolled stack splits into
/// a prelude (unique first layer for Middle-*), N_r recursions of the shared block, and a coda (unique last layer).
/// Unique layer u is stored under the HF key <c>model.layers.{u}</c>.
/// Middle-Cycle example, L = 1 + 3·3 + 1 = 11: unique 0 | (1,2,3) (1,2,3) (1,2,3) | 4.
/// </summary>
public sealed class RecursionLayout
{
    public SharingStrategy Sharing { get; }
    /// <summary>Unrolled depth L (config <c>num_hidden_layers</c>).</summary>
    public int UnrolledDepth { get; }
    public int NumRecursion { get; }
    /// <summary>Layers in the shared block, B.</summary>
    public int BlockSize { get; }
    /// <summary>Number of unique (parameter-owning) layers.</summary>
    public int NumUnique { get; }
    /// <summary>[L] unrolled position → unique layer index.</summary>
    public int[] UniqueIndexOf { get; }
    /// <summary>Unique layers run before the recursions (the first layer for Middle-*).</summary>
    public int[] Prelude { get; }
    /// <summary>Recursions[r] = the unique layers of recursion r in order (Cycle-type sharing only; else empty).</summary>
    public int[][] Recursions { get; }
    /// <summary>Unique layers run after the recursions (the last layer for Middle-*).</summary>
    public int[] Coda { get; }

    /// <summary>True when the recursions are loops of one block (Cycle, Middle-Cycle): routing is possible.</summary>
    public bool IsLooped => Sharing is SharingStrategy.Cycle or SharingStrategy.MiddleCycle;

    public RecursionLayout(SharingStrategy sharing, int unrolledDepth, int numRecursion)
    {
        if (unrolledDepth < 1) throw new ConfigException($"num_hidden_layers: must be at least 1, got {unrolledDepth}");
        if (numRecursion < 1) throw new ConfigException($"mor.num_recursion: must be at least 1, got {numRecursion}");
        Sharing = sharing;
        UnrolledDepth = unrolledDepth;
        NumRecursion = sharing == SharingStrategy.None ? 1 : numRecursion;
        bool middle = sharing is SharingStrategy.MiddleCycle or SharingStrategy.MiddleSequence;
        int L = unrolledDepth;
        int shared = middle ? L - 2 : L;
        if (sharing != SharingStrategy.None)
        {
            if (middle && L < 2 + numRecursion)
                throw new ConfigException($"num_hidden_layers: {L} layers cannot be split into 1 + B·{numRecursion} + 1 with B ≥ 1 ({ConfigNames.ToName(sharing)})");
            if (shared % numRecursion != 0)
                throw new ConfigException(middle
                    ? $"num_hidden_layers: {L} is not 1 + B·N_r + 1 for N_r = {numRecursion} ({L - 2} middle layers are not divisible by {numRecursion}); the paper adds layers, e.g. 1 + 8·4 + 1 = 34"
                    : $"num_hidden_layers: {L} is not divisible by num_recursion = {numRecursion} ({ConfigNames.ToName(sharing)})");
        }
        BlockSize = sharing == SharingStrategy.None ? L : shared / numRecursion;
        int B = BlockSize;
        UniqueIndexOf = new int[L];
        for (int l = 0; l < L; l++)
        {
            UniqueIndexOf[l] = sharing switch
            {
                SharingStrategy.None => l,
                SharingStrategy.Cycle => l % B,
                SharingStrategy.Sequence => l / numRecursion,
                SharingStrategy.MiddleCycle => l == 0 ? 0 : l == L - 1 ? B + 1 : ((l - 1) % B) + 1,
                SharingStrategy.MiddleSequence => l == 0 ? 0 : l == L - 1 ? B + 1 : ((l - 1) / numRecursion) + 1,
                _ => throw new ArgumentOutOfRangeException(nameof(sharing)),
            };
        }
        NumUnique = UniqueIndexOf.Max() + 1;

        if (IsLooped)
        {
            int off = middle ? 1 : 0;
            Prelude = middle ? [0] : [];
            Coda = middle ? [B + 1] : [];
            Recursions = Enumerable.Range(0, NumRecursion)
                .Select(r => Enumerable.Range(0, B).Select(i => UniqueIndexOf[off + r * B + i]).ToArray()).ToArray();
        }
        else
        {
            // Not a loop of one block: the stack is run in unrolled order; routing is not defined (the official code asserts the same).
            Prelude = UniqueIndexOf.ToArray();
            Coda = [];
            Recursions = [];
        }
    }

    public static RecursionLayout From(ModelConfig config) =>
        new(config.Recursion.SharingKind, config.NumHiddenLayers, config.Recursion.NumRecursion);

    /// <summary>Human-readable layout, e.g. "U0 | (1 2 3) ×3 | U4".</summary>
    public string Describe()
    {
        if (!IsLooped) return string.Join(" ", UniqueIndexOf);
        var parts = new List<string>();
        if (Prelude.Length > 0) parts.Add(string.Join(" ", Prelude.Select(u => $"U{u}")));
        parts.Add($"({string.Join(" ", Recursions[0])}) ×{NumRecursion}");
        if (Coda.Length > 0) parts.Add(string.Join(" ", Coda.Select(u => $"U{u}")));
        return string.Join(" | ", parts);
    }
}
