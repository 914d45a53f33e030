using System.Text;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Inference;

/// <summary>
/// Turns generated ids into text pieces as they come: decodes the growing sequence (so multi-byte characters split over
/// tokens come out whole), holds back an incomplete character (U+FFFD at the end) and any tail that could still become a
/// stop string, and stops at the first stop string (which is not emitted).
/// </summary>
public sealed class TextStreamer(ITokenizer tokenizer, IReadOnlyList<string>? stopStrings)
{
    private readonly List<int> ids = [];
    private readonly string[] stops = (stopStrings ?? []).Where(s => s.Length > 0).ToArray();
    private int emitted;          // characters of the decoded text already handed out
    private string text = "";

    /// <summary>Everything emitted so far.</summary>
    public string Text => text[..emitted];
    public bool Stopped { get; private set; }

    /// <summary>Adds one token; returns the new text that is safe to show (may be empty).</summary>
    public string Push(int id)
    {
        if (Stopped) return "";
        ids.Add(id);
        text = tokenizer.Decode(ids.ToArray());
        int safe = text.Length;
        if (safe > 0 && text[safe - 1] == '\uFFFD') safe--;                    // wait for the rest of the character
        foreach (var s in stops)
        {
            int at = text.IndexOf(s, Math.Max(0, emitted - s.Length + 1), StringComparison.Ordinal);
            if (at >= 0 && at < safe + s.Length)
            {
                Stopped = true;
                safe = Math.Min(safe, at);
            }
        }
        if (!Stopped)
            foreach (var s in stops)
                for (int len = Math.Min(s.Length - 1, safe - emitted); len > 0; len--)
                    if (string.CompareOrdinal(text, safe - len, s, 0, len) == 0) { safe -= len; break; }
        safe = Math.Max(safe, emitted);
        var piece = text[emitted..safe];
        emitted = safe;
        return piece;
    }

    /// <summary>At the end of generation: the held-back tail (unless a stop string cut it off).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        var piece = text[emitted..];
        emitted = text.Length;
        return piece;
    }
}
