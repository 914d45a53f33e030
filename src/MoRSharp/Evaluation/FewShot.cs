using System.Text;
using MoRSharp.Data;
using MoRSharp.Evaluation.Tasks;

namespace MoRSharp.Evaluation;

/// <summary>
/// Few-shot prompts as lm-evaluation-harness builds them: K examples, each rendered as its gold context + target delimiter +
/// gold continuation, joined by a blank line (<c>"\n\n"</c>), then a blank line and the item's own context.
/// <para><b>Sampling</b> is seeded and per item: the examples of item i depend only on (seed, task name, i), so
/// <c>--limit</c> does not change the prompts of the items it keeps. The harness draws from one generator seeded 1234 in
/// item order, so the examples themselves differ from the harness' even at the same seed.</para>
/// </summary>
public static class FewShot
{
    /// <summary>Refuses <paramref name="shots"/> &gt; 0 for a task whose data has no split to draw examples from.</summary>
    public static void Check(EvalTask task, int shots)
    {
        if (shots < 0) throw new ArgumentException("--shots must be ≥ 0");
        if (shots > 0 && task.Shots == ShotSource.None)
            throw new ArgumentException($"{task.Name}: --shots {shots} needs a split to draw examples from, and the data has only " +
                                        $"{task.EvalFile} ({task.EvalSplit}); run {task.Name} 0-shot");
    }

    /// <summary>Indices of <paramref name="shots"/> distinct examples in a pool of <paramref name="poolSize"/> for item
    /// <paramref name="itemIndex"/>; with <paramref name="sameSplit"/> the item itself (same index) is never chosen.</summary>
    public static int[] Sample(int poolSize, int shots, long seed, string task, int itemIndex, bool sameSplit)
    {
        int available = poolSize - (sameSplit && itemIndex < poolSize ? 1 : 0);
        if (shots > available) throw new ArgumentException($"{task}: --shots {shots} but the few-shot pool has only {available} examples");
        var rng = new SplitMix64(SplitMix64.Mix(SplitMix64.Mix(unchecked((ulong)seed ^ Fnv1a(task))) + (ulong)itemIndex));
        var chosen = new List<int>(shots);
        while (chosen.Count < shots)
        {
            int j = (int)rng.NextLong(poolSize);
            if ((sameSplit && j == itemIndex) || chosen.Contains(j)) continue;
            chosen.Add(j);
        }
        return chosen.ToArray();
    }

    /// <summary>The text before item i's own context: the rendered examples, each followed by a blank line; empty for 0 shots.</summary>
    public static string Prefix(EvalTask task, IReadOnlyList<EvalItem>? pool, int shots, long seed, int itemIndex)
    {
        if (shots == 0) return "";
        Check(task, shots);
        if (pool is null) throw new ArgumentException($"{task.Name}: no few-shot pool was loaded");
        var sb = new StringBuilder();
        foreach (int j in Sample(pool.Count, shots, seed, task.Name, itemIndex, task.Shots == ShotSource.SameSplit))
            sb.Append(Render(pool[j], task.TargetDelimiter)).Append("\n\n");
        return sb.ToString();
    }

    /// <summary>An example with its answer: gold context + delimiter + gold continuation.</summary>
    public static string Render(EvalItem example, string delimiter) =>
        example.Context(example.Gold) + delimiter + example.Continuation(example.Gold);

    /// <summary>A stable string hash (string.GetHashCode is randomised per process).</summary>
    private static ulong Fnv1a(string s)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(s)) h = unchecked((h ^ b) * 0x100000001b3UL);
        return h;
    }
}
