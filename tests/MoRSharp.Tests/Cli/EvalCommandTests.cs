using System.Text.Json.Nodes;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Tests.Data;
using MoRSharp.Training;

namespace MoRSharp.Tests.Cli;

/// <summary><c>mor eval</c> end to end on a tiny byte-level MoR model written to a model folder.</summary>
public class EvalCommandTests : IDisposable
{
    private readonly TempDir tmp = new();
    private readonly string model;

    public EvalCommandTests()
    {
        model = tmp.File("model");
        var config = TestConfigs.Tiny("expert", vocab: 257, context: 128);
        using var m = new MoRForCausalLM(config, seed: 71);
        Checkpoint.WriteModelFolder(model, m, TokenizerFactory.Bytes().SaveTo);
    }

    public void Dispose() => tmp.Dispose();

    private static JsonNode Json(string text) => JsonNode.Parse(text)!;

    [Fact]
    public void Tasks_print_acc_acc_norm_stderr_and_n_per_task_as_json()
    {
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "piqa,winogrande,lambada", "--limit", "6",
            "--batch", "4", "--data-dir", SharedData.Path("eval"), "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        var tasks = Json(stdout)["tasks"]!;
        var piqa = tasks["piqa"]!;
        Assert.Equal(6, piqa["n"]!.GetValue<int>());
        foreach (var key in new[] { "acc", "acc_norm", "stderr", "acc_norm_stderr" })
            Assert.InRange(piqa[key]!.GetValue<double>(), 0, 1);
        Assert.Null(tasks["winogrande"]!["acc_norm"]);
        Assert.True(tasks["lambada"]!["perplexity"]!.GetValue<double>() > 1);
        Assert.Equal("causal", Json(stdout)["routing"]!.GetValue<string>());
    }

    [Fact]
    public void Few_shot_runs_where_a_train_split_exists_and_is_refused_clearly_elsewhere()
    {
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "arc_easy", "--shots", "2", "--limit", "3",
            "--data-dir", SharedData.Path("eval"), "--threads", "1");
        Assert.True(code == 0, stderr);
        Assert.Contains("arc_easy", stdout);
        Assert.Contains("acc_norm", stdout);

        (code, _, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "arc_easy,hellaswag,piqa", "--shots", "5", "--data-dir", SharedData.Path("eval"));
        Assert.Equal(2, code);
        Assert.Contains("hellaswag, piqa have no split to draw examples", stderr);
        Assert.Contains("0-shot", stderr);

        (code, _, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "hellaswg");
        Assert.Equal(2, code);
        Assert.Contains("did you mean 'hellaswag'", stderr);

        (code, _, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "piqa", "--data-dir", tmp.File("nowhere"));
        Assert.Equal(1, code);
        Assert.Contains("nowhere", stderr);

        (code, _, stderr) = CliRunner.Run("eval", "--model", model, "--tasks", "piqa", "--topk-routing");
        Assert.Equal(2, code);
    }

    [Fact]
    public void Perplexity_of_a_folder_sums_its_files_and_names_bits_per_byte()
    {
        tmp.Write("texts/a.txt", "the cat sat on the mat and then it ran home.\n");
        tmp.Write("texts/sub/b.txt", "add 37+85=122\nrev abcde>edcba\n");
        tmp.Write("texts/ignored.md", "not a text file for --text folders");
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", model, "--text", tmp.File("texts"), "--seq", "32", "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        var j = Json(stdout);
        var files = j["files"]!.AsArray();
        Assert.Equal(2, files.Count);
        Assert.Equal(45 + 30, j["bytes"]!.GetValue<long>());
        Assert.Equal(44 + 29, j["tokens"]!.GetValue<long>());          // bytes tokenizer: each file's first token is not scored
        Assert.Equal(files.Sum(f => f!["tokens"]!.GetValue<long>()), j["tokens"]!.GetValue<long>());
        double nll = files.Sum(f => f!["nll_per_token"]!.GetValue<double>() * f["tokens"]!.GetValue<long>());
        Assert.Equal(nll / Math.Log(2) / 75, j["bits_per_byte"]!.GetValue<double>(), 1e-9);
    }

    [Fact]
    public void Perplexity_of_token_shards_uses_the_bytes_in_meta_json_and_checks_the_tokenizer()
    {
        string text = tmp.Write("corpus.txt", string.Join("\n\n", SyntheticCorpus.Documents(3).Take(60)) + "\n");
        var prepared = DataPreparer.Prepare(new DataPrepareOptions { Inputs = [text], OutputDirectory = tmp.File("data"), ValDocs = 10, Seed = 1 }, TokenizerFactory.Bytes());
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", model, "--tokens", tmp.File("data"), "--seq", "64", "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        var j = Json(stdout);
        Assert.Equal(prepared.Val.Bytes, j["bytes"]!.GetValue<long>());
        Assert.Equal(prepared.Val.Tokens - 1, j["tokens"]!.GetValue<long>());
        Assert.True(j["bits_per_byte"]!.GetValue<double>() > 0);

        // the same shard without meta.json: bytes from the decoded documents agree
        File.Copy(tmp.File("data/val.bin"), tmp.File("val-copy.bin"));
        (code, stdout, stderr) = CliRunner.Run("eval", "--model", model, "--tokens", tmp.File("val-copy.bin"), "--seq", "64", "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal(prepared.Val.Bytes, Json(stdout)["bytes"]!.GetValue<long>());

        // a shard of another tokenizer is refused
        DataPreparer.Prepare(new DataPrepareOptions { Inputs = [text], OutputDirectory = tmp.File("gpt2"), ValDocs = 10, Seed = 1 }, TokenizerFactory.Gpt2());
        (code, _, stderr) = CliRunner.Run("eval", "--model", model, "--tokens", tmp.File("gpt2"), "--threads", "1");
        Assert.Equal(1, code);
        Assert.Contains("tokenized with 'gpt2'", stderr);
    }
}
