using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Routing;

public class ExpertChoiceTests
{
    [Theory]
    [InlineData(3, 48)]
    [InlineData(4, 37)]
    [InlineData(2, 5)]
    public void Selected_set_is_subset_of_previous_and_has_exactly_k(int numRecursion, int length)
    {
        var config = TestConfigs.Tiny("expert", numRecursion: numRecursion, blockSize: 1);
        using var model = new MoRForCausalLM(config, seed: 5);
        model.train();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(3, length, config.VocabSize, 6);
        var stats = model.Forward(ids).Routing;
        var caps = config.MoR!.EffectiveCapacity;
        Tensor? previous = null;
        for (int r = 0; r < numRecursion; r++)
        {
            var sel = stats.Selected![r];                                    // [B, N]
            long k = ExpertChoiceRouting.Capacity(caps[r], length);
            Assert.Equal(Math.Max(1, (long)Math.Floor(caps[r] * length + 1e-9)), k);
            var perSample = sel.sum(1).data<long>().ToArray();
            Assert.All(perSample, c => Assert.Equal(k, c));
            if (previous is not null)
                Assert.False(sel.logical_and(previous.logical_not()).any().item<bool>(), $"recursion {r} selected a token dropped at {r - 1}");
            previous = sel;
        }
        Assert.Equal(caps.Select(c => 3 * ExpertChoiceRouting.Capacity(c, length)), stats.TokensPerRecursion);
        Assert.NotNull(stats.BceLoss);
        Assert.InRange(stats.DeadTokenFraction!.Value, 0.0, 1.0);
    }

    [Fact]
    public void Capacity_follows_the_paper_rule()
    {
        Assert.Equal(2048, ExpertChoiceRouting.Capacity(1.0, 2048));
        Assert.Equal(1365, ExpertChoiceRouting.Capacity(2.0 / 3, 2048));
        Assert.Equal(682, ExpertChoiceRouting.Capacity(1.0 / 3, 2048));
        Assert.Equal(1, ExpertChoiceRouting.Capacity(0.25, 2));
    }

    /// <summary>
    /// With every capacity 1 and additive gating, routing selects every token at every recursion, so gather → block →
    /// scatter-add must reproduce running the shared block on the full sequence: H ← H + f(H) per recursion
    /// (f = the block with its own residuals; the extra "+ H" is the official additive update, spec §10.1/§12).
    /// The reference is computed here directly from the model's unique layers, with no routing code involved.
    /// </summary>
    [Theory]
    [InlineData(RoutingMode.TopK)]
    [InlineData(RoutingMode.Causal)]
    public void Full_capacity_additive_expert_choice_equals_the_recursive_computation(RoutingMode mode)
    {
        var config = TestConfigs.Tiny("expert", numRecursion: 3, blockSize: 2);
        config.MoR!.Capacity = [1.0, 1.0, 1.0];
        config.MoR.Gating = "additive";
        using var model = new MoRForCausalLM(config, seed: 7);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(2, 24, config.VocabSize, 8);

        // In causal mode a token continues only where its router says so; force "continue" by making every router logit positive.
        if (mode == RoutingMode.Causal)
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.StartsWith("model.routers.")))
                p.zero_();   // z = 0 → σ(z) = 0.5 → continue
        var actual = model.Forward(ids, mode).Logits;

        var layout = model.Layout;
        var m = model.Model;
        long t = ids.shape[1];
        var positions = arange(t).unsqueeze(0).expand(2, t);
        var (cos, sin) = m.Rope.At(positions, ScalarType.Float32);
        var inputs = new AttentionInputs { Cos = cos, Sin = sin };
        var h = m.EmbedTokens.forward(ids);
        foreach (var u in layout.Prelude) h = m.Layers[u].Forward(h, inputs).hidden;
        for (int r = 0; r < layout.NumRecursion; r++)
        {
            var f = h;
            foreach (var u in layout.Recursions[r]) f = m.Layers[u].Forward(f, inputs).hidden;
            h = h + f;
        }
        foreach (var u in layout.Coda) h = m.Layers[u].Forward(h, inputs).hidden;
        var normWeight = model.state_dict()["model.norm.weight"];
        var hf = h * rsqrt(h.pow(2).mean([-1L], keepdim: true) + config.RmsNormEps) * normWeight;
        var expected = nn.functional.linear(hf, m.EmbedTokens.weight!);

        double diff = (actual - expected).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"max abs difference {diff}");
    }

    [Fact]
    public void Gated_update_only_touches_selected_tokens()
    {
        // Tokens not selected at the last recursion keep the state they had after the previous one: check via depth counts.
        var config = TestConfigs.Tiny("expert", numRecursion: 3, blockSize: 1);
        using var model = new MoRForCausalLM(config, seed: 9);
        model.train();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(2, 30, config.VocabSize, 10);
        var stats = model.Forward(ids).Routing;
        var depth = stats.Depth!;
        Assert.Equal(2 * 30, depth.ge(1).sum().item<long>());       // c_1 = 1: everyone runs recursion 1
        Assert.Equal(2 * 20, depth.ge(2).sum().item<long>());       // ⌊2/3·30⌋
        Assert.Equal(2 * 10, depth.ge(3).sum().item<long>());       // ⌊1/3·30⌋
    }
}
