using MoRSharp.Config;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Routing;

public class TokenChoiceTests
{
    [Fact]
    public void Stats_are_consistent_with_depths()
    {
        var config = TestConfigs.Tiny("token");
        using var model = new MoRForCausalLM(config, seed: 21);
        model.train();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(2, 32, config.VocabSize, 22);
        var s = model.Forward(ids).Routing;
        var depth = s.Depth!;
        var load = s.LoadPerExpert!;
        Assert.Equal(64, load.Sum());
        for (int i = 0; i < 3; i++) Assert.Equal(depth.eq(i + 1).sum().item<long>(), load[i]);
        for (int r = 0; r < 3; r++) Assert.Equal(depth.gt(r).sum().item<long>(), s.TokensPerRecursion[r]);
        Assert.Equal(64, s.TokensPerRecursion[0]);
        double mean = 64.0 / 3;
        Assert.Equal((load.Max() - mean) / mean, s.MaxVio!.Value, 9);
        Assert.InRange(s.Entropy!.Value, 0, Math.Log(3) + 1e-9);
        Assert.NotNull(s.BalancingLoss);
        Assert.NotNull(s.ZLoss);
        // f_i = N_r·load_i/T, P_i = mean prob; Σ f_i P_i with perfectly uniform probabilities would be 1
        Assert.InRange(s.BalancingLoss!.item<float>(), 0.0f, 3.0f);
    }

    [Fact]
    public void Token_exits_with_gate_applied_to_entry_state()
    {
        // A token routed to depth 1 ends as H¹ + g·f(H¹): check against the block run directly on the full sequence
        // (recursion 1 runs every token, so its output for depth-1 tokens is f(H¹) of the full sequence).
        var config = TestConfigs.Tiny("token", numRecursion: 2, blockSize: 1);
        config.MoR!.KvCache = "recursion_wise";
        using var model = new MoRForCausalLM(config, seed: 23);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var ids = ModelTestUtil.RandomIds(1, 16, config.VocabSize, 24);
        var m = model.Model;
        var layout = model.Layout;
        var positions = arange(16).unsqueeze(0);
        var (cos, sin) = m.Rope.At(positions, ScalarType.Float32);
        var inputs = new AttentionInputs { Cos = cos, Sin = sin };
        var h1 = m.Layers[layout.Prelude[0]].Forward(m.EmbedTokens.forward(ids), inputs).hidden;
        var f1 = m.Layers[layout.Recursions[0][0]].Forward(h1, inputs).hidden;
        var routerW = model.state_dict()["model.router.weight"];
        var probs = nn.functional.linear(h1, routerW).softmax(-1);          // [1, 16, 2]
        var depth1 = probs.argmax(-1).eq(0);                                 // tokens that exit after recursion 1
        Assert.True(depth1.any().item<bool>() && depth1.logical_not().any().item<bool>(), "need both depths in the sample");
        var expectedExit = h1 + probs[.., .., 0].unsqueeze(-1) * f1;

        // Capture the state entering the coda by running the routing directly.
        var routing = new TokenChoiceRouting(config.MoR, model.Model.named_modules().First(x => x.name == "router").module as nn.Module<Tensor, Tensor> ?? throw new Exception(), m.RouterBias!);
        var (hOut, _) = routing.Forward(h1, (r, x, pos, _) =>
        {
            var inp = inputs;
            if (pos is not null) { var (c, s) = m.Rope.At(pos, x.dtype); inp = new AttentionInputs { Cos = c, Sin = s }; }
            foreach (var u in layout.Recursions[r]) x = m.Layers[u].Forward(x, inp).hidden;
            return x;
        });
        var mask = depth1.unsqueeze(-1);
        double diff = ((hOut - expectedExit) * mask).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"depth-1 tokens differ by {diff}");
    }

    [Fact]
    public void Loss_free_bias_moves_toward_balance()
    {
        var bias = zeros(3);
        TokenChoiceRouting.UpdateBias(bias, [10, 5, 0], 0.001);
        var b = bias.data<float>().ToArray();
        Assert.True(b[0] < 0 && b[2] > 0 && b[1] == 0, string.Join(",", b));
    }
}
