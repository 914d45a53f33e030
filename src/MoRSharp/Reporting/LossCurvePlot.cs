using ScottPlot;

namespace MoRSharp.Reporting;

/// <summary>One line of a <see cref="LossCurvePlot"/>.</summary>
/// <param name="Label">Legend text.</param>
/// <param name="Points">The points in x order; non-finite y values (NaN losses) are skipped.</param>
/// <param name="Smoothing">
/// EMA factor β in [0, 1) (TensorBoard's "smoothing"): 0 draws the points as they are; above 0 draws them faintly and
/// the bias-corrected EMA <c>s_t = β·s_{t−1} + (1−β)·y_t</c> on top, in the same colour. 0.9–0.98 suits per-step training loss.
/// </param>
/// <param name="Markers">Marks each point (for sparse series such as periodic evaluation).</param>
public sealed record LossCurveSeries(string Label, IReadOnlyList<(double x, double y)> Points, double Smoothing = 0, bool Markers = false);

/// <summary>
/// Loss curves (training and evaluation loss against step or tokens) as a PNG, with ScottPlot 5 (SkiaSharp), headless.
/// Several series share one plot with a legend; the file is written atomically (temp file + rename).
/// </summary>
public static class LossCurvePlot
{
    public const int DefaultWidth = 900;
    public const int DefaultHeight = 500;

    /// <summary>
    /// Writes a PNG of <paramref name="series"/>. <paramref name="smoothing"/> (EMA β, see <see cref="LossCurveSeries.Smoothing"/>)
    /// applies to every series with at least <paramref name="minPointsToSmooth"/> points: noisy per-step losses get the
    /// faint raw line plus the smoothed one, short series (periodic eval) are drawn as they are, with markers.
    /// </summary>
    public static void Write(string pngPath, IEnumerable<(string label, IReadOnlyList<(double x, double y)> points)> series,
        string xLabel, string yLabel, string title, double smoothing = 0, int width = DefaultWidth, int height = DefaultHeight,
        bool logY = false, int minPointsToSmooth = 50)
    {
        ArgumentNullException.ThrowIfNull(series);
        var list = series.Select(s => s.points.Count >= minPointsToSmooth
            ? new LossCurveSeries(s.label, s.points, smoothing)
            : new LossCurveSeries(s.label, s.points, 0, Markers: s.points.Count <= 60));
        Write(pngPath, list, xLabel, yLabel, title, width, height, logY);
    }

    /// <summary>Writes a PNG of <paramref name="series"/>, each with its own smoothing and markers.</summary>
    public static void Write(string pngPath, IEnumerable<LossCurveSeries> series, string xLabel, string yLabel, string title,
        int width = DefaultWidth, int height = DefaultHeight, bool logY = false)
    {
        var bytes = Render(series, xLabel, yLabel, title, width, height, logY);
        AtomicFile.Write(pngPath, bytes);
    }

    /// <summary>The PNG bytes of the plot (what <see cref="Write(string, IEnumerable{LossCurveSeries}, string, string, string, int, int, bool)"/> writes).</summary>
    public static byte[] Render(IEnumerable<LossCurveSeries> series, string xLabel, string yLabel, string title,
        int width = DefaultWidth, int height = DefaultHeight, bool logY = false)
    {
        ArgumentNullException.ThrowIfNull(series);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 100);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 100);
        using var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var font = SansFont();
        if (font is not null) plot.Font.Set(font);
        int index = 0;
        bool anyData = false;
        double yMin = double.PositiveInfinity, yMax = double.NegativeInfinity;
        foreach (var s in series)
        {
            if (s.Smoothing is < 0 or >= 1 || double.IsNaN(s.Smoothing))
                throw new ArgumentOutOfRangeException(nameof(series), s.Smoothing, $"smoothing of '{s.Label}' must be in [0, 1)");
            var color = palette.GetColor(index++);
            var (xs, ys) = Finite(s.Points, logY);
            if (xs.Length == 0)
            {
                // Keep the series in the legend so a reader sees it existed but had no finite points.
                var empty = plot.Add.ScatterLine(Array.Empty<double>(), Array.Empty<double>(), color);
                empty.LegendText = s.Label + " (no data)";
                continue;
            }
            anyData = true;
            yMin = Math.Min(yMin, ys.Min());
            yMax = Math.Max(yMax, ys.Max());
            if (s.Smoothing > 0 && xs.Length > 2)
            {
                var raw = plot.Add.ScatterLine(xs, ys, color.WithAlpha(0.22));
                raw.LineWidth = 1;
                var smooth = plot.Add.ScatterLine(xs, Ema(ys, s.Smoothing), color);
                smooth.LineWidth = 2.5f;
                smooth.LegendText = s.Label;
            }
            else
            {
                var line = plot.Add.ScatterLine(xs, ys, color);
                line.LineWidth = 2.5f;
                line.LegendText = s.Label;
                if (s.Markers || xs.Length == 1)
                {
                    line.MarkerShape = MarkerShape.FilledCircle;
                    line.MarkerSize = 6;
                }
            }
        }

        plot.Title(title, size: 20);
        plot.XLabel(xLabel, size: 16);
        plot.YLabel(logY ? yLabel + " (log scale)" : yLabel, size: 16);
        plot.Axes.Bottom.TickLabelStyle.FontSize = 13;
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        plot.Axes.Title.Label.Bold = true;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = TickLabel };
        if (!logY) plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = TickLabel };
        else if (yMin <= yMax) plot.Axes.Left.TickGenerator = LogTicks(yMin, yMax);
        plot.Grid.MajorLineColor = Colors.Black.WithAlpha(0.08);
        plot.FigureBackground.Color = Colors.White;
        plot.DataBackground.Color = Colors.White;
        var legend = plot.ShowLegend(Alignment.UpperRight);
        legend.FontSize = 14;
        legend.BackgroundColor = Colors.White.WithAlpha(0.85);
        legend.OutlineColor = Colors.Black.WithAlpha(0.25);
        if (!anyData) plot.Axes.SetLimits(0, 1, 0, 1);
        else
        {
            plot.Axes.AutoScale();
            plot.Axes.Margins(0.02, 0.08);
        }
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    private static readonly string[] SansFamilies = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Open Sans", "Arial", "Helvetica", "Segoe UI"];
    private static string? sansFont;
    private static bool sansFontSearched;

    /// <summary>An installed sans-serif family (Skia falls back to a serif font on Linux otherwise), or null to keep ScottPlot's default.</summary>
    private static string? SansFont()
    {
        if (sansFontSearched) return sansFont;
        try
        {
            var installed = new HashSet<string>(SkiaSharp.SKFontManager.Default.FontFamilies, StringComparer.OrdinalIgnoreCase);
            sansFont = SansFamilies.FirstOrDefault(installed.Contains);
        }
        catch (Exception) { sansFont = null; }
        sansFontSearched = true;
        return sansFont;
    }

    private static string TickLabel(double v) =>
        Math.Abs(v) >= 1e5 ? Fmt.Si(v, 4) : v.ToString("#,0.########", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Ticks for a log10 axis spanning [lo, hi] (in log10 units) at readable values: under one decade the nice linear ticks
    /// of the real range (2, 2.5, 3, …), over it 1-2-5 or 1 per decade with minor ticks at 2…9.
    /// </summary>
    private static ScottPlot.TickGenerators.NumericManual LogTicks(double lo, double hi)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
        if (hi - lo < 1)
        {
            // The largest nice step that still puts at least 5 ticks on the data, labelled over the padded view.
            double a = Math.Pow(10, lo), b = Math.Pow(10, hi);
            double mag = Math.Pow(10, Math.Floor(Math.Log10((b - a) / 5)));
            double step = mag / 10;
            foreach (var candidate in new[] { 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10 }.Select(m => m * mag))
                if (Math.Floor(b / candidate) - Math.Ceiling(a / candidate) + 1 >= 5) step = candidate;
            double viewLo = Math.Pow(10, lo - 0.1 * (hi - lo)), viewHi = Math.Pow(10, hi + 0.1 * (hi - lo));
            for (double v = Math.Ceiling(viewLo / step) * step; v <= viewHi * (1 + 1e-12); v += step)
                ticks.AddMajor(Math.Log10(v), TickLabel(Math.Round(v, 10)));
            return ticks;
        }
        double pad = 0.1 * (hi - lo); // the view has margins: label the ticks that fall in them too
        lo -= pad;
        hi += pad;
        double[] mantissas = hi - lo <= 2 ? [1, 2, 5] : [1];
        for (int d = (int)Math.Floor(lo); d <= (int)Math.Ceiling(hi); d++)
            for (int m = 1; m <= 9; m++)
            {
                double v = m * Math.Pow(10, d), l = Math.Log10(v);
                if (l < lo - 1e-9 || l > hi + 1e-9) continue;
                if (mantissas.Contains(m)) ticks.AddMajor(l, Fmt.Si(v));
                else ticks.AddMinor(l);
            }
        return ticks;
    }

    /// <summary>The points with finite y (and, for a log axis, y &gt; 0, as log10), in the given order.</summary>
    private static (double[] xs, double[] ys) Finite(IReadOnlyList<(double x, double y)> points, bool logY)
    {
        var xs = new List<double>(points.Count);
        var ys = new List<double>(points.Count);
        foreach (var (x, y) in points)
        {
            if (!double.IsFinite(x) || !double.IsFinite(y)) continue;
            if (logY)
            {
                if (y <= 0) continue;
                ys.Add(Math.Log10(y));
            }
            else ys.Add(y);
            xs.Add(x);
        }
        return (xs.ToArray(), ys.ToArray());
    }

    /// <summary>The bias-corrected exponential moving average (TensorBoard's smoothing): s_t = β·s_{t−1} + (1−β)·y_t, divided by 1 − β^t.</summary>
    public static double[] Ema(IReadOnlyList<double> ys, double beta)
    {
        var result = new double[ys.Count];
        double acc = 0, weight = 0;
        for (int i = 0; i < ys.Count; i++)
        {
            acc = beta * acc + (1 - beta) * ys[i];
            weight = beta * weight + (1 - beta);
            result[i] = acc / weight;
        }
        return result;
    }
}
