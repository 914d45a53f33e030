using System.Globalization;
using System.Text;

namespace MoRSharp.Reporting;

/// <summary>Column alignment in a <see cref="ConsoleTable"/>.</summary>
public enum TextAlign
{
    /// <summary>Right-align a column whose non-empty cells all look like numbers, left-align it otherwise.</summary>
    Auto,
    Left,
    Right,
}

/// <summary>
/// A small table for reports, evaluation summaries and benchmarks: <see cref="ToText"/> for the console (box-drawing or
/// plain aligned columns) and <see cref="ToMarkdown"/> for docs. Numeric cells are formatted with the invariant culture
/// and thousands separators (<see cref="Fmt.Number"/>); a column whose cells are all numbers (or strings that look like
/// numbers, such as <c>1.23M</c>, <c>12.5%</c>, <c>4.5e18</c>) is right-aligned.
/// </summary>
public sealed class ConsoleTable(params string[] headers)
{
    private readonly string[] headers = headers.Length > 0 ? headers : throw new ArgumentException("a table needs at least one column", nameof(headers));
    private readonly List<Cell[]> rows = [];
    private readonly TextAlign[] align = new TextAlign[headers.Length];

    private readonly record struct Cell(string Text, bool Numeric);

    /// <summary>Decimals used for <see cref="float"/>, <see cref="double"/> and <see cref="decimal"/> cells (integers get none).</summary>
    public int FloatDecimals { get; set; } = 2;

    public IReadOnlyList<string> Headers => headers;
    public int RowCount => rows.Count;

    /// <summary>Adds a row; fewer cells than columns leaves the rest empty, more is an error. <c>null</c> is an empty cell.</summary>
    public ConsoleTable AddRow(params object?[] cells)
    {
        ArgumentNullException.ThrowIfNull(cells);
        if (cells.Length > headers.Length)
            throw new ArgumentException($"row has {cells.Length} cells but the table has {headers.Length} columns", nameof(cells));
        var row = new Cell[headers.Length];
        for (int i = 0; i < row.Length; i++) row[i] = i < cells.Length ? Format(cells[i]) : new Cell("", false);
        rows.Add(row);
        return this;
    }

    /// <summary>Forces a column's alignment (default <see cref="TextAlign.Auto"/>).</summary>
    public ConsoleTable Align(int column, TextAlign alignment)
    {
        align[column] = alignment;
        return this;
    }

    private Cell Format(object? value)
    {
        switch (value)
        {
            case null: return new Cell("", false);
            case string s: return new Cell(Clean(s), LooksNumeric(s));
            case double d: return new Cell(Fmt.Number(d, FloatDecimals), true);
            case float f: return new Cell(Fmt.Number(f, FloatDecimals), true);
            case decimal m: return new Cell(m.ToString("N" + FloatDecimals, CultureInfo.InvariantCulture), true);
            case Half h: return new Cell(Fmt.Number((double)h, FloatDecimals), true);
            case sbyte or byte or short or ushort or int or uint or long or ulong or nint or nuint or Int128 or UInt128:
                return new Cell(((IFormattable)value).ToString("N0", CultureInfo.InvariantCulture), true);
            case TimeSpan t: return new Cell(Fmt.Duration(t), true);
            case bool b: return new Cell(b ? "true" : "false", false);
            case IFormattable f: return new Cell(Clean(f.ToString(null, CultureInfo.InvariantCulture)), false);
            default: return new Cell(Clean(value.ToString() ?? ""), false);
        }
    }

    private static string Clean(string s)
    {
        if (s.AsSpan().IndexOfAny('\r', '\n', '\t') < 0) return s;
        return s.Replace("\r\n", " ").Replace('\r', ' ').Replace('\n', ' ').Replace('\t', ' ');
    }

    /// <summary>True for strings such as <c>1,234</c>, <c>-0.5</c>, <c>4.5e18</c>, <c>1.23M</c>, <c>12.5%</c>, <c>3m05s</c>, <c>NaN</c>, <c>×2.1</c>.</summary>
    internal static bool LooksNumeric(string s)
    {
        var t = s.AsSpan().Trim();
        if (t.IsEmpty) return false;
        if (t is "NaN" or "∞" or "-∞" or "Infinity" or "-Infinity") return true;
        int i = 0;
        if (t[i] is '+' or '-' or '−' or '×' or '~' or '≈' or '$') i++;
        if (i < t.Length && t[i] is '×' or '$') i++;
        int digits = 0;
        for (; i < t.Length; i++)
        {
            char c = t[i];
            if (char.IsAsciiDigit(c)) digits++;
            else if (c is ',' or '.' or ' ' or ':') { }
            else if ((c is 'e' or 'E') && i + 1 < t.Length && (char.IsAsciiDigit(t[i + 1]) || t[i + 1] is '-' or '+')) { i++; }
            else break;
        }
        if (digits == 0) return false;
        // An optional short unit suffix: %, x, K/M/B/T, s, ms, GiB, tok/s, …
        var rest = t[i..].Trim();
        return rest.Length <= 6 && !rest.ContainsAny(' ', '\t');
    }

    private bool RightAligned(int column)
    {
        if (align[column] != TextAlign.Auto) return align[column] == TextAlign.Right;
        bool any = false;
        foreach (var row in rows)
        {
            var cell = row[column];
            if (cell.Text.Length == 0) continue;
            if (!cell.Numeric && !IsPlaceholder(cell.Text)) return false;
            any |= cell.Numeric;
        }
        return any;
    }

    private static bool IsPlaceholder(string s) => s is "-" or "—" or "–" or "n/a" or "?";

    private int[] Widths()
    {
        var w = new int[headers.Length];
        for (int c = 0; c < w.Length; c++)
        {
            w[c] = DisplayWidth(headers[c]);
            foreach (var row in rows) w[c] = Math.Max(w[c], DisplayWidth(row[c].Text));
        }
        return w;
    }

    /// <summary>Terminal columns taken by <paramref name="s"/> (combining marks take none; wide East Asian characters are not special-cased).</summary>
    internal static int DisplayWidth(string s)
    {
        int n = 0;
        foreach (var rune in s.EnumerateRunes())
        {
            var cat = Rune.GetUnicodeCategory(rune);
            if (cat is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format) continue;
            n++;
        }
        return n;
    }

    private static string Pad(string s, int width, bool right)
    {
        int pad = width - DisplayWidth(s);
        if (pad <= 0) return s;
        return right ? new string(' ', pad) + s : s + new string(' ', pad);
    }

    /// <summary>The table as text: box-drawing borders (default) or, with <paramref name="box"/> false, plain columns separated by two spaces under a dashed header rule.</summary>
    public string ToText(bool box = true)
    {
        var w = Widths();
        var right = Enumerable.Range(0, headers.Length).Select(RightAligned).ToArray();
        var sb = new StringBuilder();
        if (box)
        {
            void Rule(char l, char m, char r)
            {
                sb.Append(l);
                for (int c = 0; c < w.Length; c++)
                {
                    sb.Append('─', w[c] + 2);
                    sb.Append(c == w.Length - 1 ? r : m);
                }
                sb.Append('\n');
            }
            void Line(IReadOnlyList<string> cells)
            {
                sb.Append('│');
                for (int c = 0; c < w.Length; c++) sb.Append(' ').Append(Pad(cells[c], w[c], right[c])).Append(" │");
                sb.Append('\n');
            }
            Rule('┌', '┬', '┐');
            Line(headers);
            Rule('├', '┼', '┤');
            foreach (var row in rows) Line(row.Select(x => x.Text).ToArray());
            Rule('└', '┴', '┘');
        }
        else
        {
            void Line(IReadOnlyList<string> cells)
            {
                var line = new StringBuilder();
                for (int c = 0; c < w.Length; c++)
                {
                    if (c > 0) line.Append("  ");
                    line.Append(Pad(cells[c], w[c], right[c]));
                }
                sb.Append(line.ToString().TrimEnd()).Append('\n');
            }
            Line(headers);
            Line(w.Select(x => new string('-', x)).ToArray());
            foreach (var row in rows) Line(row.Select(x => x.Text).ToArray());
        }
        return sb.ToString();
    }

    /// <summary>A GitHub-flavoured Markdown table; numeric columns get <c>---:</c>, <c>|</c> in cells is escaped.</summary>
    public string ToMarkdown()
    {
        static string Esc(string s) => s.Replace("|", "\\|");
        var cellsH = headers.Select(Esc).ToArray();
        var cellsR = rows.Select(r => r.Select(c => Esc(c.Text)).ToArray()).ToList();
        var w = new int[headers.Length];
        for (int c = 0; c < w.Length; c++)
        {
            w[c] = Math.Max(3, DisplayWidth(cellsH[c]));
            foreach (var row in cellsR) w[c] = Math.Max(w[c], DisplayWidth(row[c]));
        }
        var right = Enumerable.Range(0, headers.Length).Select(RightAligned).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> cells)
        {
            sb.Append('|');
            for (int c = 0; c < w.Length; c++) sb.Append(' ').Append(Pad(cells[c], w[c], right[c])).Append(" |");
            sb.Append('\n');
        }
        Line(cellsH);
        sb.Append('|');
        for (int c = 0; c < w.Length; c++) sb.Append(' ').Append(right[c] ? new string('-', w[c] - 1) + ":" : new string('-', w[c])).Append(" |");
        sb.Append('\n');
        foreach (var row in cellsR) Line(row);
        return sb.ToString();
    }

    public override string ToString() => ToText();
}

/// <summary>Number, size and duration formatting for reports; always the invariant culture.</summary>
public static class Fmt
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary><c>1234567.891, 2</c> → <c>1,234,567.89</c>; NaN → <c>NaN</c>, ±∞ → <c>∞</c> / <c>-∞</c>.</summary>
    public static string Number(double value, int decimals = 0)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "∞" : "-∞";
        decimals = Math.Clamp(decimals, 0, 15);
        if (Math.Abs(value) < 1e15) value = Math.Round(value, decimals, MidpointRounding.AwayFromZero);
        var s = value.ToString("N" + decimals, Inv);
        return IsNegativeZero(s) ? s[1..] : s;
    }

    private static bool IsNegativeZero(string s) => s.Length > 1 && s[0] == '-' && s.AsSpan(1).IndexOfAnyExcept("0.,") < 0;

    private static readonly string[] SiSuffixes = ["", "K", "M", "B", "T"];

    /// <summary>
    /// Compact magnitude with <paramref name="significant"/> significant digits: <c>123</c>, <c>12.3K</c>, <c>1.23M</c>,
    /// <c>1.7B</c> (10⁹, the ML convention for parameter counts), <c>2.5T</c>; beyond 10¹⁵ and below 10⁻³ scientific
    /// (<c>4.5e18</c>, <c>3e-4</c>); trailing zeros trimmed (<c>1M</c>, <c>0.5</c>).
    /// </summary>
    public static string Si(double value, int significant = 3)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "∞" : "-∞";
        if (value == 0) return "0";
        significant = Math.Clamp(significant, 1, 15);
        string sign = value < 0 ? "-" : "";
        double a = Math.Abs(value);
        a = RoundSignificant(a, significant);
        if (a < 1e-3 || a >= 1e15) return sign + Scientific(a, significant);
        if (a < 1000)
        {
            int intDigits = a < 1 ? 1 : (int)Math.Floor(Math.Log10(a)) + 1;
            int dec = Math.Max(0, significant - intDigits);
            if (a < 1) dec = significant - 1 - (int)Math.Floor(Math.Log10(a));
            return sign + Trim(a.ToString("F" + Math.Min(dec, 15), Inv));
        }
        int k = Math.Min((int)Math.Floor(Math.Log10(a) / 3), SiSuffixes.Length - 1);
        double scaled = a / Math.Pow(1000, k);
        int digits = (int)Math.Floor(Math.Log10(scaled)) + 1;
        return sign + Trim(scaled.ToString("F" + Math.Max(0, significant - digits), Inv)) + SiSuffixes[k];
    }

    private static double RoundSignificant(double a, int significant)
    {
        int mag = (int)Math.Floor(Math.Log10(a));
        double scale = Math.Pow(10, significant - 1 - mag);
        double r = Math.Round(a * scale) / scale;
        return double.IsFinite(r) && r > 0 ? r : a;
    }

    private static string Scientific(double a, int significant)
    {
        var s = a.ToString("E" + (significant - 1), Inv); // 4.50E+018
        int e = s.IndexOf('E');
        var mantissa = Trim(s[..e]);
        int exp = int.Parse(s.AsSpan(e + 1), NumberStyles.AllowLeadingSign, Inv);
        return mantissa + "e" + exp.ToString(Inv);
    }

    private static string Trim(string s) => s.Contains('.') ? s.TrimEnd('0').TrimEnd('.') : s;

    /// <summary><c>850ms</c>, <c>4.2s</c>, <c>42s</c>, <c>3m05s</c>, <c>1h02m</c>, <c>2d03h</c>; negative durations get a leading <c>-</c>.</summary>
    public static string Duration(TimeSpan t)
    {
        if (t < TimeSpan.Zero) return "-" + Duration(t == TimeSpan.MinValue ? TimeSpan.MaxValue : -t);
        double s = t.TotalSeconds;
        if (s < 1) return Math.Min(999, (long)t.TotalMilliseconds).ToString(Inv) + "ms";
        if (s < 10) return (Math.Floor(s * 10) / 10).ToString("0.0", Inv) + "s";
        if (s < 60) return ((int)s).ToString(Inv) + "s";
        long total = (long)s;
        if (total < 3600) return $"{total / 60}m{total % 60:00}s";
        if (total < 86400) return $"{total / 3600}h{total / 60 % 60:00}m";
        return $"{total / 86400}d{total / 3600 % 24:00}h";
    }

    /// <summary>Binary sizes: <c>512 B</c>, <c>1.5 KiB</c>, <c>1.23 GiB</c>.</summary>
    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = Math.Abs((double)bytes);
        int u = 0;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        string sign = bytes < 0 ? "-" : "";
        if (u == 0) return sign + v.ToString("0", Inv) + " B";
        return sign + (v < 10 ? v.ToString("0.00", Inv) : v < 100 ? v.ToString("0.0", Inv) : v.ToString("0", Inv)) + " " + units[u];
    }
}
