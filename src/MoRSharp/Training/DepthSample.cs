using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Training;

/// <summary>
/// Shows what routing does: each token of a text with the number of recursions it ran under the causal rule.
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

    /// <summary>Greedy continuation of <paramref name="prompt"/> with a KV cache (prefill, then one cached step per token, each
    /// token's depth taken when it is fed); stops at EOS or <paramref name="maxTokens"/>.</summary>
    public static List<(string text, int depth)> Generate(MoRForCausalLM model, ITokenizer tokenizer, string prompt, int maxTokens)
    {
        var ids = tokenizer.Encode(prompt).ToList();
        if (ids.Count == 0) return [];
        int context = model.Config.MaxPositionEmbeddings;
        if (ids.Count > context) ids = ids[..context];
        var depths = new List<int>();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var cache = model.CreateCache(1, Math.Min(context, ids.Count + maxTokens));
            int Step(IEnumerable<int> feed)
            {
                using var scope = NewDisposeScope();
                var output = model.Forward(tensor(feed.Select(i => (long)i).ToArray()).unsqueeze(0), cache);   // [1, T, V]
                if (output.Routing.Depth is { } d) depths.AddRange(d[0].data<long>().Select(x => (int)x));
                else depths.AddRange(Enumerable.Repeat(0, (int)output.Logits.shape[1]));
                return (int)output.Logits[0, -1].argmax().item<long>();
            }
            int next = Step(ids);
            for (int n = 0; n < maxTokens && ids.Count < cache.MaxLength && tokenizer.EosId != next; n++)
            {
                ids.Add(next);
                next = Step([next]);
            }
        }
        finally { if (wasTraining) model.train(); }
        return ids.Select((id, i) => (tokenizer.DecodeToken(id), depths[i])).ToList();
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
