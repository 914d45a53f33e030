using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Routing;

/// <summary>Changing tokens after position p must not change logits (or depths) at positions ≤ p under the inference rule.</summary>
public class CausalityTests
{
    public static TheoryData<string, string, string> Models => TestConfigs.ModelKinds;

    [Theory]
    [MemberData(nameof(Models))]
    public void Logits_up_to_p_ignore_later_tokens(string routing, string sharing, string kv)
    {
        var config = sharing == "none" ? TestConfigs.Vanilla() : TestConfigs.Tiny(routing, sharing);
        if (config.MoR is not null) config.MoR.KvCache = kv;
        using var model = new MoRForCausalLM(config, seed: 11);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        const int T = 40, p = 17;
        var a = ModelTestUtil.RandomIds(2, T, config.VocabSize, 12);
        var b = a.clone();
        b[.., (p + 1)..] = ModelTestUtil.RandomIds(2, T - p - 1, config.VocabSize, 13);
        Assert.False(a.eq(b).all().item<bool>());
        var oa = model.Forward(a, RoutingMode.Causal);
        var ob = model.Forward(b, RoutingMode.Causal);
        double diff = (oa.Logits[.., ..(p + 1)] - ob.Logits[.., ..(p + 1)]).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"logits at positions ≤ {p} changed by {diff}");
        if (oa.Routing.Depth is { } da)
            Assert.True(da[.., ..(p + 1)].eq(ob.Routing.Depth![.., ..(p + 1)]).all().item<bool>(), "depths at positions ≤ p changed");
        // and the suffix change matters at all (guards against a model that ignores its input)
        Assert.True((oa.Logits[.., (p + 1)..] - ob.Logits[.., (p + 1)..]).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Expert_choice_causal_mode_routes_tokens_to_varying_depths()
    {
        // The causal rule is not vacuous: with a trained-looking router some tokens stop early.
        var config = TestConfigs.Tiny("expert");
        using var model = new MoRForCausalLM(config, seed: 14);
        model.eval();
        using var _ = no_grad();
        using var ids = ModelTestUtil.RandomIds(2, 40, config.VocabSize, 15);
        var depth = model.Forward(ids, RoutingMode.Causal).Routing.Depth!;
        Assert.True(depth.min().item<long>() < depth.max().item<long>(), "every token got the same depth");
    }

    [Fact]
    public void Top_k_mode_leaks_the_future_as_documented()
    {
        var config = TestConfigs.Tiny("expert");
        using var model = new MoRForCausalLM(config, seed: 16);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        bool changed = false;
        for (int seed = 0; seed < 5 && !changed; seed++)
        {
            var a = ModelTestUtil.RandomIds(1, 40, config.VocabSize, 100 + seed);
            var b = a.clone();
            b[.., 20..] = ModelTestUtil.RandomIds(1, 20, config.VocabSize, 200 + seed);
            var da = model.Forward(a, RoutingMode.TopK).Routing.Depth!;
            var db = model.Forward(b, RoutingMode.TopK).Routing.Depth!;
            changed = !da[.., ..20].eq(db[.., ..20]).all().item<bool>();
        }
        Assert.True(changed, "top-k routing of the prefix never depended on the suffix");
    }
}
