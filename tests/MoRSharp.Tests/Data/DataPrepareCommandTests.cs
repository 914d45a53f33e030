using MoRSharp.Cli;
using MoRSharp.Data;

namespace MoRSharp.Tests.Data;

public class DataPrepareCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => MoRSharp.Tests.Cli.CliRunner.Run(args);

    [Fact]
    public void PreparesAndPrintsASummary()
    {
        using var dir = new TempDir();
        dir.Write("a.txt", "Hello world\n\nSecond doc\n");
        dir.Write("b.jsonl", "{\"body\": \"third\"}\n");
        var (code, stdout, stderr) = Run("data", "prepare", "--input", dir.File("a.txt"), "--input", dir.File("b.jsonl"),
            "--out", dir.File("out"), "--tokenizer", "bytes", "--field", "body", "--val-fraction", "0", "--seed", "3");
        Assert.True(code == 0, stderr);
        Assert.Contains("split", stdout);
        Assert.Contains("bytes/token", stdout);
        Assert.Matches(@"train\s+3\s+", stdout);
        Assert.Matches(@"val\s+0\s+0\s+0", stdout);
        Assert.DoesNotContain("\r", stderr);             // not a terminal: no progress bar
        using var shard = new TokenShardReader(dir.File("out/train.bin"));
        Assert.Equal("Hello world".Length + "Second doc".Length + "third".Length + 3, shard.Count);
        Assert.True(File.Exists(dir.File("out/meta.json")));
    }

    [Fact]
    public void ErrorsNameTheFileAndLineAndExitWith1()
    {
        using var dir = new TempDir();
        string bad = dir.Write("bad.jsonl", "{\"text\": \"ok\"}\nnot json\n");
        var (code, _, stderr) = Run("data", "prepare", "--input", bad, "--out", dir.File("out"), "--tokenizer", "bytes");
        Assert.Equal(1, code);
        Assert.Contains($"{bad}:2:", stderr);
        Assert.DoesNotContain("   at ", stderr);        // no stack trace

        var (code2, _, stderr2) = Run("data", "prepare", "--input", dir.File("missing"), "--out", dir.File("out"));
        Assert.Equal(1, code2);
        Assert.Contains("missing", stderr2);

        var (code3, stdout3, _) = Run("data", "prepare", "--input", bad, "--out", dir.File("out2"), "--tokenizer", "bytes", "--skip-bad-lines");
        Assert.Equal(0, code3);
        Assert.Contains("skipped bad lines: 1", stdout3);
    }

    [Fact]
    public void UsageErrors()
    {
        Assert.Equal(2, Run("data", "prepare", "--out", "x").Code);                       // no --input
        Assert.Equal(2, Run("data", "prepare", "--input", "a", "--out", "x", "--val-fraction", "0.1", "--val-docs", "3").Code);
        Assert.Equal(2, Run("data", "prepare", "--input", "a", "--out", "x", "--val-fraction", "1.5").Code);
        Assert.Equal(2, Run("data", "prepare", "--input", "a", "--out", "x", "--out", "y").Code);   // --out is not repeatable
        var (code, _, err) = Run("data");
        Assert.Equal(2, code);
        Assert.Contains("mor data prepare", err);
        var (helpCode, help, _) = Run("data", "prepare", "--help");
        Assert.Equal(0, helpCode);
        Assert.Contains("--val-docs", help);
        Assert.Contains("data prepare", Run("--help").Out);
    }
}
