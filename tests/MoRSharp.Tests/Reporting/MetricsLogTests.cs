using System.Globalization;
using System.Text.Json.Nodes;
using MoRSharp.Reporting;

namespace MoRSharp.Tests.Reporting;

public sealed class MetricsLogTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("morsharp-metrics-").FullName;
    private string PathOf(string name) => Path.Combine(dir, name);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static Dictionary<string, object?> Step(long step, double loss) => new() { ["step"] = step, ["loss"] = loss };

    [Fact]
    public void RoundTripWritesInvariantNumbersAndFlagsNonFiniteValues()
    {
        var path = PathOf("run/metrics.jsonl"); // the directory is created
        var saved = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE"); // decimal comma must not leak into the file
        try
        {
            using var log = new MetricsLog(path);
            log.Append(new Dictionary<string, object?>
            {
                ["step"] = 1L,
                ["loss"] = 2.5,
                ["lr"] = 3e-4,
                ["tok_per_s"] = 12345.5f,
                ["phase"] = "warmup",
                ["ok"] = true,
                ["none"] = null,
                ["tokens_per_recursion"] = new long[] { 4096, 2731, 1365 },
                ["router"] = new Dictionary<string, object?> { ["z"] = double.PositiveInfinity, ["entropy"] = 0.69 },
            });
            log.Append(new Dictionary<string, object?>
            {
                ["step"] = 2L,
                ["loss"] = double.NaN,
                ["grad_norm"] = double.NegativeInfinity,
                ["per_depth"] = new[] { 1.0, double.NaN, 3.0, double.PositiveInfinity },
            });
            Assert.Equal(2, log.LinesWritten);
        }
        finally { CultureInfo.CurrentCulture = saved; }

        var text = File.ReadAllText(path);
        Assert.Contains("\"loss\":2.5", text);
        Assert.Contains("\"lr\":0.0003", text);
        Assert.DoesNotContain("NaN,", text.Replace("\"NaN\"", ""));
        Assert.Equal(2, text.Count(c => c == '\n'));

        var lines = MetricsLog.Read(path);
        Assert.Equal(2, lines.Count);
        var a = lines[0];
        Assert.Equal(1, (long)a["step"]!);
        Assert.Equal(2.5, (double)a["loss"]!);
        Assert.Equal(3e-4, (double)a["lr"]!);
        Assert.Equal(12345.5, (double)a["tok_per_s"]!);
        Assert.Equal("warmup", (string)a["phase"]!);
        Assert.True((bool)a["ok"]!);
        Assert.True(a.ContainsKey("none"));
        Assert.Null(a["none"]);
        Assert.Equal([4096L, 2731L, 1365L], a["tokens_per_recursion"]!.AsArray().Select(n => (long)n!).ToArray());
        var router = a["router"]!.AsObject();
        Assert.Null(router["z"]);
        Assert.Equal("Infinity", (string)router["z" + MetricsLog.NonFiniteSuffix]!);
        Assert.False(a.ContainsKey("loss_nonfinite"));

        var b = lines[1];
        Assert.Null(b["loss"]);
        Assert.Equal("NaN", (string)b["loss_nonfinite"]!);
        Assert.Equal("-Infinity", (string)b["grad_norm_nonfinite"]!);
        var perDepth = b["per_depth"]!.AsArray();
        Assert.Equal(1.0, (double)perDepth[0]!);
        Assert.Null(perDepth[1]);
        Assert.Null(perDepth[3]);
        Assert.Equal([1, 3], b["per_depth_nonfinite"]!.AsArray().Select(n => (int)n!).ToArray());
    }

    [Fact]
    public void TruncatedLastLineIsIgnoredAndCutOffByTheNextWriter()
    {
        var path = PathOf("metrics.jsonl");
        using (var log = new MetricsLog(path))
            for (int s = 1; s <= 3; s++) log.Append(Step(s, 4.0 - s * 0.1));
        File.AppendAllText(path, "{\"step\":4,\"loss\":3.5"); // killed mid-write
        Assert.Equal([1L, 2L, 3L], MetricsLog.Read(path).Select(o => (long)o["step"]!).ToArray());

        using (var log = new MetricsLog(path)) log.Append(Step(5, 3.4));
        Assert.Equal([1L, 2L, 3L, 5L], MetricsLog.Read(path).Select(o => (long)o["step"]!).ToArray());
        Assert.DoesNotContain("3.5", File.ReadAllText(path));
    }

    [Fact]
    public void CompleteLastLineWithoutNewlineIsKept()
    {
        var path = PathOf("metrics.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1.5}");
        using (var log = new MetricsLog(path)) log.Append(Step(3, 1.2));
        Assert.Equal([1L, 2L, 3L], MetricsLog.Read(path).Select(o => (long)o["step"]!).ToArray());
    }

    [Fact]
    public void CorruptLineInTheMiddleIsAnError()
    {
        var path = PathOf("metrics.jsonl");
        File.WriteAllText(path, "{\"step\":1}\n{\"step\":2,\"lo\n{\"step\":3}\n");
        var e = Assert.Throws<InvalidDataException>(() => MetricsLog.Read(path));
        Assert.Contains(":2:", e.Message);
    }

    [Fact]
    public void AppendFalseStartsAfresh()
    {
        var path = PathOf("metrics.jsonl");
        using (var log = new MetricsLog(path)) log.Append(Step(1, 1));
        using (var log = new MetricsLog(path, append: false)) log.Append(Step(7, 1));
        Assert.Equal([7L], MetricsLog.Read(path).Select(o => (long)o["step"]!).ToArray());
    }

    [Fact]
    public void TruncateAfterStepKeepsEarlierStepsAndStepLessLinesAtomically()
    {
        var path = PathOf("metrics.jsonl");
        using (var log = new MetricsLog(path))
        {
            log.Append(new Dictionary<string, object?> { ["event"] = "start", ["preset"] = "micro-mor-expert" });
            for (int s = 1; s <= 10; s++) log.Append(Step(s, 5.0 / s));
            log.Append(new Dictionary<string, object?> { ["step"] = 8, ["eval_loss"] = 0.9 });
        }
        File.AppendAllText(path, "{\"step\":11,\"lo"); // and a torn line at the end
        int removed = MetricsLog.TruncateAfterStep(path, 6);
        Assert.Equal(5, removed); // steps 7, 8, 9, 10 and the eval at 8; the torn line is dropped too
        var lines = MetricsLog.Read(path);
        Assert.Equal("start", (string)lines[0]["event"]!);
        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L], lines.Skip(1).Select(o => (long)o["step"]!).ToArray());
        Assert.EndsWith("\n", File.ReadAllText(path));
        Assert.Equal(["metrics.jsonl"], Directory.GetFiles(dir).Select(f => Path.GetFileName(f)).ToArray()); // no temp file left

        // Appending after a resume continues the file.
        using (var log = new MetricsLog(path)) log.Append(Step(7, 0.7));
        Assert.Equal(8, MetricsLog.Read(path).Count);

        Assert.Equal(0, MetricsLog.TruncateAfterStep(PathOf("missing.jsonl"), 3));
        Assert.False(File.Exists(PathOf("missing.jsonl")));
    }

    [Fact]
    public void SerializeMatchesTheWrittenLine()
    {
        var fields = new Dictionary<string, object?> { ["step"] = 3, ["loss"] = 1.25, ["name"] = "é\"x" };
        Assert.Equal("{\"step\":3,\"loss\":1.25,\"name\":\"é\\\"x\"}", MetricsLog.Serialize(fields));
        Assert.IsType<JsonObject>(JsonNode.Parse(MetricsLog.Serialize(fields)));
    }
}
