using MoRSharp.Data.Tokenizers;
using MoRSharp.Routing;
using MoRSharp.Tests.Inference;
using MoRSharp.Training;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Training;

public class DepthSampleTests
{
    [Fact]
    public void Cached_greedy_sample_has_the_tokens_and_depths_of_full_forwards()
    {
        using var model = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 71);
        var tok = TokenizerFactory.Bytes();
        var sample = DepthSample.Generate(model, tok, "ab(", 10);
        var ids = tok.Encode("ab(").Select(i => (long)i).ToList();
        using var _ = no_grad();
        for (int n = 0; n < sample.Count - 3; n++)
        {
            using var scope = NewDisposeScope();
            ids.Add(model.Forward(tensor(ids.ToArray()).unsqueeze(0), RoutingMode.Causal).Logits[0, -1].argmax().item<long>());
        }
        Assert.Equal(ids.Select(i => tok.DecodeToken((int)i)), sample.Select(s => s.text));
        using var full = model.Forward(tensor(ids.ToArray()).unsqueeze(0), RoutingMode.Causal).Routing.Depth!;
        Assert.Equal(full[0].data<long>().Select(x => (int)x), sample.Select(s => s.depth));
        Assert.True(sample.Count > 3);
    }
}
