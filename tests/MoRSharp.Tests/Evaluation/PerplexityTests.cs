using MoRSharp.Evaluation;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Evaluation;

public class PerplexityTests
{
    [Theory]
    [InlineData("none")]
    [InlineData("expert")]
    public void One_window_equals_the_mean_next_token_loss(string routing)
    {
        var config = TestConfigs.Tiny(routing, context: 64);
        using var model = new MoRForCausalLM(config, seed: 41);
        model.eval();
        using var scope = NewDisposeScope();
        var ids = ModelTestUtil.RandomIds(1, 40, config.VocabSize, 42);
        var r = Perplexity.Score(model, ids[0].data<long>().ToArray(), 100, window: 64, stride: 63);
        using var _ = no_grad();
        double expected = MoRForCausalLM.NextTokenLoss(model.Forward(ids, RoutingMode.Causal).Logits, ids).item<float>();
        Assert.Equal(39, r.Tokens);
        Assert.Equal(expected, r.NllPerToken, 4);
        Assert.Equal(r.TotalNll / Math.Log(2) / 100, r.BitsPerByte, 9);
    }

    [Fact]
    public void Sliding_windows_score_every_token_once_and_more_context_changes_the_score()
    {
        var config = TestConfigs.Vanilla();
        using var model = new MoRForCausalLM(config, seed: 43);
        using var scope = NewDisposeScope();
        var ids = ModelTestUtil.RandomIds(1, 150, config.VocabSize, 44)[0].data<long>().ToArray();
        var wide = Perplexity.Score(model, ids, 150, window: 32, stride: 31);
        var narrow = Perplexity.Score(model, ids, 150, window: 32, stride: 8);
        Assert.Equal(149, wide.Tokens);
        Assert.Equal(149, narrow.Tokens);
        Assert.NotEqual(wide.TotalNll, narrow.TotalNll);
        Assert.Throws<ArgumentException>(() => Perplexity.Score(model, ids, 150, window: 32, stride: 32));
    }
}
