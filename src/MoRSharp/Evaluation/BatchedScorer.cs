using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Evaluation;

/// <summary>
/// Scores continuations with full (context + continuation) rows, <see cref="BatchSize"/> rows per forward pass.
/// <para><b>Rows.</b> As lm-evaluation-harness: the row is (context ++ continuation) without its last token, truncated from
/// the left to <see cref="MaxLength"/> tokens; the logits at the last |continuation| positions predict the continuation.</para>
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

    private readonly record struct Row(int Group, int Index, int[] Input, int[] Continuation);

    public IReadOnlyList<ContinuationScore[]> Score(IReadOnlyList<RequestGroup> groups, IProgress<long>? progress = null)
    {
        var rows = new List<Row>();
        var results = new ContinuationScore[groups.Count][];
        for (int g = 0; g < groups.Count; g++)
        {
            var reqs = groups[g].Requests;
            results[g] = new ContinuationScore[reqs.Count];
            for (int i = 0; i < reqs.Count; i++) rows.Add(new Row(g, i, InputRow(reqs[i]), reqs[i].Continuation));
        }
        // Longest first (as the harness: the largest batch runs first, so an out-of-memory shows at once); stable for ties.
        var order = Enumerable.Range(0, rows.Count).OrderByDescending(i => rows[i].Input.Length).ThenBy(i => i).ToArray();

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var head = HeadWeight();                                                   // [V, d]
            long done = 0;
            foreach (var chunk in order.Chunk(BatchSize))
            {
                ScoreBatch(chunk.Select(i => rows[i]).ToArray(), head, results);
                done += chunk.Length;
                progress?.Report(done);
            }
        }
        finally { if (wasTraining) model.train(); }
        return results;
    }

    /// <summary>(context ++ continuation)[−(MaxLength+1):][:−1]: the tokens the model reads for one request.</summary>
    private int[] InputRow(ContinuationRequest r)
    {
        if (r.Continuation.Length == 0) throw new ArgumentException("a request has an empty continuation (nothing to score)");
        if (r.Context.Length == 0) throw new ArgumentException("a request has an empty context (use EOS as the context of an empty text)");
        if (r.Continuation.Length > MaxLength)
            throw new ArgumentException($"a continuation of {r.Continuation.Length} tokens does not fit the model's context of {MaxLength} tokens");
        int total = r.Length;
        int start = Math.Max(0, total - (MaxLength + 1));                      // left truncation
        var input = new int[total - 1 - start];
        for (int p = 0; p < input.Length; p++)
        {
            int j = start + p;
            input[p] = j < r.Context.Length ? r.Context[j] : r.Continuation[j - r.Context.Length];
        }
        return input;
    }

    private void ScoreBatch(Row[] batch, Tensor head, ContinuationScore[][] results)
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
            int first = r.Input.Length - r.Continuation.Length;                    // position predicting the first continuation token
            for (int k = 0; k < r.Continuation.Length; k++)
            {
                scored.Add((long)i * t + first + k);
                targets.Add(r.Continuation[k]);
            }
        }
        var x = tensor(ids, [b, t]);                                                // [B, T]
        var (hidden, _) = model.Model.Forward(x, Mode);                             // [B, T, d]
        var h = hidden.reshape(b * t, hidden.shape[2]).index_select(0, tensor(scored.ToArray()));   // [S, d]
        var logp = nn.functional.log_softmax(nn.functional.linear(h, head.to_type(h.dtype)).to_type(ScalarType.Float32), -1);   // [S, V]
        var target = tensor(targets.ToArray());                                     // [S]
        var tokenLogp = logp.gather(1, target.unsqueeze(1)).squeeze(1).data<float>().ToArray();   // [S]
        var greedy = logp.argmax(-1).eq(target).data<bool>().ToArray();             // [S]

        int offset = 0;
        foreach (var r in batch)
        {
            int n = r.Continuation.Length;
            var terms = tokenLogp.AsSpan(offset, n).ToArray();
            double sum = 0;
            bool all = true;
            for (int k = 0; k < n; k++)
            {
                sum += terms[k];
                all &= greedy[offset + k];
            }
            results[r.Group][r.Index] = new ContinuationScore(sum, all, terms);
            offset += n;
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
