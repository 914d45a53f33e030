using System.Buffers.Binary;
using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

public sealed class LossCurvePlotTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("morsharp-plot-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Checks the PNG signature and the IHDR chunk, returns (width, height).</summary>
    internal static (int width, int height) PngSize(byte[] png)
    {
        Assert.True(png.Length > 33, "too short for a PNG");
        Assert.Equal(PngSignature, png[..8]);
        Assert.Equal(13, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(8)));  // IHDR length
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(png, 12, 4));
        return (BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));
    }

    internal static List<(double x, double y)> NoisyLoss(int n, int seed)
    {
        var rng = new Random(seed);
        var points = new List<(double x, double y)>(n);
        for (int i = 1; i <= n; i++)
            points.Add((i, 2.2 + 8.5 / Math.Sqrt(i) + (rng.NextDouble() - 0.5) * 0.6));
        return points;
    }

    [Fact]
    public void WritesAValidPngOfTheRequestedSizeAtomically()
    {
        var path = Path.Combine(dir, "plots", "loss.png");
        var train = NoisyLoss(1000, 1);
        var eval = Enumerable.Range(1, 10).Select(i => (x: i * 100.0, y: 2.3 + 8.5 / Math.Sqrt(i * 100.0))).ToList();
        LossCurvePlot.Write(path, [("train", train), ("eval", eval)], "step", "loss", "micro-mor-expert", smoothing: 0.95);

        var png = File.ReadAllBytes(path);
        Assert.True(png.Length > 10_000, $"PNG only {png.Length} bytes");
        Assert.Equal((900, 500), PngSize(png));
        Assert.Equal(["loss.png"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(f => Path.GetFileName(f)).ToArray());

        // Overwrites in place, with another size and a log axis.
        LossCurvePlot.Write(path, [new LossCurveSeries("train", train, 0.9)], "step", "loss", "log", width: 640, height: 360, logY: true);
        Assert.Equal((640, 360), PngSize(File.ReadAllBytes(path)));
    }

    [Fact]
    public void EmptyAndNonFiniteSeriesStillMakeAPlot()
    {
        var path = Path.Combine(dir, "empty.png");
        LossCurvePlot.Write(path, [("nan", new List<(double, double)> { (1, double.NaN), (2, double.PositiveInfinity) }), ("none", new List<(double, double)>())],
            "step", "loss", "nothing yet");
        Assert.Equal((900, 500), PngSize(File.ReadAllBytes(path)));
    }

    [Fact]
    public void EmaIsBiasCorrected()
    {
        Assert.Equal([5.0, 5.0, 5.0], LossCurvePlot.Ema([5.0, 5.0, 5.0], 0.9), new DoubleTolerance(1e-12));
        var s = LossCurvePlot.Ema([0.0, 10.0], 0.5);
        Assert.Equal(0, s[0], 12);
        Assert.Equal(10 * 0.5 / 0.75, s[1], 12);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            LossCurvePlot.Render([new LossCurveSeries("x", [(0, 1), (1, 2)], Smoothing: 1)], "x", "y", "t"));
    }

    private sealed class DoubleTolerance(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double d) => 0;
    }
}
