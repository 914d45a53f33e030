namespace MoRSharp.Data;

/// <summary>
/// SplitMix64 (Steele, Lea, Flood 2014): a tiny deterministic generator whose whole state is one <see cref="ulong"/>,
/// so it can be saved and restored exactly (unlike <see cref="System.Random"/>, whose algorithm may change between .NET
/// versions). Used by the token loader, the train/validation split and the synthetic corpus.
/// </summary>
public struct SplitMix64
{
    /// <summary>The complete generator state; assigning it restores the generator.</summary>
    public ulong State;

    public SplitMix64(ulong state) => State = state;

    public SplitMix64(long seed) => State = unchecked((ulong)seed);

    /// <summary>The next 64 random bits.</summary>
    public ulong Next()
    {
        State = unchecked(State + 0x9E3779B97F4A7C15UL);
        return Mix(State);
    }

    /// <summary>The SplitMix64 output function: a bijective 64-bit mixer (also used as a stateless hash).</summary>
    public static ulong Mix(ulong z)
    {
        unchecked
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>) (Lemire's multiply-shift with rejection, unbiased).</summary>
    public long NextLong(long bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), "bound must be positive");
        ulong b = (ulong)bound;
        ulong threshold = unchecked(0UL - b) % b;
        while (true)
        {
            ulong hi = Math.BigMul(Next(), b, out ulong lo);
            if (lo >= threshold) return (long)hi;
        }
    }

    /// <summary>A uniform integer in [<paramref name="min"/>, <paramref name="maxExclusive"/>).</summary>
    public int NextInt(int min, int maxExclusive) => min + (int)NextLong((long)maxExclusive - min);

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform double in [0, 1) that depends only on (<paramref name="seed"/>, <paramref name="index"/>).</summary>
    public static double HashToUnit(long seed, long index)
    {
        ulong h = Mix(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL));
        h = Mix(unchecked(h ^ ((ulong)index + 0x9E3779B97F4A7C15UL)));
        return (h >> 11) * (1.0 / (1UL << 53));
    }
}
