using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MoRSharp.Reporting;

/// <summary>
/// A progress line for long loops (training steps, evaluation batches, benchmarks):
/// <c>train  45.2% [█████████▌          ] 4,520/10,000  12m03s eta 14m35s  6.25/s  loss=3.21 lr=3e-4</c>.
/// <para>
/// Interactive (a terminal on stderr, <c>TERM</c> not <c>dumb</c>, no <c>CI</c> variable): one line redrawn in place with
/// <c>\r</c>, at most 10 times a second; <see cref="Dispose"/> clears it and prints the final line. Otherwise (logs, CI):
/// a plain line on the first report, then at most every <c>plainInterval</c> (10 s by default), and a final line on
/// <see cref="Dispose"/> — so logs stay short.
/// </para>
/// <para>
/// <see cref="Report"/> is cheap when it does not draw (a clock read and a few comparisons under an uncontended lock), so it can
/// be called every step. One producer thread reports; <see cref="Dispose"/> and <see cref="WriteLine"/> may come from
/// another thread (e.g. a Ctrl-C handler). The ETA uses a rate smoothed with a time-constant EMA (τ = 10 s by default)
/// of the rate measured over windows of at least 0.5 s.
/// </para>
/// </summary>
public sealed class ProgressBar : IDisposable
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static readonly TimeSpan InteractiveInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan RateWindow = TimeSpan.FromMilliseconds(500);

    private readonly object gate = new();
    private readonly TextWriter writer;
    private readonly Func<TimeSpan> clock;
    private readonly TimeSpan origin;
    private readonly TimeSpan plainInterval;
    private readonly double rateTimeConstantSeconds;
    private readonly long start;

    private long done;
    private IReadOnlyList<(string key, string value)>? fields;
    private TimeSpan lastDraw;
    private bool drawnOnce;
    private int lastLineLength;
    private bool disposed;

    // Rate smoothing: the last sample point and the smoothed rate (units per second), NaN until the first window closes.
    private TimeSpan sampleTime;
    private long sampleDone;
    private double smoothedRate = double.NaN;
    // Where rate measurement starts: (start, construction) when a start was given, else the first Report — so a resumed
    // run's first jump, or a slow first step (warm-up), does not distort the rate.
    private bool baselineSet;
    private TimeSpan baseTime;
    private long baseDone;

    public string Label { get; }
    /// <summary>The total; ≤ 0 means unknown (no percentage, bar or ETA is shown).</summary>
    public long Total { get; }
    public bool Interactive { get; }
    /// <summary>The last value given to <see cref="Report"/> (or <c>start</c>).</summary>
    public long Done { get { lock (gate) return done; } }
    /// <summary>Time since construction, by the bar's clock.</summary>
    public TimeSpan Elapsed => clock() - origin;
    /// <summary>The smoothed rate in units per second; NaN before the first 0.5 s measuring window has closed.</summary>
    public double Rate { get { lock (gate) return smoothedRate; } }
    /// <summary>The estimated time left from the smoothed rate; null while unknown.</summary>
    public TimeSpan? Eta { get { lock (gate) return EstimateEta(done, Total, smoothedRate); } }
    /// <summary>How many lines (plain mode) or redraws (interactive mode) were written, final line included.</summary>
    public int Draws { get; private set; }

    /// <param name="label">Shown first on the line (e.g. <c>train</c>).</param>
    /// <param name="total">The count at completion; ≤ 0 when unknown.</param>
    /// <param name="writer">Where to write; <see cref="Console.Error"/> by default.</param>
    /// <param name="interactive">Force the mode; by default <see cref="IsInteractiveTerminal"/> when writing to stderr, plain otherwise.</param>
    /// <param name="clock">Elapsed time from any fixed origin (a fake clock for tests); a <see cref="Stopwatch"/> by default.</param>
    /// <param name="plainInterval">Least time between plain lines (default 10 s).</param>
    /// <param name="start">
    /// The count already done when the loop starts (a resumed run): the rate counts progress after it from construction.
    /// Without it the rate is measured from the first <see cref="Report"/> on, which also keeps a resumed run's first jump
    /// and a slow first step (warm-up) out of the ETA.
    /// </param>
    /// <param name="rateTimeConstant">The EMA time constant of the smoothed rate (default 10 s).</param>
    public ProgressBar(string label, long total, TextWriter? writer = null, bool? interactive = null,
        Func<TimeSpan>? clock = null, TimeSpan? plainInterval = null, long start = 0, TimeSpan? rateTimeConstant = null)
    {
        Label = label;
        Total = total;
        this.writer = writer ?? Console.Error;
        Interactive = interactive ?? (writer is null || ReferenceEquals(writer, Console.Error)) && IsInteractiveTerminal();
        if (clock is null)
        {
            long t0 = Stopwatch.GetTimestamp();
            clock = () => Stopwatch.GetElapsedTime(t0);
        }
        this.clock = clock;
        origin = clock();
        this.plainInterval = plainInterval ?? TimeSpan.FromSeconds(10);
        rateTimeConstantSeconds = Math.Max(1e-3, (rateTimeConstant ?? TimeSpan.FromSeconds(10)).TotalSeconds);
        this.start = start;
        done = start;
        sampleTime = baseTime = origin;
        sampleDone = baseDone = start;
        baselineSet = start != 0;
    }

    /// <summary>
    /// True when stderr is a terminal (not redirected), <c>TERM</c> is not <c>dumb</c> and no <c>CI</c> variable is set
    /// (any value but <c>false</c>/<c>0</c>).
    /// </summary>
    public static bool IsInteractiveTerminal()
    {
        try
        {
            if (Console.IsErrorRedirected) return false;
        }
        catch (Exception) { return false; }
        if (string.Equals(Environment.GetEnvironmentVariable("TERM"), "dumb", StringComparison.OrdinalIgnoreCase)) return false;
        var ci = Environment.GetEnvironmentVariable("CI");
        if (!string.IsNullOrEmpty(ci) && ci is not ("false" or "0")) return false;
        return true;
    }

    /// <summary>ETA = (total − done) / rate; null when the total is unknown or the rate is not positive and finite; zero when done ≥ total.</summary>
    public static TimeSpan? EstimateEta(long done, long total, double ratePerSecond)
    {
        if (total <= 0) return null;
        if (done >= total) return TimeSpan.Zero;
        if (!(ratePerSecond > 0) || double.IsInfinity(ratePerSecond)) return null;
        double seconds = (total - done) / ratePerSecond;
        if (seconds >= TimeSpan.MaxValue.TotalSeconds / 2) return null;
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>
    /// Records progress (<paramref name="done"/> is the absolute count, not an increment) and the fields to show
    /// (e.g. <c>("loss", "3.21")</c>); draws when the throttle allows. The fields list is kept by reference until the next call.
    /// </summary>
    public void Report(long done, IReadOnlyList<(string key, string value)>? fields = null)
    {
        lock (gate)
        {
            if (disposed) return;
            var now = clock();
            this.done = done;
            if (fields is not null) this.fields = fields;
            if (!baselineSet)
            {
                sampleTime = baseTime = now;
                sampleDone = baseDone = done;
                baselineSet = true;
            }
            UpdateRate(now, done);
            var since = now - lastDraw;
            if (Interactive)
            {
                if (drawnOnce && since < InteractiveInterval) return;
                Redraw(now);
            }
            else
            {
                if (drawnOnce && since < plainInterval) return;
                // the finished count is printed once, by Dispose's final line (with elapsed time and mean rate)
                if (Total > 0 && done >= Total && drawnOnce) return;
                WritePlain(Format(now, final: false, ascii: true));
            }
            lastDraw = now;
            drawnOnce = true;
        }
    }

    /// <summary>Writes a message on its own line without breaking the bar (in interactive mode the bar is redrawn under it).</summary>
    public void WriteLine(string message)
    {
        lock (gate)
        {
            if (Interactive && !disposed && lastLineLength > 0)
            {
                ClearLine();
                writer.WriteLine(message);
                Redraw(clock());
            }
            else
            {
                writer.WriteLine(message);
                writer.Flush();
            }
        }
    }

    /// <summary>Clears the interactive line and writes the final line (elapsed time and average rate). Idempotent.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            var now = clock();
            var line = Format(now, final: true, ascii: !Interactive);
            if (Interactive) ClearLine();
            writer.WriteLine(line);
            writer.Flush();
            Draws++;
        }
    }

    private void UpdateRate(TimeSpan now, long done)
    {
        var dt = (now - sampleTime).TotalSeconds;
        if (dt < RateWindow.TotalSeconds) return;
        double instant = (done - sampleDone) / dt;
        if (double.IsNaN(smoothedRate)) smoothedRate = instant;
        else
        {
            double alpha = 1 - Math.Exp(-dt / rateTimeConstantSeconds);
            smoothedRate += alpha * (instant - smoothedRate);
        }
        sampleTime = now;
        sampleDone = done;
    }

    private void WritePlain(string line)
    {
        writer.WriteLine(line);
        writer.Flush();
        Draws++;
    }

    private void Redraw(TimeSpan now)
    {
        int width = TerminalWidth();
        var line = Format(now, final: false, ascii: false, maxWidth: width - 1);
        int len = line.Length;
        var sb = new StringBuilder(len + 8);
        sb.Append('\r').Append(line);
        if (lastLineLength > len) sb.Append(' ', lastLineLength - len);
        writer.Write(sb.ToString());
        writer.Flush();
        lastLineLength = len;
        Draws++;
    }

    private void ClearLine()
    {
        if (lastLineLength == 0) return;
        writer.Write("\r" + new string(' ', lastLineLength) + "\r");
        lastLineLength = 0;
    }

    private static int TerminalWidth()
    {
        try
        {
            int w = Console.WindowWidth;
            return w >= 20 ? w : 120;
        }
        catch (Exception) { return 120; }
    }

    /// <summary>The line as it would be drawn now (for tests and for callers that log it elsewhere).</summary>
    public string Render(bool final = false)
    {
        lock (gate) return Format(clock(), final, ascii: true);
    }

    private string Format(TimeSpan now, bool final, bool ascii, int maxWidth = int.MaxValue)
    {
        var elapsed = now - origin;
        var head = new StringBuilder();
        head.Append(Label);
        bool known = Total > 0;
        double frac = known ? Math.Clamp((double)done / Total, 0, 1) : 0;
        if (known) head.Append(' ').Append((frac * 100).ToString("0.0", Inv).PadLeft(5)).Append('%');

        var tail = new StringBuilder();
        tail.Append(' ').Append(Fmt.Number(done));
        if (known) tail.Append('/').Append(Fmt.Number(Total));
        if (final)
        {
            double span = (now - baseTime).TotalSeconds, secs = elapsed.TotalSeconds;
            double avg = baselineSet && span >= RateWindow.TotalSeconds && done > baseDone ? (done - baseDone) / span
                : secs > 0 ? (done - start) / secs : double.NaN;
            tail.Append("  in ").Append(Fmt.Duration(elapsed));
            if (double.IsFinite(avg)) tail.Append("  ").Append(Fmt.Si(avg)).Append("/s");
        }
        else
        {
            tail.Append("  ").Append(Fmt.Duration(elapsed));
            if (known) tail.Append(" eta ").Append(EstimateEta(done, Total, smoothedRate) is { } eta ? Fmt.Duration(eta) : "?");
            if (double.IsFinite(smoothedRate)) tail.Append("  ").Append(Fmt.Si(smoothedRate)).Append("/s");
        }
        if (fields is { Count: > 0 })
        {
            tail.Append(' ');
            foreach (var (key, value) in fields) tail.Append(' ').Append(key).Append('=').Append(value);
        }

        if (!known) return Fit(head.Append(tail).ToString(), maxWidth);
        int barWidth = maxWidth == int.MaxValue ? 20 : Math.Clamp(maxWidth - head.Length - tail.Length - 3, 10, 30);
        var line = new StringBuilder(head.Length + barWidth + tail.Length + 4);
        line.Append(head).Append(" [");
        AppendBar(line, frac, barWidth, ascii);
        line.Append(']').Append(tail);
        return Fit(line.ToString(), maxWidth);
    }

    private static readonly char[] Eighths = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

    private static void AppendBar(StringBuilder sb, double frac, int width, bool ascii)
    {
        if (ascii)
        {
            int full = (int)Math.Floor(frac * width);
            sb.Append('#', full).Append('.', width - full);
            return;
        }
        int eighths = (int)Math.Floor(frac * width * 8);
        int whole = eighths / 8, part = eighths % 8;
        sb.Append('█', whole);
        if (whole < width)
        {
            sb.Append(Eighths[part]);
            sb.Append(' ', width - whole - 1);
        }
    }

    private static string Fit(string line, int maxWidth) =>
        line.Length <= maxWidth ? line : maxWidth <= 1 ? line[..Math.Max(0, maxWidth)] : line[..(maxWidth - 1)] + "…";
}
