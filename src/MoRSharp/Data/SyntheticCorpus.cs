using System.Text;

namespace MoRSharp.Data;

/// <summary>
/// The built-in corpus of <c>mor train</c> when no data is given (paired with the byte tokenizer): short documents of
/// task lines where some next tokens are easy (the echo of a copy, the operator, filler words) and some need computation
/// (a sum, a reversal, a bracket check, a count) — the tokens on which a recursion-routing model should spend more depth.
/// </summary>
/// <remarks>
/// Line kinds (each document is 3–8 of them, joined by <c>\n</c>):
/// <code>
/// add 37+85=122          sum of two numbers (1–3 digits)
/// rev abcde>edcba        reversal of 3–8 letters
/// copy xq7w|xq7w         verbatim copy of 3–8 letters/digits
/// brk ([{}])=ok          bracket balance: ok / bad
/// cnt aaaa=4             length of a run of one letter (1–12)
/// max 3 9 4=9            maximum of 3–5 digits
/// the cat sat on a mat   filler words (easy, predictable-ish text)
/// </code>
/// Everything is ASCII and fully determined by the seed (SplitMix64, not <see cref="System.Random"/>).
/// </remarks>
public static class SyntheticCorpus
{
    private static readonly string[] Words =
    [
        "the", "a", "cat", "dog", "sat", "ran", "on", "in", "mat", "box", "red", "blue", "big", "small", "and", "then",
        "it", "was", "very", "happy", "sun", "tree", "bird", "saw", "to", "of", "with", "slow", "fast", "home",
    ];
    private const string Letters = "abcdefghijklmnopqrstuvwxyz";
    private const string Alnum = "abcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>An endless, deterministic sequence of documents for <paramref name="seed"/>.</summary>
    public static IEnumerable<string> Documents(long seed)
    {
        var rng = new SplitMix64(SplitMix64.Mix(unchecked((ulong)seed + 0x5EED5EED5EEDUL)));
        var sb = new StringBuilder(256);
        while (true)
        {
            sb.Clear();
            int lines = rng.NextInt(3, 9);
            for (int i = 0; i < lines; i++)
            {
                if (i > 0) sb.Append('\n');
                AppendLine(sb, ref rng);
            }
            yield return sb.ToString();
        }
    }

    /// <summary>
    /// Writes whole documents separated by blank lines (the <c>.txt</c> layout <c>mor data prepare</c> reads by default) until
    /// the file holds at least <paramref name="bytes"/> bytes (it ends with a newline; 0 gives an empty file). Deterministic for a seed.
    /// </summary>
    public static void WriteText(string path, long bytes, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var w = new StreamWriter(path, append: false, new UTF8Encoding(false), 1 << 16) { NewLine = "\n" };
        long written = 0;
        foreach (var doc in Documents(seed))
        {
            if (written >= bytes) break;
            if (written > 0)
            {
                w.Write('\n');
                written++;
            }
            w.Write(doc);
            w.Write('\n');
            written += doc.Length + 1;   // ASCII: chars = bytes
        }
    }

    private static void AppendLine(StringBuilder sb, ref SplitMix64 rng)
    {
        switch (rng.NextInt(0, 7))
        {
            case 0:
            {
                int a = Number(ref rng), b = Number(ref rng);
                sb.Append("add ").Append(a).Append('+').Append(b).Append('=').Append(a + b);
                break;
            }
            case 1:
            {
                string s = RandomString(ref rng, Letters, rng.NextInt(3, 9));
                var rev = s.ToCharArray();
                Array.Reverse(rev);
                sb.Append("rev ").Append(s).Append('>').Append(rev);
                break;
            }
            case 2:
            {
                string s = RandomString(ref rng, Alnum, rng.NextInt(3, 9));
                sb.Append("copy ").Append(s).Append('|').Append(s);
                break;
            }
            case 3:
            {
                string s = Brackets(ref rng);
                sb.Append("brk ").Append(s).Append('=').Append(Balanced(s) ? "ok" : "bad");
                break;
            }
            case 4:
            {
                int n = rng.NextInt(1, 13);
                char c = Letters[rng.NextInt(0, Letters.Length)];
                sb.Append("cnt ").Append(c, n).Append('=').Append(n);
                break;
            }
            case 5:
            {
                int n = rng.NextInt(3, 6), max = -1;
                sb.Append("max");
                for (int i = 0; i < n; i++)
                {
                    int d = rng.NextInt(0, 10);
                    max = Math.Max(max, d);
                    sb.Append(' ').Append(d);
                }
                sb.Append('=').Append(max);
                break;
            }
            default:
            {
                int n = rng.NextInt(4, 11);
                for (int i = 0; i < n; i++)
                {
                    if (i > 0) sb.Append(' ');
                    sb.Append(Words[rng.NextInt(0, Words.Length)]);
                }
                break;
            }
        }
    }

    private static int Number(ref SplitMix64 rng) => rng.NextInt(0, 3) switch
    {
        0 => rng.NextInt(0, 10),
        1 => rng.NextInt(10, 100),
        _ => rng.NextInt(100, 1000),
    };

    private static string RandomString(ref SplitMix64 rng, string alphabet, int length)
    {
        var chars = new char[length];
        for (int i = 0; i < length; i++) chars[i] = alphabet[rng.NextInt(0, alphabet.Length)];
        return new string(chars);
    }

    /// <summary>Half the time a balanced sequence of 1–4 nested/adjacent pairs, otherwise a random (usually unbalanced) one.</summary>
    private static string Brackets(ref SplitMix64 rng)
    {
        const string open = "([{", close = ")]}";
        var sb = new StringBuilder();
        if (rng.NextInt(0, 2) == 0)
        {
            var stack = new Stack<int>();
            int pairs = rng.NextInt(1, 5), opened = 0;
            while (opened < pairs || stack.Count > 0)
            {
                if (opened < pairs && (stack.Count == 0 || rng.NextInt(0, 2) == 0))
                {
                    int k = rng.NextInt(0, 3);
                    stack.Push(k);
                    sb.Append(open[k]);
                    opened++;
                }
                else sb.Append(close[stack.Pop()]);
            }
        }
        else
        {
            int n = rng.NextInt(2, 9);
            for (int i = 0; i < n; i++)
            {
                int k = rng.NextInt(0, 3);
                sb.Append(rng.NextInt(0, 2) == 0 ? open[k] : close[k]);
            }
        }
        return sb.ToString();
    }

    private static bool Balanced(string s)
    {
        var stack = new Stack<char>();
        foreach (char c in s)
        {
            switch (c)
            {
                case '(' or '[' or '{': stack.Push(c); break;
                case ')': if (stack.Count == 0 || stack.Pop() != '(') return false; break;
                case ']': if (stack.Count == 0 || stack.Pop() != '[') return false; break;
                case '}': if (stack.Count == 0 || stack.Pop() != '{') return false; break;
            }
        }
        return stack.Count == 0;
    }
}
