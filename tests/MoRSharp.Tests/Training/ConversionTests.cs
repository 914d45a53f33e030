using MoRSharp.Config;
using MoRSharp.Data.Tokenizers;
using MoRSharp.IO;
using MoRSharp.Model;
using MoRSharp.Tests.Cli;
using MoRSharp.Tests.Data;
using MoRSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Training;

/// <summary>
/// mor convert (spec §7): every init method fills every sharing strategy's unique layers with exactly the expected source
/// layers (written out by hand below from the rules of the official code), the exact identities, and convert + uptrain end to end.
/// </summary>
public class ConversionTests(ITestOutputHelper output)
{
    /// <summary>Expected source layers per unique layer: Cycle/Sequence from a 6-layer source (B = 2), Middle-* from 8 layers (1 + 2·3 + 1).</summary>
    public static TheoryData<string, string, int[][]> Expected() => new()
    {
        // cycle, L = 6, N_r = 3: positions (0,1)(0,1)(0,1)
        { "cycle", "stepwise", [[0], [5]] },                              // round(linspace(0, 5, 2))
        { "cycle", "average", [[0, 2, 4], [1, 3, 5]] },
        { "cycle", "lower", [[0], [1]] },
        { "cycle", "upper", [[4], [5]] },
        // sequence, L = 6: positions (0,0,0)(1,1,1)
        { "sequence", "stepwise", [[0], [5]] },
        { "sequence", "average", [[0, 1, 2], [3, 4, 5]] },
        { "sequence", "lower", [[0], [1]] },
        { "sequence", "upper", [[4], [5]] },
        // middle_cycle, L = 8: U0 | (1 2)(1 2)(1 2) | U3; first and last copied
        { "middle_cycle", "stepwise", [[0], [1], [6], [7]] },             // round(linspace(1, 6, 2))
        { "middle_cycle", "average", [[0], [1, 3, 5], [2, 4, 6], [7]] },
        { "middle_cycle", "lower", [[0], [1], [2], [7]] },
        { "middle_cycle", "upper", [[0], [5], [6], [7]] },
        // middle_sequence, L = 8: U0 | 1 1 1 2 2 2 | U3
        { "middle_sequence", "stepwise", [[0], [1], [6], [7]] },
        { "middle_sequence", "average", [[0], [1, 2, 3], [4, 5, 6], [7]] },
        { "middle_sequence", "lower", [[0], [1], [2], [7]] },
        { "middle_sequence", "upper", [[0], [5], [6], [7]] },
    };

    private static ConversionOptions Options(string sharing, string init, string routing = "none", long seed = 0, int nr = 3) => new()
    {
        Sharing = ConfigNames.Parse<SharingStrategy>(sharing, "sharing"),
        NumRecursion = nr,
        Init = MoRConversion.ParseInit(init),
        Routing = ConfigNames.Parse<RoutingKind>(routing, "routing"),
        Seed = seed,
    };

    private static MoRForCausalLM Source(int layers, long seed = 11) => new(TestConfigs.Vanilla(layers), seed);

    private static void AssertLayersFrom(MoRForCausalLM target, MoRForCausalLM source, int[][] expected, string what)
    {
        var src = source.state_dict();
        var dst = target.state_dict();
        Assert.Equal(expected.Length, target.Layout.NumUnique);
        for (int u = 0; u < expected.Length; u++)
        {
            foreach (var key in MoRConversion.LayerKeys)
            {
                using var scope = NewDisposeScope();
                var got = dst[$"model.layers.{u}.{key}"];
                var want = torch.stack(expected[u].Select(l => src[$"model.layers.{l}.{key}"]).ToArray()).mean([0]);
                if (expected[u].Length == 1)
                    Assert.True(got.eq(want).all().item<bool>(), $"{what}: unique layer {u} {key} is not a copy of source layer {expected[u][0]}");
                else
                    Assert.True((got - want).abs().max().item<float>() < 1e-6, $"{what}: unique layer {u} {key} is not the mean of source layers {string.Join(",", expected[u])}");
            }
        }
        foreach (var key in new[] { "model.embed_tokens.weight", "model.norm.weight" })
            Assert.True(dst[key].eq(src[key]).all().item<bool>(), $"{what}: {key} not copied");
    }

    [Theory]
    [MemberData(nameof(Expected))]
    public void Each_init_fills_each_sharing_strategy_as_specified(string sharing, string init, int[][] expected)
    {
        using var source = Source(sharing.StartsWith("middle") ? 8 : 6);
        var (target, plan) = MoRConversion.Convert(source, Options(sharing, init));
        using var _ = target;
        Assert.Equal(expected, plan.SourcesOfUnique);
        Assert.Equal(source.Config.NumHiddenLayers, target.Config.NumHiddenLayers);
        AssertLayersFrom(target, source, expected, $"{sharing}/{init}");
    }

    [Fact]
    public void Random_init_is_a_seeded_sorted_subset_and_routers_are_fresh_and_seeded()
    {
        using var source = Source(8);
        var (a, planA) = MoRConversion.Convert(source, Options("middle_cycle", "random", "expert", seed: 1));
        var (b, planB) = MoRConversion.Convert(source, Options("middle_cycle", "random", "expert", seed: 1));
        using var _a = a;
        using var _b = b;
        Assert.Equal(planA.SourcesOfUnique, planB.SourcesOfUnique);
        var chosen = planA.SourcesOfUnique[1..^1].Select(s => Assert.Single(s)).ToArray();
        Assert.Equal(chosen.Order(), chosen);
        Assert.Equal(chosen.Distinct().Count(), chosen.Length);
        Assert.All(chosen, l => Assert.InRange(l, 1, 6));
        AssertLayersFrom(a, source, planA.SourcesOfUnique, "random");
        var seen = Enumerable.Range(0, 12).Select(s => string.Join(",", MoRConversion.Plan(8, Options("middle_cycle", "random", seed: s)).SourcesOfUnique.SelectMany(x => x))).Distinct().Count();
        Assert.True(seen > 3, "different seeds should pick different layers");

        var routers = a.state_dict().Keys.Where(k => k.StartsWith("model.routers.")).ToList();
        Assert.Equal(3, routers.Count);                                   // one per recursion, none in the source
        foreach (var k in routers)
        {
            Assert.True(a.state_dict()[k].eq(b.state_dict()[k]).all().item<bool>(), "same seed → same routers");
            double std = a.state_dict()[k].std().item<float>();
            Assert.InRange(std, 0.1, 0.3);                                // N(0, initializer_range = 0.2)
        }
    }

    [Fact]
    public void Indivisible_depths_are_resampled_evenly_like_the_official_code()
    {
        var plan = MoRConversion.Plan(8, Options("cycle", "lower"));     // 8 layers, N_r = 3 → B = 2, 6 of 8 kept
        Assert.Equal(new[] { 0, 1, 3, 4, 6, 7 }, plan.Kept);              // round(linspace(0, 7, 6)) = 0 1.4 2.8 4.2 5.6 7
        Assert.Equal(new[] { new[] { 0 }, new[] { 1 } }, plan.SourcesOfUnique);
        Assert.Equal(new[] { new[] { 0, 3, 6 }, new[] { 1, 4, 7 } }, MoRConversion.Plan(8, Options("cycle", "average")).SourcesOfUnique);
        Assert.Equal(new[] { 0, 2, 5, 7 }, MoRConversion.Linspace(0, 7, 4));   // 0, 2.33, 4.67, 7
        Assert.Equal(new[] { 0, 2, 5 }, MoRConversion.Linspace(0, 5, 3));      // 0, 2.5 → 2 (half to even, as Python's round), 5
        Assert.Contains("too few", Assert.Throws<ConfigException>(() => MoRConversion.Plan(4, Options("middle_cycle", "stepwise"))).Message);
        Assert.Contains("needs a sharing strategy", Assert.Throws<ConfigException>(() => MoRConversion.Plan(4, Options("none", "stepwise"))).Message);
    }

    /// <summary>
    /// Exact identities. (1) One recursion keeps every layer unique, so any init reproduces the source bit for bit.
    /// (2) When all source layers are equal, sharing them loses nothing: Sequence (and Cycle) with N_r = L and one unique
    /// layer reproduce the source exactly. With routing, no setting is an identity (the gate scales f, and f keeps its
    /// residual), so these cases use routing none.
    /// </summary>
    [Fact]
    public void Converted_models_reproduce_the_source_where_the_identity_is_exact()
    {
        using var scope = NewDisposeScope();
        var ids = ModelTestUtil.RandomIds(2, 24, 97, 3);
        Tensor Logits(MoRForCausalLM m) { m.eval(); using var _ = no_grad(); return m.Forward(ids).Logits; }

        using var source = Source(6);
        var want = Logits(source);
        foreach (var init in new[] { "stepwise", "average", "lower", "upper", "random" })
            foreach (var sharing in new[] { "cycle", "sequence", "middle_cycle", "middle_sequence" })
            {
                var (m, _) = MoRConversion.Convert(source, Options(sharing, init, nr: 1));
                using (m) Assert.Equal(0.0, (Logits(m) - want).abs().max().item<float>());
            }

        using var uniform = Source(6);
        using (no_grad())
            foreach (var (name, p) in uniform.state_dict().Where(kv => kv.Key.StartsWith("model.layers.")))
                p.copy_(uniform.state_dict()["model.layers.0." + string.Join('.', name.Split('.')[3..])]);
        var wantUniform = Logits(uniform);
        foreach (var sharing in new[] { "sequence", "cycle" })
        {
            var (m, plan) = MoRConversion.Convert(uniform, Options(sharing, "stepwise", nr: 6));
            using (m)
            {
                Assert.Equal(1, m.Layout.NumUnique);
                double diff = (Logits(m) - wantUniform).abs().max().item<float>();
                output.WriteLine($"{sharing}, N_r = 6, one shared layer from 6 equal layers: max |Δlogits| = {diff}");
                Assert.Equal(0.0, diff);
            }
        }
    }

    [Fact]
    public void Convert_and_uptrain_end_to_end()
    {
        using var dir = new TempDir();
        string src = dir.File("vanilla"), conv = dir.File("mor"), run = dir.File("run");
        using (var model = new MoRForCausalLM(TestConfigs.Tiny(sharing: "none", blockSize: 5, vocab: 257), seed: 4))
            Checkpoint.WriteModelFolder(src, model, TokenizerFactory.Bytes().SaveTo);

        var (code, stdout, stderr) = CliRunner.Run("convert", "--from", src, "--to", conv, "--sharing", "middle_cycle", "--recursions", "3",
            "--init", "stepwise", "--routing", "expert", "--capacity", "1,0.5,0.25", "--threads", "1");
        output.WriteLine(stdout + stderr);
        Assert.Equal(0, code);
        Assert.True(File.Exists(Path.Combine(conv, "tokenizer_info.json")), "tokenizer files are copied");
        var converted = HfModelFolder.ReadConfig(conv);
        Assert.Equal(new[] { 1.0, 0.5, 0.25 }, converted.MoR!.Capacity);
        Assert.Contains("(1) ×3", stdout);                               // 5 layers = 1 + 1·3 + 1: unique 0 | (1) ×3 | 2
        using (var ck = SafeTensorsCheckpoint.Open(conv))
        using (var s = SafeTensorsCheckpoint.Open(src))
        using (var last = s.Read("model.layers.4.mlp.up_proj.weight"))
        using (var copied = ck.Read("model.layers.2.mlp.up_proj.weight"))
            Assert.True(copied.eq(last).all().item<bool>(), "Middle-Cycle copies the last source layer into the last unique layer");

        // refuses to overwrite, and bad options are usage errors
        Assert.Equal(1, CliRunner.Run("convert", "--from", src, "--to", conv, "--sharing", "cycle", "--recursions", "5", "--init", "lower").Code);
        var bad = CliRunner.Run("convert", "--from", src, "--to", dir.File("x"), "--sharing", "cycle", "--recursions", "5", "--init", "middle");
        Assert.Equal(2, bad.Code);
        Assert.Contains("--init: 'middle' is not one of stepwise|average|lower|upper|random", bad.Err);

        string text = dir.Write("text.txt", string.Concat(Enumerable.Range(0, 400).Select(i => $"line {i} of some text to learn.\n\n")));
        var up = CliRunner.Run("uptrain", "--from", conv, "--data", text, "--out", run, "--steps", "2", "--batch", "2", "--seq", "16",
            "--lr", "1e-9", "--warmup", "0.5", "--eval-every", "0", "--threads", "1");
        output.WriteLine(up.Out + up.Err);
        Assert.Equal(0, up.Code);
        // the run started from the converted weights: with a negligible learning rate they come out unchanged
        using var a = SafeTensorsCheckpoint.Open(conv);
        using var b = SafeTensorsCheckpoint.Open(run);
        Assert.Equal(a.Tensors.Keys.Order(), b.Tensors.Keys.Order());
        foreach (var k in a.Tensors.Keys)
        {
            using var x = a.Read(k);
            using var y = b.Read(k);
            Assert.True((x - y).abs().max().item<float>() < 1e-6, k);
        }
        Assert.Equal("expert", HfModelFolder.ReadConfig(run).MoR!.Routing);
        Assert.Equal(2, CliRunner.Run("uptrain", "--from", conv, "--out", run, "--steps", "1").Code);   // --data is required
    }
}
