using MoRSharp.Caching;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Caching;

/// <summary>Decoding with a KV cache (prefill, then one token at a time) equals one full causal forward: logits and depths.</summary>
public class IncrementalDecodingTests
{
    public static TheoryData<string, string, string> Models => TestConfigs.ModelKinds;

    private static MoRForCausalLM Build(string routing, string sharing, string kv, long seed)
    {
        var config = sharing == "none" ? TestConfigs.Vanilla() : TestConfigs.Tiny(routing, sharing);
        if (config.MoR is not null) config.MoR.KvCache = kv;
        var model = new MoRForCausalLM(config, seed);
        model.eval();
        return model;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Prefill_then_token_by_token_equals_full_forward(string routing, string sharing, string kv)
    {
        using var model = Build(routing, sharing, kv, 21);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        const int T = 24, prefill = 9;
        var ids = ModelTestUtil.RandomIds(2, T, model.Config.VocabSize, 22);
        var full = model.Forward(ids, RoutingMode.Causal);

        using var cache = model.CreateCache(rows: 2, maxLength: 32);
        var parts = new List<Tensor> { model.Forward(ids[.., ..prefill], cache).Logits };
        var depths = new List<Tensor?> { null };
        var stepDepths = new List<Tensor>();
        for (int t = prefill; t < T; t++)
        {
            var o = model.Forward(ids[.., t..(t + 1)], cache);
            parts.Add(o.Logits);
            if (o.Routing.Depth is { } d) stepDepths.Add(d);
        }
        var incremental = torch.cat(parts.ToArray(), dim: 1);
        double diff = (incremental - full.Logits).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"incremental logits differ from the full forward by {diff}");
        Assert.Equal(T, cache.Position(0));

        if (full.Routing.Depth is { } fullDepth)
        {
            var dec = torch.cat(stepDepths.ToArray(), dim: 1);                       // [2, T − prefill]
            Assert.True(dec.eq(fullDepth[.., prefill..]).all().item<bool>(), "a decoded token got another depth than in the full forward");
        }
    }

    [Theory]
    [InlineData("expert", "recursion_wise")]
    [InlineData("token", "recursion_wise")]
    public void Recursion_wise_slots_hold_exactly_the_tokens_that_reached_them(string routing, string kv)
    {
        using var model = Build(routing, "middle_cycle", kv, 23);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = ModelTestUtil.RandomIds(1, 30, model.Config.VocabSize, 24);
        var depth = model.Forward(ids, RoutingMode.Causal).Routing.Depth!;         // [1, 30]
        using var cache = model.CreateCache(1, 30);
        model.Forward(ids, cache);
        var layout = cache.Layout;
        Assert.Equal(KvCacheStrategy.RecursionWise, layout.Strategy);
        for (int r = 0; r < model.Layout.NumRecursion; r++)
        {
            long reached = depth.gt(r).sum().item<long>();
            for (int j = 0; j < model.Layout.BlockSize; j++)
                Assert.Equal(reached, cache.Length(0, layout.RecursionSlot(r, j).slot));
        }
        Assert.Equal(30, cache.Length(0, layout.PreludeSlot(0)));
        Assert.True(depth.min().item<long>() < depth.max().item<long>(), "routing was not adaptive, so the test shows nothing");
    }

    [Fact]
    public void Shared_strategy_writes_only_recursion_one()
    {
        using var model = Build("token", "middle_cycle", "shared", 25);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cache = model.CreateCache(1, 20);
        model.Forward(ModelTestUtil.RandomIds(1, 20, model.Config.VocabSize, 26), cache);
        Assert.Equal(KvCacheStrategy.Shared, cache.Layout.Strategy);
        Assert.Equal(2 + model.Layout.BlockSize, cache.Layout.NumSlots);   // prelude, recursion-1 block layers, coda
        for (int j = 0; j < model.Layout.BlockSize; j++)
        {
            Assert.Equal(20, cache.Length(0, cache.Layout.RecursionSlot(0, j).slot));
            Assert.Equal(cache.Layout.RecursionSlot(0, j).slot, cache.Layout.RecursionSlot(2, j).slot);
            Assert.False(cache.Layout.RecursionSlot(2, j).writes);
        }
    }

    [Fact]
    public void Rows_decode_independently_at_different_lengths()
    {
        // Two sequences of different lengths share one cache: each row's logits equal its own full forward.
        using var model = Build("expert", "middle_cycle", "recursion_wise", 27);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var a = ModelTestUtil.RandomIds(1, 14, model.Config.VocabSize, 28);
        var b = ModelTestUtil.RandomIds(1, 9, model.Config.VocabSize, 29);
        using var cache = model.CreateCache(3, 20);
        model.Forward(a[.., ..10], cache, [2]);
        model.Forward(b[.., ..5], cache, [0]);
        var logitsA = new List<Tensor>();
        var logitsB = new List<Tensor>();
        for (int s = 0; s < 4; s++)
        {
            var ids = torch.cat([a[.., (10 + s)..(11 + s)], b[.., (5 + s)..(6 + s)]], dim: 0);   // [2, 1]
            var o = model.Forward(ids, cache, [2, 0]).Logits;
            logitsA.Add(o[0..1]);
            logitsB.Add(o[1..2]);
        }
        var fullA = model.Forward(a, RoutingMode.Causal).Logits[.., 10..14];
        var fullB = model.Forward(b, RoutingMode.Causal).Logits[.., 5..9];
        Assert.True((torch.cat(logitsA.ToArray(), 1) - fullA).abs().max().item<float>() < 1e-4);
        Assert.True((torch.cat(logitsB.ToArray(), 1) - fullB).abs().max().item<float>() < 1e-4);
        Assert.Equal(0, cache.Position(1));
    }

    [Fact]
    public void Exceeding_the_cache_length_is_a_clear_error()
    {
        using var model = Build("none", "none", "recursion_wise", 30);
        using var _ = no_grad();
        using var cache = model.CreateCache(1, 8);
        using var ids = ModelTestUtil.RandomIds(1, 9, model.Config.VocabSize, 31);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(ids, cache));
        Assert.Contains("exceed the KV cache length 8", e.Message);
    }
}
