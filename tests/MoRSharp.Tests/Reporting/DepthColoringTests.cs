using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

/// <summary>One class so that the tests touching NO_COLOR / FORCE_COLOR never run in parallel with each other.</summary>
public class DepthColoringTests
{
    private static readonly (string text, int depth)[] Tokens =
    [
        ("The", 3), (" cat", 1), (" <script>alert('x')</script>", 2), (" & \"dogs\"", 3), ("\n", 1), ("bell\a", 2),
        ("\u001b[31mred", 3), (" end", 0),
    ];

    [Fact]
    public void HtmlIsAStandalonePageWithEscapedTextLegendAndTooltips()
    {
        var html = DepthColoring.Html(Tokens, 3, "Depths <b>of</b> micro-mor");
        Assert.StartsWith("<!DOCTYPE html>", html);
        Assert.EndsWith("</html>\n", html);
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", html);
        Assert.Contains("&amp; &quot;dogs&quot;", html);
        Assert.Contains("<title>Depths &lt;b&gt;of&lt;/b&gt; micro-mor</title>", html);
        Assert.DoesNotContain("<b>", html);
        Assert.DoesNotContain('\u001b', html);
        Assert.DoesNotContain('\a', html);
        Assert.Contains("<span class=\"ctl\">\\x1b</span>[31mred", html, StringComparison.Ordinal);
        // One span per token, with its depth in the tooltip; depth classes d1..d3 defined in the CSS and shown in the legend.
        Assert.Contains("<span class=\"d3\" title=\"token 0: depth 3/3 · The\">The</span>", html);
        Assert.Contains("title=\"token 7: no depth", html);
        for (int d = 1; d <= 3; d++)
        {
            Assert.Contains($".d{d} {{ background: #", html);
            Assert.Contains($"<span class=\"sw d{d}\">{d}</span>", html);
        }
        Assert.Contains("8 tokens", html);
    }

    [Fact]
    public void AnsiEscapesControlCharactersAndEndsWithALegend()
    {
        var ansi = DepthColoring.Ansi(Tokens, 3);
        Assert.DoesNotContain('\a', ansi);
        Assert.DoesNotContain("\u001b[31m", ansi, StringComparison.Ordinal); // ordinal: culture-aware search ignores control characters
        Assert.Contains("\\x1b[31mred", ansi, StringComparison.Ordinal);
        Assert.Contains("bell\\x07", ansi);
        Assert.Contains("\\n", ansi);
        // Every escape sequence in the output is ours: a 256-colour background or a reset.
        for (int i = ansi.IndexOf('\u001b'); i >= 0; i = ansi.IndexOf('\u001b', i + 1))
            Assert.True(ansi.AsSpan(i).StartsWith("\u001b[48;5;") || ansi.AsSpan(i).StartsWith("\u001b[0m"), $"stray escape at {i}");
        // Depth 1 light, depth 3 the darkest of the ramp, depth 0 uncoloured.
        Assert.Equal(230, DepthColoring.AnsiColor(1, 3));
        Assert.Equal(53, DepthColoring.AnsiColor(3, 3));
        Assert.Equal(53, DepthColoring.AnsiColor(7, 3));
        Assert.Equal(-1, DepthColoring.AnsiColor(0, 3));
        Assert.Contains("\u001b[48;5;230;38;5;16m cat\u001b[0m", ansi, StringComparison.Ordinal);
        Assert.Contains(" end", ansi);
        var lines = ansi.TrimEnd('\n').Split('\n');
        Assert.StartsWith("depth:", lines[^1]);
        Assert.Contains("25%", lines[^1]);                 // 2 of 8 tokens at depth 1
        Assert.Contains("no depth 12.5%", lines[^1]);
    }

    [Fact]
    public void EscapeLeavesPrintableTextAlone()
    {
        Assert.Equal("héllo wörld ✓", DepthColoring.Escape("héllo wörld ✓"));
        Assert.Equal("a\\tb\\r\\n\\x7f\\x9b\\u2028\\u202e", DepthColoring.Escape("a\tb\r\n\u007f\u009b\u2028\u202e"));
    }

    [Fact]
    public void ColorSupportRespectsNoColorAndForceColor()
    {
        var saved = (no: Environment.GetEnvironmentVariable("NO_COLOR"), force: Environment.GetEnvironmentVariable("FORCE_COLOR"),
            cli: Environment.GetEnvironmentVariable("CLICOLOR_FORCE"));
        try
        {
            Environment.SetEnvironmentVariable("NO_COLOR", null);
            Environment.SetEnvironmentVariable("FORCE_COLOR", null);
            Environment.SetEnvironmentVariable("CLICOLOR_FORCE", null);
            Assert.False(DepthColoring.ColorSupported(new StringWriter()));   // not a terminal
            Environment.SetEnvironmentVariable("FORCE_COLOR", "1");
            Assert.True(DepthColoring.ColorSupported(new StringWriter()));
            Environment.SetEnvironmentVariable("NO_COLOR", "1");              // NO_COLOR wins
            Assert.False(DepthColoring.ColorSupported(new StringWriter()));
            Assert.False(DepthColoring.ColorSupported(Console.Out));
        }
        finally
        {
            Environment.SetEnvironmentVariable("NO_COLOR", saved.no);
            Environment.SetEnvironmentVariable("FORCE_COLOR", saved.force);
            Environment.SetEnvironmentVariable("CLICOLOR_FORCE", saved.cli);
        }
    }
}
