using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

public class ProgressBarTests
{
    /// <summary>A clock the test moves by hand.</summary>
    private sealed class FakeClock
    {
        public TimeSpan Now;
        public TimeSpan Read() => Now;
        public void Advance(double seconds) => Now += TimeSpan.FromSeconds(seconds);
    }

    private static string[] Lines(StringWriter w) => w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void PlainModePrintsTheFinishedCountOnlyOnce()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        using (var bar = new ProgressBar("bench", 4, w, interactive: false, clock: clock.Read))
            for (int i = 1; i <= 4; i++) { clock.Advance(20); bar.Report(i); }   // every report is past the interval
        var lines = Lines(w);
        Assert.Equal(4, lines.Length);                                        // 1/4, 2/4, 3/4, then the final line
        Assert.Single(lines, l => l.Contains("4/4"));
        Assert.Contains("in 1m20s", lines[^1]);
    }

    [Fact]
    public void PlainModePrintsFirstReportThenAtMostEveryIntervalAndAFinalLine()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        var bar = new ProgressBar("train", 1000, w, interactive: false, clock: clock.Read);
        for (int t = 0; t <= 35; t++)
        {
            bar.Report(t * 10, [("loss", (3.0 - t * 0.01).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture))]);
            clock.Advance(1);
        }
        // Reports at t = 0..35 s: lines at 0, 10, 20, 30 s only.
        Assert.Equal(4, Lines(w).Length);
        Assert.Equal(4, bar.Draws);
        bar.Dispose();
        bar.Dispose(); // idempotent
        var lines = Lines(w);
        Assert.Equal(5, lines.Length);
        Assert.DoesNotContain('\r', w.ToString());
        Assert.StartsWith("train   0.0% [....................] 0/1,000", lines[0]);
        Assert.Contains("10.0%", lines[1]);
        Assert.Contains("100/1,000", lines[1]);
        Assert.Contains("eta ", lines[2]);
        Assert.Contains("loss=2.65", lines[4]);      // the last reported fields
        Assert.Contains("350/1,000", lines[4]);
        Assert.Contains("in 36s", lines[4]);          // the final line: total elapsed
        Assert.Contains("9.72/s", lines[4]);          // and the average rate (350 in 36 s)
        Assert.Contains("[#######.............]", lines[4]); // 35% of 20 cells
    }

    [Fact]
    public void PlainModeHonoursACustomInterval()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        using (var bar = new ProgressBar("eval", 100, w, interactive: false, clock: clock.Read, plainInterval: TimeSpan.FromSeconds(2)))
            for (int i = 1; i <= 100; i++) { clock.Advance(0.1); bar.Report(i); }
        // 10 s of reports every 0.1 s with a 2 s interval.
        var lines = Lines(w);
        Assert.Equal(6, lines.Length); // at 0.1, 2.1, 4.1, 6.1, 8.1 s and the final line
        Assert.Contains("100.0%", lines[^1]);
        Assert.Contains("in 10s", lines[^1]);
    }

    [Fact]
    public void InteractiveModeRedrawsOneLineAtMostTenTimesASecondAndClearsItOnDispose()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        var bar = new ProgressBar("train", 1000, w, interactive: true, clock: clock.Read);
        for (int i = 0; i < 1000; i++) { bar.Report(i + 1); clock.Advance(0.002); } // 2 s of reports every 2 ms
        Assert.InRange(bar.Draws, 15, 21);
        var text = w.ToString();
        Assert.DoesNotContain('\n', text);
        Assert.Equal(bar.Draws, text.Count(c => c == '\r'));
        bar.Dispose();
        text = w.ToString();
        Assert.EndsWith("\n", text);
        var final = text[(text.LastIndexOf('\r') + 1)..].TrimEnd('\n');
        Assert.StartsWith("train 100.0% [", final);
        Assert.Contains("1,000/1,000", final);
        Assert.Contains("in 2.0s", final);
        Assert.Contains('█', final);
    }

    [Fact]
    public void EtaMath()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), ProgressBar.EstimateEta(250, 1000, 25));
        Assert.Equal(TimeSpan.Zero, ProgressBar.EstimateEta(1000, 1000, 25));
        Assert.Null(ProgressBar.EstimateEta(10, 0, 25));          // unknown total
        Assert.Null(ProgressBar.EstimateEta(10, 1000, 0));        // no progress yet
        Assert.Null(ProgressBar.EstimateEta(10, 1000, double.NaN));
    }

    [Fact]
    public void SmoothedRateFollowsAConstantRateAndMovesGraduallyWhenItChanges()
    {
        var clock = new FakeClock();
        var bar = new ProgressBar("x", 10_000, TextWriter.Null, interactive: false, clock: clock.Read);
        Assert.True(double.IsNaN(bar.Rate));
        Assert.Null(bar.Eta);
        long done = 0;
        for (int i = 0; i < 100; i++) { clock.Advance(1); done += 10; bar.Report(done); }
        Assert.Equal(10, bar.Rate, 6);
        Assert.Equal(TimeSpan.FromSeconds((10_000 - 1000) / 10.0), bar.Eta!.Value);
        // The rate doubles: after one time constant (10 s) the estimate has moved ~63% of the way.
        for (int i = 0; i < 10; i++) { clock.Advance(1); done += 20; bar.Report(done); }
        Assert.InRange(bar.Rate, 15.8, 16.6);
        for (int i = 0; i < 100; i++) { clock.Advance(1); done += 20; bar.Report(done); }
        Assert.Equal(20, bar.Rate, 2);
    }

    [Fact]
    public void ResumedRunCountsOnlyNewProgressInTheRate()
    {
        var clock = new FakeClock();
        var bar = new ProgressBar("train", 10_000, TextWriter.Null, interactive: false, clock: clock.Read, start: 5000);
        clock.Advance(2);
        bar.Report(5020);
        Assert.Equal(10, bar.Rate, 6);
        Assert.Equal(TimeSpan.FromSeconds(498), bar.Eta);
    }

    [Fact]
    public void WithoutStartTheRateIsMeasuredFromTheFirstReport()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        var bar = new ProgressBar("train", 10_000, w, interactive: false, clock: clock.Read);
        clock.Advance(30);               // loading a checkpoint, warm-up…
        bar.Report(5001);                // a resumed run's first step
        for (int i = 0; i < 20; i++) { clock.Advance(1); bar.Report(5002 + i); }
        Assert.Equal(1, bar.Rate, 6);
        Assert.Equal(TimeSpan.FromSeconds(10_000 - 5021), bar.Eta);
        bar.Dispose();
        Assert.Contains("in 50s  1/s", Lines(w)[^1]);
    }

    [Fact]
    public void UnknownTotalShowsCountAndRateOnly()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        using (var bar = new ProgressBar("tokenize", 0, w, interactive: false, clock: clock.Read))
        {
            clock.Advance(1);
            bar.Report(123_456, [("docs", "17")]);
        }
        var lines = Lines(w);
        Assert.Equal(2, lines.Length);
        Assert.Equal("tokenize 123,456  1.0s  docs=17", lines[0]); // no rate yet: it is measured from the first report on
        Assert.DoesNotContain("%", lines[1]);
        Assert.Contains("123K/s", lines[1]);                           // the final line falls back to the average since construction
    }

    [Fact]
    public void WriteLineKeepsTheBarIntact()
    {
        var clock = new FakeClock();
        var w = new StringWriter();
        using var bar = new ProgressBar("train", 10, w, interactive: true, clock: clock.Read);
        bar.Report(3);
        bar.WriteLine("saved checkpoint");
        var text = w.ToString();
        int msg = text.IndexOf("saved checkpoint\n", StringComparison.Ordinal);
        Assert.True(msg > 0);
        Assert.Contains("\r", text[(msg + 1)..]); // redrawn after the message
        Assert.Contains("3/10", text[(msg + 1)..]);
    }
}
