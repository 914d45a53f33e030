using System.Diagnostics;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Reporting;

namespace MoRSharp.Tests.Cli;

/// <summary>`mor train` end to end, in child processes (so that a run can really be killed).</summary>
public class TrainCommandTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("mor-train-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    private string PrepareData()
    {
        string data = Path.Combine(dir, "data");
        string text = Path.Combine(dir, "corpus.txt");
        SyntheticCorpus.WriteText(text, 200_000, 1);
        DataPreparer.Prepare(new DataPrepareOptions { Inputs = [text], OutputDirectory = data, ValFraction = 0.05, Seed = 1 }, TokenizerFactory.Bytes());
        return data;
    }

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mor.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["CI"] = "1";   // plain progress output
        return Process.Start(psi)!;
    }

    private static (int code, string stdout, string stderr) Run(params string[] args)
    {
        using var p = Start(args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException("mor did not finish in 3 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static List<(long step, double loss)> Losses(string outDir) =>
        MetricsLog.Read(Path.Combine(outDir, "metrics.jsonl")).Select(l => ((long)l["step"]!, (double)l["loss"]!)).ToList();

    [Fact]
    public void Run_killed_with_SIGKILL_and_resumed_repeats_the_uninterrupted_losses()
    {
        string data = PrepareData();
        string[] common = ["train", "--preset", "tiny-mor-expert", "--data", data, "--steps", "150", "--batch", "4", "--seq", "64",
                           "--checkpoint-every", "5", "--keep-last", "3", "--eval-every", "0", "--threads", "1", "--seed", "3"];
        string full = Path.Combine(dir, "full"), cut = Path.Combine(dir, "cut");
        var r = Run([.. common, "--out", full]);
        Assert.True(r.code == 0, r.stderr);

        using (var p = Start([.. common, "--out", cut]))
        {
            _ = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            string metrics = Path.Combine(cut, "metrics.jsonl");
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited)
            {
                if (File.Exists(metrics) && File.ReadLines(metrics).Count() >= 12) break;
                Thread.Sleep(5);
            }
            Assert.False(p.HasExited, "the run finished before it could be killed");
            p.Kill(entireProcessTree: true);    // SIGKILL: no chance to clean up
            p.WaitForExit();
        }
        int linesAtKill = File.ReadLines(Path.Combine(cut, "metrics.jsonl")).Count();
        Assert.InRange(linesAtKill, 10, 149);

        r = Run("train", "--resume", cut, "--threads", "1");
        Assert.True(r.code == 0, r.stderr);
        Assert.Contains("resuming", r.stderr);

        var expected = Losses(full);
        var actual = Losses(cut);
        Assert.Equal(150, expected.Count);
        Assert.Equal(expected.Select(x => x.step), actual.Select(x => x.step));
        Assert.Equal(expected.Select(x => x.loss), actual.Select(x => x.loss));   // bitwise equal
    }

    [Fact]
    public void Bad_input_gives_clear_errors_and_non_zero_exit()
    {
        var r = Run("train", "--out", Path.Combine(dir, "x"), "--data", Path.Combine(dir, "missing.txt"), "--steps", "1");
        Assert.Equal(1, r.code);
        Assert.Contains("missing.txt", r.stderr);

        string empty = Path.Combine(dir, "empty.txt");
        File.WriteAllText(empty, "");
        r = Run("train", "--out", Path.Combine(dir, "y"), "--data", empty, "--steps", "1", "--tokenizer", "bytes");
        Assert.Equal(1, r.code);
        Assert.Contains("empty", r.stderr, StringComparison.OrdinalIgnoreCase);

        string badConfig = Path.Combine(dir, "bad.json");
        File.WriteAllText(badConfig, """{"hidden_size": 64, "num_attention_heads": 3}""");
        r = Run("train", "--out", Path.Combine(dir, "z"), "--config", badConfig, "--steps", "1");
        Assert.Equal(1, r.code);
        Assert.Contains("bad.json", r.stderr);

        r = Run("train", "--out", Path.Combine(dir, "w"), "--steps", "0");
        Assert.Equal(2, r.code);
    }
}
