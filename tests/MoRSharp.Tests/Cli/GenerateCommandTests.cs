using System.Text.Json;
using MoRSharp.Cli.Commands;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Tests.Inference;
using MoRSharp.Training;

namespace MoRSharp.Tests.Cli;

/// <summary>mor generate / chat / bench generate end to end on a tiny model folder.</summary>
public class GenerateCommandTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "mor-gen-" + Guid.NewGuid().ToString("N"));

    public GenerateCommandTests()
    {
        using var model = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 61, context: 64);
        var tok = TokenizerFactory.Bytes();
        Checkpoint.WriteModelFolder(dir, model, tok.SaveTo);
    }

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
    }

    [Fact]
    public void Json_output_has_one_depth_per_token_and_greedy_is_reproducible()
    {
        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", dir, "--prompt", "ab", "--max-tokens", "6", "--temperature", "0", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(2, root.GetProperty("prompt_tokens").GetInt32());
        int n = root.GetProperty("tokens").GetArrayLength();
        Assert.InRange(n, 1, 6);
        Assert.Equal(n, root.GetProperty("depths").GetArrayLength());
        Assert.All(root.GetProperty("depths").EnumerateArray(), d => Assert.InRange(d.GetInt32(), 0, 3));
        var again = CliRunner.Run("generate", "--model", dir, "--prompt", "ab", "--max-tokens", "6", "--temperature", "0", "--json");
        using var doc2 = JsonDocument.Parse(again.Out);
        Assert.Equal(root.GetProperty("tokens").ToString(), doc2.RootElement.GetProperty("tokens").ToString());
    }

    [Fact]
    public void Show_depth_colours_tokens_and_html_page_is_written()
    {
        string html = Path.Combine(dir, "depth.html");
        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", dir, "--prompt", "hello", "--max-tokens", "5", "--seed", "3", "--show-depth", "--html", html);
        Assert.True(code == 0, stderr);
        Assert.Contains("\u001b[48;5;", stdout);
        Assert.Contains("depth:", stdout);
        Assert.Contains("mean depth", stderr);
        Assert.Contains("<span", File.ReadAllText(html));
    }

    [Theory]
    [InlineData("--top-p", "1.5", "--top-p")]
    [InlineData("--temperature", "-1", "--temperature")]
    [InlineData("--max-tokens", "0", "--max-tokens")]
    public void Invalid_sampling_values_are_usage_errors(string option, string value, string named)
    {
        var (code, _, stderr) = CliRunner.Run("generate", "--model", dir, "--prompt", "x", option, value);
        Assert.Equal(2, code);
        Assert.Contains(named, stderr);
    }

    [Fact]
    public void Prompt_longer_than_the_context_is_refused_or_truncated()
    {
        string prompt = new('a', 80);
        var (code, _, stderr) = CliRunner.Run("generate", "--model", dir, "--prompt", prompt, "--max-tokens", "2");
        Assert.Equal(1, code);
        Assert.Contains("do not fit the context of 64", stderr);
        var ok = CliRunner.Run("generate", "--model", dir, "--prompt", prompt, "--max-tokens", "2", "--truncate-prompt", "--json");
        Assert.True(ok.Code == 0, ok.Err);
    }

    [Fact]
    public void Missing_model_files_are_named()
    {
        string empty = Path.Combine(dir, "empty");
        Directory.CreateDirectory(empty);
        var (code, _, stderr) = CliRunner.Run("generate", "--model", empty, "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("missing config.json", stderr);
    }

    [Fact]
    public void Chat_answers_each_line_until_exit()
    {
        var saved = ChatCommand.Input;
        try
        {
            ChatCommand.Input = new StringReader("hello\n/system be brief\nhow are you\n/exit\nnot read\n");
            var (code, stdout, stderr) = CliRunner.Run("chat", "--model", dir, "--max-tokens", "4", "--temperature", "0");
            Assert.True(code == 0, stderr);
            Assert.Contains("(system message set)", stdout);
            Assert.Contains("plain <|role|> format", stderr);
        }
        finally { ChatCommand.Input = saved; }
    }

    [Fact]
    public void Bench_generate_reports_every_model_and_batch_setting()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "generate", "--recursions", "2", "--batches", "2", "--max-batch-at", "2",
            "--tokens", "3", "--requests-per-row", "1", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(4, results.Count);                       // vanilla and MoR-2, at batch 2 and at the memory-budget max
        var mor = results.First(r => r.GetProperty("model").GetString()!.StartsWith("MoR-2") && r.GetProperty("batch_setting").GetString()!.StartsWith("max"));
        var van = results.First(r => r.GetProperty("model").GetString()!.StartsWith("vanilla") && r.GetProperty("batch_setting").GetString()!.StartsWith("max"));
        Assert.True(mor.GetProperty("batch").GetInt32() > van.GetProperty("batch").GetInt32(), "MoR's smaller KV cache should fit a larger batch");
        Assert.True(mor.GetProperty("kv_bytes_per_token").GetDouble() < van.GetProperty("kv_bytes_per_token").GetDouble());
        Assert.All(results, r => Assert.True(r.GetProperty("tokens_per_second").GetDouble() > 0));
        // one request per row: no request ever waited for a row, so there is no full-batch window to report
        Assert.All(results, r => Assert.Equal(JsonValueKind.Null, r.GetProperty("full_batch_tokens_per_second").ValueKind));
    }

    [Fact]
    public void Bench_generate_reports_throughput_while_every_row_was_busy()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "generate", "--recursions", "2", "--batches", "2", "--max-batch-at", "0",
            "--tokens", "4", "--requests-per-row", "3", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(2, results.Count);
        foreach (var r in results)
        {
            double full = r.GetProperty("full_batch_tokens_per_second").GetDouble();
            Assert.True(full > 0 && double.IsFinite(full), $"full-batch tokens/s {full}");
            Assert.Single(r.GetProperty("full_batch_ratio_to_vanilla_per_round").EnumerateArray());
        }
        Assert.Equal(1.0, results.Single(r => r.GetProperty("model").GetString()!.StartsWith("vanilla")).GetProperty("full_batch_ratio_to_vanilla").GetDouble());
    }

    [Fact]
    public void Bench_generate_with_rounds_reports_the_median_of_per_round_ratios()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "generate", "--recursions", "2", "--batches", "1", "--max-batch-at", "0",
            "--tokens", "3", "--requests-per-row", "1", "--rounds", "3", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(2, results.Count);
        foreach (var r in results)
        {
            var perRound = r.GetProperty("ratio_to_vanilla_per_round").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(3, perRound.Length);
            Assert.Equal(perRound.Order().ToArray(), perRound);                                  // sorted
            Assert.Equal(perRound[1], r.GetProperty("ratio_to_vanilla").GetDouble());           // the median
            if (r.GetProperty("model").GetString()!.StartsWith("vanilla")) Assert.All(perRound, x => Assert.Equal(1.0, x));
        }
    }

    [Fact]
    public void Generate_with_bf16_weights_continues_as_the_model_with_rounded_weights_does()
    {
        // the same model with its projection and embedding weights rounded to bfloat16, written as float32
        string rounded = Path.Combine(dir, "rounded");
        using (var model = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 61, context: 64))
        {
            MoRSharp.Tests.Model.Bf16WeightsTests.RoundInPlace(model);
            Checkpoint.WriteModelFolder(rounded, model, TokenizerFactory.Bytes().SaveTo);
        }
        string[] args = ["--prompt", "abc", "--max-tokens", "8", "--temperature", "0", "--json"];
        var narrow = CliRunner.Run(["generate", "--model", dir, "--weights", "bfloat16", .. args]);
        var expected = CliRunner.Run(["generate", "--model", rounded, .. args]);
        Assert.True(narrow.Code == 0, narrow.Err);
        Assert.True(expected.Code == 0, expected.Err);
        using var a = JsonDocument.Parse(narrow.Out);
        using var b = JsonDocument.Parse(expected.Out);
        Assert.Equal(b.RootElement.GetProperty("tokens").ToString(), a.RootElement.GetProperty("tokens").ToString());
        Assert.Equal(b.RootElement.GetProperty("depths").ToString(), a.RootElement.GetProperty("depths").ToString());

        var (code, _, stderr) = CliRunner.Run(["generate", "--model", dir, "--weights", "half", .. args]);
        Assert.Equal(2, code);
        Assert.Contains("--weights: expected float32 or bfloat16", stderr);
    }

    [Fact]
    public void Bench_generate_with_bf16_weights_says_so_and_holds_half_the_bytes()
    {
        string[] args = ["bench", "generate", "--recursions", "2", "--batches", "1", "--max-batch-at", "0", "--tokens", "3", "--requests-per-row", "1", "--json"];
        var f32 = CliRunner.Run(args);
        var bf16 = CliRunner.Run([.. args, "--weights", "bfloat16"]);
        Assert.True(f32.Code == 0, f32.Err);
        Assert.True(bf16.Code == 0, bf16.Err);
        using var a = JsonDocument.Parse(f32.Out);
        using var b = JsonDocument.Parse(bf16.Out);
        Assert.Equal("float32", a.RootElement.GetProperty("weights").GetString());
        Assert.Equal("bfloat16", b.RootElement.GetProperty("weights").GetString());
        double Bytes(JsonDocument d) => d.RootElement.GetProperty("results").EnumerateArray().First().GetProperty("param_bytes").GetDouble();
        double ratio = Bytes(b) / Bytes(a);
        Assert.InRange(ratio, 0.5, 0.51);   // everything but the norms (and routers) is narrowed
    }

    [Fact]
    public void Bench_generate_prompt_reports_prefill_speed_per_model()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "generate", "--prompt", "24", "--recursions", "2", "--rounds", "3", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(24, doc.RootElement.GetProperty("prompt_tokens").GetInt32());
        var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["vanilla-8L", "MoR-2 (8L)"], results.Select(r => r.GetProperty("model").GetString()));
        foreach (var r in results)
        {
            var seconds = r.GetProperty("seconds_per_round").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(3, seconds.Length);
            Assert.Equal(seconds.Order().ElementAt(1), r.GetProperty("seconds_to_first_token").GetDouble());   // the median round
            Assert.Equal(24 / seconds.Order().ElementAt(1), r.GetProperty("tokens_per_second").GetDouble(), 6);
        }
        Assert.Equal(JsonValueKind.Null, results[0].GetProperty("mean_depth").ValueKind);
        Assert.InRange(results[1].GetProperty("mean_depth").GetDouble(), 1.0, 2.0);   // MoR-2: every token runs 1 or 2 recursions

        var refused = CliRunner.Run("bench", "generate", "--prompt", "100000");
        Assert.Equal(2, refused.Code);
        Assert.Contains("--prompt: at most 8192 tokens", refused.Err);
    }

    [Fact]
    public void Bench_generate_medium_shape_is_the_papers_360M_layout()
    {
        // SmolLM-360M (d 960, 15/5 heads, FFN 2560): MoR-3 = 1 + 10·3 + 1 = 32 layers against a 32-layer vanilla (spec §5.2).
        var (code, stdout, stderr) = CliRunner.Run("bench", "generate", "--shape", "medium", "--prompt", "2", "--recursions", "3", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal("medium", doc.RootElement.GetProperty("shape").GetString());
        var results = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["vanilla-32L", "MoR-3 (32L)"], results.Select(r => r.GetProperty("model").GetString()));
        // float32 parameters: vanilla 32 layers × 9,830,400 + 32 × 960 (norms) + the tied 49152 × 960 embedding + final norm
        long layer = 2 * 960 * 960 + 2 * 960 * 320 + 3 * 960 * 2560 + 2 * 960;
        Assert.Equal(4.0 * (32 * layer + 49152 * 960 + 960), results[0].GetProperty("param_bytes").GetDouble());

        var refused = CliRunner.Run("bench", "generate", "--shape", "large");
        Assert.Equal(2, refused.Code);
        Assert.Contains("--shape: expected micro, small or medium, got 'large'", refused.Err);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("-0.1")]
    [InlineData("half")]
    public void Bench_generate_refuses_an_exit_batch_fraction_outside_0_to_1(string value)
    {
        var (code, _, stderr) = CliRunner.Run("bench", "generate", "--exit-batch-fraction", value);
        Assert.NotEqual(0, code);
        Assert.Contains("--exit-batch-fraction", stderr);
    }
}
