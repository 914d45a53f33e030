using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Evaluation;

/// <summary>
/// Scores an item's choices with their shared context run <b>once</b>: the context prefix the group's requests have in
/// common (<see cref="RequestGroup.SharedContextLength"/>) is prefilled into one KV-cache row, copied to one row per choice,
/// and only each choice's own tokens (the rest of its context and its continuation) are run, all choices in one batch.
/// Causal routing makes this exact: a cached prefix is what the full forward computes for those positions (tests compare
/// with <see cref="BatchedScorer"/>). Groups that need left truncation, or share no context, go to a <see cref="BatchedScorer"/>.
/// </summary>
public sealed class SharedContextScorer(MoRForCausalLM model, int batchSize = 8, int? maxLength = null) : IContinuationScorer
{
    private readonly BatchedScorer fallback = new(model, batchSize, maxLength);

    public int MaxLength => fallback.MaxLength;

    public IReadOnlyList<ContinuationScore[]> Score(IReadOnlyList<RequestGroup> groups, IProgress<long>? progress = null)
    {
        var results = new ContinuationScore[groups.Count][];
        var rest = new List<int>();
        long done = 0;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            for (int g = 0; g < groups.Count; g++)
            {
                var group = groups[g];
                // every row (context ++ continuation without its last token) must fit, and there must be something to share
                if (group.SharedContextLength < 1 || group.Requests.Any(r => r.Length - 1 > MaxLength)) { rest.Add(g); continue; }
                results[g] = ScoreGroup(group);
                done += group.Requests.Count;
                progress?.Report(done);
            }
        }
        finally { if (wasTraining) model.train(); }
        if (rest.Count > 0)
        {
            var scored = fallback.Score(rest.Select(g => groups[g]).ToList());
            for (int k = 0; k < rest.Count; k++) results[rest[k]] = scored[k];
            progress?.Report(done + rest.Sum(g => (long)groups[g].Requests.Count));
        }
        return results;
    }

    private ContinuationScore[] ScoreGroup(RequestGroup group)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var reqs = group.Requests;
        int n = reqs.Count, shared = group.SharedContextLength;
        int longest = reqs.Max(r => r.Length - 1);
        using var cache = model.CreateCache(n, Math.Max(longest, shared));
        var core = model.Model;

        var prefix = tensor(reqs[0].Context[..shared].Select(i => (long)i).ToArray()).unsqueeze(0);        // [1, P]
        var (prefixHidden, _) = core.Forward(prefix, RoutingMode.Causal, null, cache, [0]);                 // [1, P, d]
        var last = prefixHidden[0, -1];                                                                       // [d] predicts token P
        for (int i = 1; i < n; i++) cache.CopyRow(0, i);

        // Each choice's own tokens after the prefix: the rest of its context, then its continuation without the last token.
        var tails = reqs.Select(r => r.Context[shared..].Concat(r.Continuation[..^1]).ToArray()).ToArray();
        int t = tails.Max(x => x.Length);
        Tensor? tailHidden = null;                                                                            // [n, T, d]
        if (t > 0)
        {
            var ids = new long[n * t];                                                                        // right-padded
            for (int i = 0; i < n; i++) for (int p = 0; p < tails[i].Length; p++) ids[i * t + p] = tails[i][p];
            (tailHidden, _) = core.Forward(tensor(ids, [n, t]), RoutingMode.Causal, null, cache, Enumerable.Range(0, n).Select(i => (long)i).ToArray());
        }

        // The hidden state predicting continuation token k of request i sits at full position |context| − 1 + k.
        var rows = new List<Tensor>();
        var targets = new List<long>();
        for (int i = 0; i < n; i++)
        {
            var r = reqs[i];
            for (int k = 0; k < r.Continuation.Length; k++)
            {
                int pos = r.Context.Length - 1 + k;
                rows.Add(pos < shared ? last : tailHidden![i, pos - shared]);
                targets.Add(r.Continuation[k]);
            }
        }
        var h = stack(rows.ToArray());                                                                        // [S, d]
        var logp = nn.functional.log_softmax(model.Head(h).to_type(ScalarType.Float32), -1);                // [S, V]
        var target = tensor(targets.ToArray());
        var tokenLogp = logp.gather(1, target.unsqueeze(1)).squeeze(1).data<float>().ToArray();
        var isArgmax = logp.argmax(-1).eq(target).data<bool>().ToArray();
        var result = new ContinuationScore[n];
        int offset = 0;
        for (int i = 0; i < n; i++)
        {
            int len = reqs[i].Continuation.Length;
            var lp = tokenLogp[offset..(offset + len)];
            result[i] = new ContinuationScore(lp.Sum(x => (double)x), isArgmax[offset..(offset + len)].All(x => x), lp);
            offset += len;
        }
        return result;
    }
}
