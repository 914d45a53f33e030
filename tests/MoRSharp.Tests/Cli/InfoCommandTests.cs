using System.Text.Json.Nodes;
using MoRSharp.Cli;
using MoRSharp.Config;
using Xunit;

namespace MoRSharp.Tests.Cli;

public class InfoCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => MoRSharp.Tests.Cli.CliRunner.Run(args);

    [Fact]
    public void VanillaJson()
    {
        var (code, stdout, stderr) = Run("info", "--preset", "smollm-360m-vanilla", "--context", "2048", "--json");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        var j = JsonNode.Parse(stdout)!;
        Assert.Equal(361_821_120L, (long)j["parameters"]!["total"]!);
        Assert.Equal(314_635_200L, (long)j["parameters"]!["non_embedding"]!);
        Assert.Equal(833_617_920d, (double)j["flops_per_token"]!["paper"]!);
        Assert.Equal(849_408_000d, (double)j["flops_per_token"]!["exact"]!, 1e-3);
        Assert.Equal(1.0, (double)j["kv_cache_ratio"]!);
        Assert.Equal(2048, (int)j["context"]!);
        Assert.Equal("smollm-360m-vanilla", (string)j["source"]!["preset"]!);
    }

    [Fact]
    public void MoRJsonAndInlineOptionSyntax()
    {
        var (code, stdout, _) = Run("info", "--preset=smollm-360m-mor-expert-nr3", "--json");
        Assert.Equal(0, code);
        var j = JsonNode.Parse(stdout)!;
        Assert.Equal(22.0 / 32, (double)j["kv_cache_ratio"]!, 12);
        Assert.Equal(12, (int)j["layout"]!["num_unique"]!);
        Assert.Equal(11, (int)j["layout"]!["unique_index"]![31]!);
        Assert.InRange((long)j["parameters"]!["non_embedding"]!, 117_500_000L, 118_500_000L);
    }

    [Fact]
    public void TableOutput()
    {
        var (code, stdout, _) = Run("info", "--preset", "smollm-360m-mor-expert-nr3");
        Assert.Equal(0, code);
        Assert.Contains("U0 | (1 2 3 4 5 6 7 8 9 10) ×3 | U11", stdout);
        Assert.Contains("117,991,680", stdout);       // non-embedding
        Assert.Contains("555,636,053", stdout);       // paper FLOPs/token
        Assert.Contains("0.6875", stdout);            // KV ratio
        Assert.Contains("position", stdout);
    }

    [Fact]
    public void ConfigFile()
    {
        var path = Path.Combine(Path.GetTempPath(), "morsharp-info-" + Guid.NewGuid().ToString("N") + ".json");
        try
        {
            ConfigJson.Save(Presets.Get("tiny-mor-token"), path);
            var (code, stdout, stderr) = Run("info", "--config", path, "--json");
            Assert.Equal(0, code);
            Assert.Equal("", stderr);
            var j = JsonNode.Parse(stdout)!;
            Assert.Equal("token", (string)j["layout"]!["routing"]!);
            Assert.Equal(128, (int)j["context"]!);   // default = max_position_embeddings

            File.WriteAllText(path, """{ "hidden_size": 64, "mor": { "capacty": [1] } }""");
            (code, stdout, stderr) = Run("info", "--config", path);
            Assert.Equal(1, code);
            Assert.Equal("", stdout);
            Assert.Contains(path, stderr);
            Assert.Contains("unknown key 'mor.capacty' (did you mean 'mor.capacity'?)", stderr);
            Assert.DoesNotContain("   at ", stderr);   // no stack trace
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MissingFileIsAnErrorNamingIt()
    {
        var (code, _, stderr) = Run("info", "--config", "/nonexistent/dir/config.json");
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent/dir/config.json", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public void UnknownPresetNamesValidPresets()
    {
        var (code, stdout, stderr) = Run("info", "--preset", "smollm-999m-vanilla");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Contains("smollm-999m-vanilla", stderr);
        Assert.Contains("smollm-360m-vanilla", stderr);
        Assert.Contains("micro-mor-expert", stderr);
    }

    [Fact]
    public void ListPresets()
    {
        var (code, stdout, _) = Run("info", "--list-presets");
        Assert.Equal(0, code);
        foreach (var n in Presets.Names) Assert.Contains(n, stdout);
        (code, stdout, _) = Run("info", "--list-presets", "--json");
        Assert.Equal(0, code);
        Assert.Equal(Presets.Names.Count, JsonNode.Parse(stdout)!.AsArray().Count);
    }

    [Theory]
    [InlineData("info", "--preset", "tiny-vanilla", "--contxt", "5")]      // unknown option
    [InlineData("info", "--preset")]                                        // missing value
    [InlineData("info")]                                                    // neither config nor preset
    [InlineData("info", "--preset", "tiny-vanilla", "--config", "x.json")] // both
    [InlineData("info", "--preset", "tiny-vanilla", "--context", "abc")]   // bad integer
    [InlineData("info", "--preset", "tiny-vanilla", "--context", "0")]     // out of range
    [InlineData("info", "--preset", "tiny-vanilla", "--json=yes")]          // flag with value
    [InlineData("info", "stray")]                                           // positional
    [InlineData("infoo")]                                                   // unknown command
    [InlineData("--verbose")]                                               // option before command
    [InlineData()]                                                          // nothing
    public void UsageErrorsExitWith2(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.NotEqual("", stderr);
    }

    [Fact]
    public void UnknownOptionSuggestsAndUnknownCommandListsCommands()
    {
        var (_, _, err) = Run("info", "--contxt", "5");
        Assert.Contains("unknown option '--contxt' (did you mean '--context'?)", err);
        (_, _, err) = Run("infoo");
        Assert.Contains("unknown command 'infoo' (did you mean 'info'?)", err);
    }

    [Fact]
    public void Help()
    {
        var (code, stdout, _) = Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("usage: mor <command>", stdout);
        Assert.Contains("info", stdout);
        (code, stdout, _) = Run("info", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--preset NAME", stdout);
        Assert.Contains("--list-presets", stdout);
        (code, stdout, _) = Run("help", "info");
        Assert.Equal(0, code);
        Assert.Contains("usage: mor info", stdout);
    }
}
