using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Evaluation;

/// <summary>
/// Scores continuations with full (context + continuation) rows, <see cref="BatchSize"/> rows per forward pass.
/// <para><b>Rows.</b> As lm-evaluation-harness: the row is (context ++ continuation) without its last token, truncated from
/// the left to <see cref="MaxLength"/> tokens; the logits at the last |continuation| positions predict the continuation.
/// A continuation longer than MaxLength is scored in several rows (see <see cref="Rows"/>).</para>
/// <para><b>Batches.</b> Requests of all groups are sorted by row length (longest first, ties in request order) so a batch
/// holds rows of similar length, and are right-padded. The model is causal and MoR is routed with the causal rule, so a
/// padding token after a row's last real token cannot change that row's scores (a test checks batched = unbatched).
/// Training-style top-k routing would break this — it picks tokens by comparing the whole row, padding included.</para>
/// <para><b>Cost.</b> Only the scored positions go through the LM head: hidden states [B, T, d] → the S continuation
/// positions [S, d] → logits [S, V]. With a 50k vocabulary the head dominates a small model's cost, and most positions are
/// context.</para>
/// </summary>
public sealed class BatchedScorer : IContinuationScorer
{
    private readonly MoRForCausalLM model;

    public int BatchSize { get; }
    public int MaxLength { get; }
    public RoutingMode Mode { get; }
    /// <summary>Token written into padding positions (never scored).</summary>
    public int PadId { get; }

    /// <param name="maxLength">Longest row; default (and at most) the model's <c>max_position_embeddings</c>.</param>
    /// <param name="mode">Routing rule; <see cref="RoutingMode.Causal"/> for evaluation. Top-k exists only for tests that show why it is not used.</param>
    public BatchedScorer(MoRForCausalLM model, int batchSize = 8, int? maxLength = null, RoutingMode mode = RoutingMode.Causal, int padId = 0)
    {
        if (batchSize < 1) throw new ArgumentException("--batch must be at least 1");
        int ctx = model.Config.MaxPositionEmbeddings;
        if (maxLength is int m && (m < 2 || m > ctx)) throw new ArgumentException($"maximum length must be in 2..{ctx} (the model's context), got {m}");
        if (padId < 0 || padId >= model.Config.VocabSize) throw new ArgumentException($"pad id {padId} is outside the vocabulary [0, {model.Config.VocabSize})");
        this.model = model;
        BatchSize = batchSize;
        MaxLength = maxLength ?? ctx;
        Mode = mode;
        PadId = padId;
    }

    /// <summary>One forward-pass row: it reads <see cref="Input"/> and scores <see cref="Targets"/>, the continuation tokens
    /// [Offset, Offset + |Targets|) of request (Group, Index), predicted at the row's last |Targets| positions.</summary>
    private readonly record struct Row(int Group, int Index, int[] Input, int[] Targets, int Offset);

    public IReadOnlyList<ContinuationScore[]> Score(IReadOnlyList<RequestGroup> groups, IProgress<long>? progress = null)
    {
        var rows = new List<Row>();
        var logps = new float[groups.Count][][];
        var greedy = new bool[groups.Count][][];
        for (int g = 0; g < groups.Count; g++)
        {
            var reqs = groups[g].Requests;
            logps[g] = new float[reqs.Count][];
            greedy[g] = new bool[reqs.Count][];
            for (int i = 0; i < reqs.Count; i++)
            {
                logps[g][i] = new float[reqs[i].Continuation.Length];
                greedy[g][i] = new bool[reqs[i].Continuation.Length];
                rows.AddRange(Rows(g, i, reqs[i]));
            }
        }
        // Longest first (as the harness: the largest batch runs first, so an out-of-memory shows at once); stable for ties.
        var order = Enumerable.Range(0, rows.Count).OrderByDescending(i => rows[i].Input.Length).ThenBy(i => i).ToArray();

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var head = HeadWeight();                                                   // [V, d]
            long done = 0, total = groups.Sum(g => (long)g.Requests.Count);
            foreach (var chunk in order.Chunk(BatchSize))
            {
                ScoreBatch(chunk.Select(i => rows[i]).ToArray(), head, logps, greedy);
                done += chunk.Length;
                progress?.Report(total * done / rows.Count);
            }
        }
        finally { if (wasTraining) model.train(); }

        var results = new ContinuationScore[groups.Count][];
        for (int g = 0; g < groups.Count; g++)
        {
            results[g] = new ContinuationScore[logps[g].Length];
            for (int i = 0; i < results[g].Length; i++)
                results[g][i] = new ContinuationScore(logps[g][i].Sum(x => (double)x), greedy[g][i].All(x => x), logps[g][i]);
        }
        return results;
    }

    /// <summary>
    /// The rows of one request. Normally one, as the harness: (context ++ continuation)[−(MaxLength+1):][:−1], truncated from
    /// the left. A continuation longer than <see cref="MaxLength"/> (which the harness does not handle) is cut, from its end,
    /// into pieces of at most MaxLength tokens, each scored in its own row with as much preceding text as fits.
    /// </summary>
    private IEnumerable<Row> Rows(int group, int index, ContinuationRequest r)
    {
        if (r.Continuation.Length == 0) throw new ArgumentException("a request has an empty continuation (nothing to score)");
        if (r.Context.Length == 0) throw new ArgumentException("a request has an empty context (use EOS as the context of an empty text)");
        int n = r.Length, first = r.Context.Length;
        int Token(int j) => j < first ? r.Context[j] : r.Continuation[j - first];
        for (int end = n; end > first; end -= MaxLength)                     // scores tokens [begin, end) of context ++ continuation
        {
            int begin = Math.Max(first, end - MaxLength);
            int start = Math.Max(0, end - 1 - MaxLength);                      // the row reads tokens [start, end − 1)
            var input = new int[end - 1 - start];
            for (int p = 0; p < input.Length; p++) input[p] = Token(start + p);
            yield return new Row(group, index, input, r.Continuation[(begin - first)..(end - first)], begin - first);
        }
    }

    private void ScoreBatch(Row[] batch, Tensor head, float[][][] logps, bool[][][] greedy)
    {
        using var scope = NewDisposeScope();
        int b = batch.Length, t = batch.Max(r => r.Input.Length);
        var ids = new long[b * t];
        Array.Fill(ids, (long)PadId);                                               // right padding
        var scored = new List<long>();                                              // flat positions b·T + p
        var targets = new List<long>();
        for (int i = 0; i < b; i++)
        {
            var r = batch[i];
            for (int p = 0; p < r.Input.Length; p++) ids[i * t + p] = r.Input[p];
            int first = r.Input.Length - r.Targets.Length;                         // position predicting the first target
            for (int k = 0; k < r.Targets.Length; k++)
            {
                scored.Add((long)i * t + first + k);
                targets.Add(r.Targets[k]);
            }
        }
        var x = tensor(ids, [b, t]);                                                // [B, T]
        var (hidden, _) = model.Model.Forward(x, Mode);                             // [B, T, d]
        var h = hidden.reshape(b * t, hidden.shape[2]).index_select(0, tensor(scored.ToArray()));   // [S, d]
        var logp = nn.functional.log_softmax(nn.functional.linear(h, head.to_type(h.dtype)).to_type(ScalarType.Float32), -1);   // [S, V]
        var target = tensor(targets.ToArray());                                     // [S]
        var tokenLogp = logp.gather(1, target.unsqueeze(1)).squeeze(1).data<float>().ToArray();   // [S]
        var isArgmax = logp.argmax(-1).eq(target).data<bool>().ToArray();           // [S]

        int offset = 0;
        foreach (var r in batch)
        {
            Array.Copy(tokenLogp, offset, logps[r.Group][r.Index], r.Offset, r.Targets.Length);
            Array.Copy(isArgmax, offset, greedy[r.Group][r.Index], r.Offset, r.Targets.Length);
            offset += r.Targets.Length;
        }
    }

    /// <summary>The LM head [V, d]: the embedding when tied, else <c>lm_head.weight</c> (parameter names are the HF keys).</summary>
    private Tensor HeadWeight()
    {
        if (model.Config.TieWordEmbeddings) return model.Model.EmbedTokens.weight!;
        foreach (var (name, p) in model.named_parameters())
            if (name == "lm_head.weight") return p;
        throw new InvalidOperationException("the model has untied embeddings but no lm_head.weight parameter");
    }
}
