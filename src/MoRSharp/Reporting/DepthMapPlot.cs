using System.Globalization;
using ScottPlot;

namespace MoRSharp.Reporting;

/// <summary>
/// Where an MoR encoder spent its recursions, as PNGs (ScottPlot 5, headless, written atomically):
/// <see cref="WriteImage"/> overlays the recursion depth of every patch on the image (grey digit, translucent colour per
/// patch, the depth written in each patch); <see cref="WriteAudio"/> draws the log-mel spectrogram with a strip below it
/// holding the depth of every frame.
/// </summary>
public static class DepthMapPlot
{
    private static readonly IColormap DepthColors = new ScottPlot.Colormaps.Turbo();

    /// <summary>
    /// <paramref name="pixels"/> [H, W] (row 0 = top), <paramref name="depth"/> [rows, cols] of patches (row-major like the
    /// tokens; whole or mean depths), colours spanning 0..<paramref name="maxDepth"/>.
    /// </summary>
    public static void WriteImage(string pngPath, float[,] pixels, double[,] depth, int maxDepth, string title, int size = 560)
    {
        int h = pixels.GetLength(0), w = pixels.GetLength(1), rows = depth.GetLength(0), cols = depth.GetLength(1);
        using var plot = new Plot();
        Style(plot, title);
        var image = plot.Add.Heatmap(ToDouble(pixels));
        image.Colormap = new ScottPlot.Colormaps.Grayscale();
        image.Rectangle = new CoordinateRect(0, w, 0, h);
        var overlay = plot.Add.Heatmap(depth);
        overlay.Colormap = DepthColors;
        overlay.Opacity = 0.45;
        overlay.ManualRange = new ScottPlot.Range(0, maxDepth);
        overlay.Rectangle = new CoordinateRect(0, w, 0, h);
        double ph = (double)h / rows, pw = (double)w / cols;
        bool whole = Enumerable.Range(0, rows * cols).All(i => depth[i / cols, i % cols] == Math.Round(depth[i / cols, i % cols]));
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                var label = plot.Add.Text(depth[r, c].ToString(whole ? "0" : "0.0", CultureInfo.InvariantCulture), (c + 0.5) * pw, h - (r + 0.5) * ph);
                label.LabelFontSize = whole ? 14 : 11;
                label.LabelFontColor = Colors.White;
                label.LabelBold = true;
                label.LabelAlignment = Alignment.MiddleCenter;
            }
        var bar = plot.Add.ColorBar(overlay);
        bar.Label = "recursions";
        plot.Axes.SetLimits(0, w, 0, h);
        plot.Axes.SquareUnits();
        plot.HideGrid();
        Write(pngPath, plot, size + 120, size);
    }

    /// <summary>
    /// <paramref name="logMel"/> [T, M] (frame-major, as the features), <paramref name="depth"/> [T] recursions per frame.
    /// </summary>
    public static void WriteAudio(string pngPath, float[,] logMel, double[] depth, int maxDepth, string title, int width = 1000, int height = 420)
    {
        int t = logMel.GetLength(0), m = logMel.GetLength(1);
        var spectrogram = new double[m, t];                        // row 0 = highest mel bin (drawn at the top)
        for (int f = 0; f < t; f++)
            for (int b = 0; b < m; b++) spectrogram[m - 1 - b, f] = logMel[f, b];
        using var plot = new Plot();
        Style(plot, title);
        var spec = plot.Add.Heatmap(spectrogram);
        spec.Colormap = new ScottPlot.Colormaps.Viridis();
        spec.Rectangle = new CoordinateRect(0, t, 0, m);
        double stripTop = -0.06 * m, stripBottom = -0.26 * m;       // the depth strip sits under the spectrogram
        var strip = new double[2, t];                               // two identical rows: ScottPlot draws no 1-row heatmap
        for (int f = 0; f < t; f++) strip[0, f] = strip[1, f] = depth[f];
        var depthStrip = plot.Add.Heatmap(strip);
        depthStrip.Colormap = DepthColors;
        depthStrip.ManualRange = new ScottPlot.Range(0, maxDepth);
        depthStrip.Rectangle = new CoordinateRect(0, t, stripBottom, stripTop);
        var note = plot.Add.Text("depth", 0, (stripTop + stripBottom) / 2);
        note.LabelAlignment = Alignment.MiddleRight;
        note.LabelFontSize = 13;
        var bar = plot.Add.ColorBar(depthStrip);
        bar.Label = "recursions";
        plot.XLabel("frame", size: 14);
        plot.YLabel("mel bin", size: 14);
        plot.Axes.SetLimits(-0.08 * t, t, stripBottom, m);
        plot.HideGrid();
        Write(pngPath, plot, width, height);
    }

    private static void Style(Plot plot, string title)
    {
        plot.Title(title, size: 16);
        plot.FigureBackground.Color = Colors.White;
        plot.DataBackground.Color = Colors.White;
    }

    private static void Write(string path, Plot plot, int width, int height)
    {
        var bytes = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(path, bytes);
    }

    private static double[,] ToDouble(float[,] a)
    {
        var d = new double[a.GetLength(0), a.GetLength(1)];
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++) d[i, j] = a[i, j];
        return d;
    }
}
