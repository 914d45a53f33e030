using System.Globalization;
using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

public class ConsoleTableTests
{
    private static ConsoleTable Sample() =>
        new ConsoleTable("model", "params", "loss", "note")
            .AddRow("micro-mor-expert", 1_234_567, 3.14159, "ok")
            .AddRow("tiny", 12, 2.5)
            .AddRow("tiny-mor-token", 98_765L, double.NaN, "a|b");

    [Fact]
    public void PlainTextRightAlignsNumericColumns()
    {
        var text = Sample().ToText(box: false);
        Assert.Equal(
            "model                params  loss  note\n" +
            "----------------  ---------  ----  ----\n" +
            "micro-mor-expert  1,234,567  3.14  ok\n" +
            "tiny                     12  2.50\n" +
            "tiny-mor-token       98,765   NaN  a|b\n", text);
    }

    [Fact]
    public void BoxTextHasBordersAndAlignedColumns()
    {
        var lines = Sample().ToText().TrimEnd('\n').Split('\n');
        Assert.Equal(7, lines.Length);
        Assert.StartsWith("┌", lines[0]);
        Assert.StartsWith("└", lines[^1]);
        Assert.All(lines, l => Assert.Equal(lines[0].Length, l.Length));
        Assert.Equal("│ micro-mor-expert │ 1,234,567 │ 3.14 │ ok   │", lines[3]);
        Assert.Equal("│ tiny             │        12 │ 2.50 │      │", lines[4]);
    }

    [Fact]
    public void MarkdownMarksNumericColumnsRightAlignedAndEscapesPipes()
    {
        var md = Sample().ToMarkdown();
        Assert.Equal(
            "| model            |    params | loss | note |\n" +
            "| ---------------- | --------: | ---: | ---- |\n" +
            "| micro-mor-expert | 1,234,567 | 3.14 | ok   |\n" +
            "| tiny             |        12 | 2.50 |      |\n" +
            "| tiny-mor-token   |    98,765 |  NaN | a\\|b |\n", md);
    }

    [Fact]
    public void NumericLookingStringsAreRightAlignedAndTooManyCellsIsAnError()
    {
        var t = new ConsoleTable("what", "flops").AddRow("a", Fmt.Si(4.5e18)).AddRow("b", "12.5%").AddRow("c", "—");
        Assert.Contains("| -----: |", t.ToMarkdown());
        Assert.Throws<ArgumentException>(() => t.AddRow(1, 2, 3));
        var forced = new ConsoleTable("id", "name").AddRow(1, "x").Align(0, TextAlign.Left);
        Assert.Contains("| id  |", forced.ToMarkdown());
        Assert.Contains("| 1   |", forced.ToMarkdown());
    }

    [Fact]
    public void NumberUsesInvariantCultureWithThousandsSeparators()
    {
        var saved = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
        try
        {
            Assert.Equal("1,234,567.89", Fmt.Number(1234567.891, 2));
            Assert.Equal("1,235", Fmt.Number(1234.5));
            Assert.Equal("0.00", Fmt.Number(-0.001, 2));
            Assert.Equal("NaN", Fmt.Number(double.NaN));
            Assert.Equal("-∞", Fmt.Number(double.NegativeInfinity));
            Assert.Equal("1,234,567.89", new ConsoleTable("x").AddRow(1234567.891).ToMarkdown().Split('\n')[2].Trim('|', ' '));
        }
        finally { CultureInfo.CurrentCulture = saved; }
    }

    [Theory]
    [InlineData(0, "0")]
    [InlineData(12, "12")]
    [InlineData(0.5, "0.5")]
    [InlineData(0.00123, "0.00123")]
    [InlineData(3e-4, "3e-4")]
    [InlineData(999, "999")]
    [InlineData(1234, "1.23K")]
    [InlineData(-1500, "-1.5K")]
    [InlineData(999_999, "1M")]
    [InlineData(1_234_567, "1.23M")]
    [InlineData(135e6, "135M")]
    [InlineData(1.7e9, "1.7B")]
    [InlineData(2.5e12, "2.5T")]
    [InlineData(4.5e18, "4.5e18")]
    [InlineData(double.NaN, "NaN")]
    public void Si(double value, string expected) => Assert.Equal(expected, Fmt.Si(value));

    [Theory]
    [InlineData(0.25, "250ms")]
    [InlineData(4.27, "4.2s")]
    [InlineData(45, "45s")]
    [InlineData(185, "3m05s")]
    [InlineData(3720, "1h02m")]
    [InlineData(2 * 86400 + 3 * 3600 + 59, "2d03h")]
    [InlineData(-90, "-1m30s")]
    public void Duration(double seconds, string expected) => Assert.Equal(expected, Fmt.Duration(TimeSpan.FromSeconds(seconds)));

    [Fact]
    public void Bytes()
    {
        Assert.Equal("512 B", Fmt.Bytes(512));
        Assert.Equal("1.50 KiB", Fmt.Bytes(1536));
        Assert.Equal("1.23 GiB", Fmt.Bytes((long)(1.23 * (1L << 30))));
    }
}
