using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Model;

public class SharingTests
{
    [Theory]
    [InlineData("none", "cycle")]
    [InlineData("none", "sequence")]
    [InlineData("none", "middle_cycle")]
    [InlineData("none", "middle_sequence")]
    [InlineData("expert", "middle_cycle")]
    [InlineData("token", "cycle")]
    public void Each_unique_layer_is_stored_once(string routing, string sharing)
    {
        var config = TestConfigs.Tiny(routing, sharing);
        using var model = new MoRForCausalLM(config);
        var keys = model.state_dict().Keys.ToList();
        var layerIds = keys.Where(k => k.StartsWith("model.layers.")).Select(k => int.Parse(k.Split('.')[2])).Distinct().Order().ToList();
        Assert.Equal(Enumerable.Range(0, model.Layout.NumUnique), layerIds);
        Assert.Equal(9 * model.Layout.NumUnique, keys.Count(k => k.StartsWith("model.layers.")));
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", keys);
        Assert.Contains("model.embed_tokens.weight", keys);
        Assert.DoesNotContain("lm_head.weight", keys);   // tied
        // no alias: each parameter object appears once
        Assert.Equal(model.parameters().Count(), model.parameters().Select(p => p.Handle).Distinct().Count());
    }

    [Theory]
    [InlineData("none")]
    [InlineData("expert")]
    [InlineData("token")]
    public void Shared_weights_stay_identical_across_recursions_after_AdamW_and_routers_stay_distinct(string routing)
    {
        var config = TestConfigs.Tiny(routing);
        using var model = new MoRForCausalLM(config, seed: 1);
        model.train();
        var layout = model.Layout;
        using var opt = optim.AdamW(model.parameters(), lr: 1e-2, beta1: 0.9, beta2: 0.95, weight_decay: 0.1);
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var ids = ModelTestUtil.RandomIds(2, 32, config.VocabSize, 3);
        ModelTestUtil.TrainStep(model, opt, ids);

        // Every unrolled use of a block position reads the same unique layer: compare what each recursion runs, bitwise.
        for (int r = 1; r < layout.NumRecursion; r++)
            for (int j = 0; j < layout.BlockSize; j++)
            {
                var a = model.Model.Layers[layout.Recursions[0][j]].parameters().ToList();
                var b = model.Model.Layers[layout.Recursions[r][j]].parameters().ToList();
                Assert.Equal(a.Count, b.Count);
                for (int i = 0; i < a.Count; i++) Assert.True(a[i].eq(b[i]).all().item<bool>(), $"recursion {r} block layer {j} param {i} differs");
            }
        // The step really changed the shared weights (so the check above is not vacuous).
        var q = $"model.layers.{layout.Recursions[0][0]}.self_attn.q_proj.weight";
        Assert.False(before[q].eq(model.state_dict()[q]).all().item<bool>());

        if (routing == "expert")
        {
            var routers = model.state_dict().Where(kv => kv.Key.StartsWith("model.routers.")).Select(kv => kv.Value).ToList();
            Assert.Equal(layout.NumRecursion, routers.Count);
            for (int i = 0; i < routers.Count; i++)
                for (int k = i + 1; k < routers.Count; k++)
                    Assert.False(routers[i].eq(routers[k]).all().item<bool>(), $"routers {i} and {k} are identical");
        }
        foreach (var t in before.Values) t.Dispose();
    }

    [Theory]
    [InlineData("expert", "linear")]
    [InlineData("expert", "mlp")]
    [InlineData("token", "linear")]
    public void Every_router_receives_gradient(string routing, string arch)
    {
        var config = TestConfigs.Tiny(routing);
        config.MoR!.RouterArch = arch;
        using var model = new MoRForCausalLM(config, seed: 2);
        model.train();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(2, 32, config.VocabSize, 4);
        var output = model.Forward(ids);
        var loss = MoRForCausalLM.NextTokenLoss(output.Logits, ids) + output.Routing.WeightedLoss!;
        loss.backward();
        var routerParams = model.named_parameters().Where(p => p.name.Contains("router")).ToList();
        Assert.NotEmpty(routerParams);
        foreach (var (name, p) in routerParams)
        {
            Assert.NotNull(p.grad);
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"{name} got zero gradient");
        }
    }
}
