using System.Globalization;
using System.Text;

namespace MoRSharp.Reporting;

/// <summary>
/// Renders text token by token with each token's recursion depth (how many recursions the MoR router gave it) as a
/// background colour: depth 1 light, the maximum depth dark and intense. <see cref="Ansi"/> for terminals (256-colour
/// escapes), <see cref="Html"/> for a standalone page with a legend and a tooltip per token. Depths below 1 (a token that
/// no recursion selected, or padding) are drawn without colour; depths above <c>maxDepth</c> take the darkest colour.
/// Control characters in token text are shown escaped (<c>\n</c>, <c>\t</c>, <c>\x1b</c>, …), never passed through; in both
/// outputs a newline token also breaks the line after its visible <c>\n</c>.
/// </summary>
public static class DepthColoring
{
    // xterm-256 backgrounds, light → dark along a yellow → orange → red → purple ramp (sequential, like matplotlib's "magma" reversed).
    private static readonly int[] AnsiRamp = [230, 229, 222, 215, 209, 203, 167, 161, 125, 89, 53];
    // The same ramp for HTML.
    private static readonly (byte r, byte g, byte b)[] HtmlRamp =
    [
        (0xFF, 0xF5, 0xD6), (0xFE, 0xE0, 0x8B), (0xFD, 0xAE, 0x61), (0xF4, 0x6D, 0x43),
        (0xD7, 0x30, 0x27), (0xA5, 0x00, 0x26), (0x67, 0x00, 0x1F), (0x3B, 0x00, 0x1A),
    ];

    private const string Reset = "\u001b[0m";

    /// <summary>The xterm-256 background colour index for <paramref name="depth"/> of <paramref name="maxDepth"/>, or −1 for no colour.</summary>
    public static int AnsiColor(int depth, int maxDepth)
    {
        if (depth < 1 || maxDepth < 1) return -1;
        return AnsiRamp[RampIndex(depth, maxDepth, AnsiRamp.Length)];
    }

    private static int RampIndex(int depth, int maxDepth, int rampLength)
    {
        depth = Math.Min(depth, maxDepth);
        if (maxDepth == 1) return rampLength / 2;
        // Spread depths over the ramp but keep depth 1 at the lightest and maxDepth at the darkest end.
        double t = (depth - 1) / (double)(maxDepth - 1);
        return (int)Math.Round(t * (rampLength - 1));
    }

    /// <summary>Dark text on light backgrounds, white on dark ones.</summary>
    private static bool DarkBackground(int depth, int maxDepth, int rampLength) =>
        RampIndex(depth, maxDepth, rampLength) >= rampLength / 2;

    /// <summary>Text with ANSI 256-colour backgrounds per depth, then a legend line (each depth's colour and its share of tokens).</summary>
    public static string Ansi(IReadOnlyList<(string text, int depth)> tokens, int maxDepth)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        var sb = new StringBuilder();
        foreach (var (text, depth) in tokens)
        {
            int bg = AnsiColor(depth, maxDepth);
            int newlines = text.AsSpan().Count('\n');
            var shown = Escape(text);
            if (bg < 0) sb.Append(shown);
            else
            {
                int fg = DarkBackground(depth, maxDepth, AnsiRamp.Length) ? 231 : 16;
                sb.Append("\u001b[48;5;").Append(bg.ToString(CultureInfo.InvariantCulture))
                  .Append(";38;5;").Append(fg.ToString(CultureInfo.InvariantCulture)).Append('m')
                  .Append(shown).Append(Reset);
            }
            if (newlines > 0) sb.Append('\n', newlines);
        }
        sb.Append('\n');
        var counts = Counts(tokens, maxDepth);
        sb.Append("depth:");
        for (int d = 1; d <= maxDepth; d++)
        {
            int bg = AnsiColor(d, maxDepth);
            int fg = DarkBackground(d, maxDepth, AnsiRamp.Length) ? 231 : 16;
            sb.Append(' ').Append("\u001b[48;5;").Append(bg.ToString(CultureInfo.InvariantCulture))
              .Append(";38;5;").Append(fg.ToString(CultureInfo.InvariantCulture)).Append('m')
              .Append(' ').Append(d.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(Reset)
              .Append(' ').Append(Share(counts[d], tokens.Count));
        }
        if (counts[0] > 0) sb.Append("  no depth ").Append(Share(counts[0], tokens.Count));
        sb.Append('\n');
        return sb.ToString();
    }

    /// <summary>
    /// A standalone HTML page (inline CSS, no scripts): the title, a legend with each depth's colour and share of tokens,
    /// and the text with one <c>&lt;span&gt;</c> per token whose tooltip gives its index and depth. Text is HTML-escaped.
    /// </summary>
    public static string Html(IReadOnlyList<(string text, int depth)> tokens, int maxDepth, string title)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        var inv = CultureInfo.InvariantCulture;
        var counts = Counts(tokens, maxDepth);
        var sb = new StringBuilder();
        var t = HtmlEscape(title);
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>").Append(t).Append("</title>\n<style>\n");
        sb.Append("body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; background: #fff; }\n");
        sb.Append("h1 { font-size: 1.4em; }\n");
        sb.Append(".legend { display: flex; flex-wrap: wrap; gap: .4em 1em; align-items: center; margin: 1em 0; font-size: .95em; }\n");
        sb.Append(".legend .sw { display: inline-block; min-width: 2.2em; padding: .1em .4em; border-radius: 3px; text-align: center; margin-right: .3em; }\n");
        sb.Append(".text { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 1em; line-height: 1.9; white-space: pre-wrap; word-wrap: break-word; border: 1px solid #ddd; border-radius: 4px; padding: 1em; }\n");
        sb.Append(".text > span { border-radius: 2px; padding: .1em 0; box-shadow: inset -1px 0 rgba(255, 255, 255, .75); }\n");
        sb.Append(".text > span:hover { outline: 2px solid #1f77b4; }\n");
        sb.Append(".ctl { opacity: .6; }\n");
        sb.Append(".d0 { background: transparent; color: #888; }\n");
        for (int d = 1; d <= maxDepth; d++)
        {
            var (r, g, b) = HtmlRamp[RampIndex(d, maxDepth, HtmlRamp.Length)];
            var fg = DarkBackground(d, maxDepth, HtmlRamp.Length) ? "#fff" : "#222";
            sb.Append(inv, $".d{d} {{ background: #{r:x2}{g:x2}{b:x2}; color: {fg}; }}\n");
        }
        sb.Append("</style>\n</head>\n<body>\n<h1>").Append(t).Append("</h1>\n<div class=\"legend\"><span>recursion depth:</span>");
        for (int d = 1; d <= maxDepth; d++)
            sb.Append(inv, $"<span><span class=\"sw d{d}\">{d}</span>{HtmlEscape(Share(counts[d], tokens.Count))}</span>");
        if (counts[0] > 0)
            sb.Append("<span><span class=\"sw d0\">–</span>no depth ").Append(HtmlEscape(Share(counts[0], tokens.Count))).Append("</span>");
        sb.Append(inv, $"<span>{tokens.Count:N0} tokens</span></div>\n<div class=\"text\">");
        for (int i = 0; i < tokens.Count; i++)
        {
            var (text, depth) = tokens[i];
            int cls = depth < 1 ? 0 : Math.Min(depth, maxDepth);
            var tip = depth < 1 ? $"token {i}: no depth" : $"token {i}: depth {depth}/{maxDepth}";
            sb.Append("<span class=\"d").Append(cls.ToString(inv)).Append("\" title=\"").Append(HtmlEscape(tip + " · " + Escape(text))).Append("\">");
            AppendHtmlText(sb, text);
            sb.Append("</span>");
        }
        sb.Append("</div>\n</body>\n</html>\n");
        return sb.ToString();
    }

    /// <summary>HTML-escapes the text; newlines stay real (the block is pre-wrap) after a faint visible ↵, other control characters are shown escaped.</summary>
    private static void AppendHtmlText(StringBuilder sb, string text)
    {
        var plain = new StringBuilder();
        void FlushPlain()
        {
            if (plain.Length == 0) return;
            sb.Append(HtmlEscape(plain.ToString()));
            plain.Clear();
        }
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.Value == '\n')
            {
                FlushPlain();
                sb.Append("<span class=\"ctl\">↵</span>\n");
            }
            else if (rune.Value == '\t' || rune.Value == ' ') plain.Append((char)rune.Value);
            else if (IsControl(rune))
            {
                FlushPlain();
                sb.Append("<span class=\"ctl\">").Append(HtmlEscape(EscapeRune(rune))).Append("</span>");
            }
            else plain.Append(rune.ToString());
        }
        FlushPlain();
    }

    /// <summary>Escapes <c>&amp; &lt; &gt; " '</c> for HTML text and attribute values (other characters stay as they are; the page is UTF-8).</summary>
    public static string HtmlEscape(string s)
    {
        if (s.AsSpan().IndexOfAny("&<>\"'") < 0) return s;
        var sb = new StringBuilder(s.Length + 16);
        foreach (var c in s)
        {
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => null,
            } ?? c.ToString());
        }
        return sb.ToString();
    }

    private static bool IsControl(Rune r) =>
        Rune.IsControl(r) || r.Value is 0x2028 or 0x2029 || (Rune.GetUnicodeCategory(r) == UnicodeCategory.Format && r.Value is >= 0x202A and <= 0x202E or >= 0x2066 and <= 0x2069);

    private static string EscapeRune(Rune r) => r.Value switch
    {
        '\n' => "\\n",
        '\t' => "\\t",
        '\r' => "\\r",
        0x1b => "\\x1b",
        < 0x100 => "\\x" + r.Value.ToString("x2", CultureInfo.InvariantCulture),
        _ => "\\u" + r.Value.ToString("x4", CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Token text with every control character (C0, DEL, C1, line/paragraph separators, bidi overrides) replaced by a
    /// visible escape: <c>\n</c>, <c>\t</c>, <c>\r</c>, <c>\x1b</c>, <c>\x07</c>, <c>\u2028</c>. Printable text is unchanged.
    /// </summary>
    public static string Escape(string text)
    {
        bool any = false;
        foreach (var rune in text.EnumerateRunes()) if (IsControl(rune)) { any = true; break; }
        if (!any) return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (var rune in text.EnumerateRunes()) sb.Append(IsControl(rune) ? EscapeRune(rune) : rune.ToString());
        return sb.ToString();
    }

    private static int[] Counts(IReadOnlyList<(string text, int depth)> tokens, int maxDepth)
    {
        var counts = new int[maxDepth + 1];
        foreach (var (_, depth) in tokens) counts[depth < 1 ? 0 : Math.Min(depth, maxDepth)]++;
        return counts;
    }

    private static string Share(int count, int total) =>
        total == 0 ? "0%" : (100.0 * count / total).ToString("0.#", CultureInfo.InvariantCulture) + "%";

    /// <summary>
    /// Whether ANSI colours should be written to <paramref name="writer"/>: never when <c>NO_COLOR</c> is set (non-empty,
    /// no-color.org); always when <c>FORCE_COLOR</c> or <c>CLICOLOR_FORCE</c> is set (and not <c>0</c>); otherwise only for
    /// <see cref="Console.Out"/> / <see cref="Console.Error"/> when not redirected, with <c>TERM</c> set (or on Windows) and not <c>dumb</c>.
    /// </summary>
    public static bool ColorSupported(TextWriter writer)
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"))) return false;
        if (IsSetTruthy("FORCE_COLOR") || IsSetTruthy("CLICOLOR_FORCE")) return true;
        bool redirected;
        try
        {
            if (ReferenceEquals(writer, Console.Out)) redirected = Console.IsOutputRedirected;
            else if (ReferenceEquals(writer, Console.Error)) redirected = Console.IsErrorRedirected;
            else return false;
        }
        catch (Exception) { return false; }
        if (redirected) return false;
        var term = Environment.GetEnvironmentVariable("TERM");
        if (string.Equals(term, "dumb", StringComparison.OrdinalIgnoreCase)) return false;
        return !string.IsNullOrEmpty(term) || OperatingSystem.IsWindows();
    }

    private static bool IsSetTruthy(string name)
    {
        var v = Environment.GetEnvironmentVariable(name);
        return !string.IsNullOrEmpty(v) && v is not ("0" or "false");
    }
}
