using System.Text;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Evaluation;

/// <summary>Result of scoring a text: NLL per token (nats), perplexity and bits per byte (comparable across tokenizers).</summary>
public sealed record PerplexityResult(long Tokens, long Bytes, double TotalNll, int Window, int Stride, string Routing)
{
    public double NllPerToken => TotalNll / Math.Max(1, Tokens);
    public double Perplexity => Math.Exp(NllPerToken);
    /// <summary>Σ NLL / ln 2 / UTF-8 bytes of the scored text.</summary>
    public double BitsPerByte => TotalNll / Math.Log(2) / Math.Max(1, Bytes);

    /// <summary>Several streams scored separately, summed: tokens, bytes and NLL add up.</summary>
    public static PerplexityResult Sum(IReadOnlyList<PerplexityResult> parts) =>
        parts.Count == 0 ? throw new ArgumentException("nothing was scored")
            : new(parts.Sum(p => p.Tokens), parts.Sum(p => p.Bytes), parts.Sum(p => p.TotalNll), parts[0].Window, parts[0].Stride, parts[0].Routing);
}

/// <summary>
/// Sliding-window perplexity: each window of at most <c>window</c> tokens scores the next <c>stride</c> (≤ window − 1) unscored
/// tokens, the rest of the window being their context; every token but the first is scored exactly once. With the default
/// stride = window − 1, windows overlap by one token (the first scored token's context); a smaller stride gives each token
/// at least window − stride tokens of context.
/// MoR models are scored with the causal routing rule by default: no token's depth depends on later tokens.
/// <see cref="RoutingMode.TopK"/> is available for comparison with the paper's numbers and leaks future information.
/// The first token of the text has no context and is not scored.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Score(MoRForCausalLM model, ITokenizer tokenizer, string text, int window, int stride,
        RoutingMode mode = RoutingMode.Causal, IProgress<double>? progress = null)
    {
        var ids = tokenizer.Encode(text);
        return Score(model, ids.Select(i => (long)i).ToArray(), Encoding.UTF8.GetByteCount(text), window, stride, mode, progress);
    }

    /// <summary>
    /// Scores several streams (e.g. the files of a folder) one after another, each with its own first unscored token;
    /// returns each stream's result and their <see cref="PerplexityResult.Sum"/>. Streams of fewer than 2 tokens are skipped.
    /// </summary>
    public static (PerplexityResult Total, IReadOnlyList<(string Name, PerplexityResult Result)> Parts) ScoreAll(MoRForCausalLM model,
        IReadOnlyList<string> names, IEnumerable<PerplexityInput> inputs, int window, int stride, RoutingMode mode = RoutingMode.Causal,
        IProgress<double>? progress = null)
    {
        var parts = new List<(string, PerplexityResult)>();
        int index = 0;
        foreach (var input in inputs)
        {
            int done = index++;
            if (input.Ids.Length < 2) continue;
            var part = new Reporting.SyncProgress<double>(f => progress?.Report((done + f) / names.Count));
            parts.Add((input.Name, Score(model, input.Ids, input.Bytes, window, stride, mode, progress is null ? null : part)));
        }
        if (parts.Count == 0) throw new ArgumentException($"no input has 2 or more tokens; nothing to score ({string.Join(", ", names)})");
        return (PerplexityResult.Sum(parts.Select(p => p.Item2).ToList()), parts);
    }

    public static PerplexityResult Score(MoRForCausalLM model, long[] ids, long bytes, int window, int stride,
        RoutingMode mode = RoutingMode.Causal, IProgress<double>? progress = null)
    {
        if (window < 2) throw new ArgumentException("--seq must be at least 2");
        if (window > model.Config.MaxPositionEmbeddings) throw new ArgumentException($"--seq {window} exceeds the model's max_position_embeddings {model.Config.MaxPositionEmbeddings}");
        if (stride < 1 || stride > window - 1) throw new ArgumentException($"--stride must be in 1..{window - 1} (window − 1)");
        if (ids.Length < 2) throw new ArgumentException("the text has fewer than 2 tokens; nothing to score");
        bool wasTraining = model.training;
        model.eval();
        double total = 0;
        long scored = 0;
        try
        {
            using var _ = no_grad();
            long prevEnd = 1;                                         // tokens [1, prevEnd) are scored; token 0 has no context
            while (prevEnd < ids.Length)
            {
                long end = Math.Min(prevEnd + stride, ids.Length);
                long begin = Math.Max(0, end - window);               // ≤ prevEnd − 1 because stride ≤ window − 1
                using var scope = NewDisposeScope();
                var x = tensor(ids[(int)begin..(int)end]).unsqueeze(0);                     // [1, W]
                var logits = model.Forward(x, mode).Logits[0].to_type(ScalarType.Float32);   // [W, V]
                var logp = nn.functional.log_softmax(logits[..^1], -1);                    // predicts positions 1..W−1
                var target = x[0, 1..];                                                    // [W−1]
                var nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1);                // [W−1]: NLL of token begin+1+j
                long from = prevEnd - (begin + 1);                                         // skip already-scored tokens
                total += nll[(int)from..].sum().item<float>();
                scored += end - prevEnd;
                prevEnd = end;
                progress?.Report((double)end / ids.Length);
            }
        }
        finally { if (wasTraining) model.train(); }
        return new PerplexityResult(scored, bytes, total, window, stride, mode == RoutingMode.Causal ? "causal" : "top-k (leaks future tokens)");
    }
}
