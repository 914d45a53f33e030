using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Training;

/// <summary>
/// Shows what routing does: each token of a text with the number of recursions it ran under the causal rule.
/// (Generation here re-runs the full sequence per token; the KV-cached generator belongs to the inference layer.)
/// </summary>
public static class DepthSample
{
    /// <summary>(token text, depth) for every token of <paramref name="text"/>; depth 0 for a model without recursions.</summary>
    public static List<(string text, int depth)> Annotate(MoRForCausalLM model, ITokenizer tokenizer, string text)
    {
        var ids = tokenizer.Encode(text);
        if (ids.Length == 0) return [];
        if (ids.Length > model.Config.MaxPositionEmbeddings) ids = ids[..model.Config.MaxPositionEmbeddings];
        var depths = Depths(model, ids.Select(i => (long)i).ToArray());
        return ids.Select((id, i) => (tokenizer.DecodeToken(id), depths[i])).ToList();
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/>; stops at EOS or <paramref name="maxTokens"/>.</summary>
    public static List<(string text, int depth)> Generate(MoRForCausalLM model, ITokenizer tokenizer, string prompt, int maxTokens)
    {
        var ids = tokenizer.Encode(prompt).Select(i => (long)i).ToList();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            for (int n = 0; n < maxTokens && ids.Count < model.Config.MaxPositionEmbeddings; n++)
            {
                using var scope = NewDisposeScope();
                var logits = model.Forward(tensor(ids.ToArray()).unsqueeze(0), RoutingMode.Causal).Logits;   // [1, T, V]
                long next = logits[0, -1].argmax().item<long>();
                if (tokenizer.EosId == next) break;
                ids.Add(next);
            }
        }
        finally { if (wasTraining) model.train(); }
        var depths = Depths(model, ids.ToArray());
        return ids.Select((id, i) => (tokenizer.DecodeToken((int)id), depths[i])).ToList();
    }

    private static int[] Depths(MoRForCausalLM model, long[] ids)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var output = model.Forward(tensor(ids).unsqueeze(0), RoutingMode.Causal);
            return output.Routing.Depth is { } d
                ? d[0].data<long>().Select(x => (int)x).ToArray()
                : new int[ids.Length];
        }
        finally { if (wasTraining) model.train(); }
    }
}
