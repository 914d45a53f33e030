using System.Diagnostics;
using System.Text;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Evaluation.Tasks;

namespace MoRSharp.Evaluation;

/// <summary>Options of one task run.</summary>
public sealed record TaskRunOptions
{
    /// <summary>Few-shot examples per item (0 = zero-shot, the default).</summary>
    public int Shots { get; init; }
    /// <summary>Evaluate only the first N items (as the harness' <c>--limit</c>).</summary>
    public int? Limit { get; init; }
    /// <summary>Few-shot sampling seed; 1234 is the harness' default few-shot seed.</summary>
    public long Seed { get; init; } = 1234;
}

/// <summary>A task's items turned into token requests, ready to score.</summary>
public sealed record PreparedTask(EvalTask Task, IReadOnlyList<EvalItem> Items, IReadOnlyList<RequestGroup> Groups, TaskRunOptions Options)
{
    public long Requests => Groups.Sum(g => (long)g.Requests.Count);
}

/// <summary>
/// A task's metrics. Standard errors are the harness' <c>mean_stderr</c> of a 0/1 metric, sqrt(p(1−p)/(n−1)) (NaN for n &lt; 2).
/// </summary>
public sealed record TaskResult
{
    public required string Task { get; init; }
    public required string Split { get; init; }
    public required int Shots { get; init; }
    public string? ShotSplit { get; init; }
    public required int N { get; init; }
    public required long Requests { get; init; }
    public required double Acc { get; init; }
    public required double AccStderr { get; init; }
    public double? AccNorm { get; init; }
    public double? AccNormStderr { get; init; }
    /// <summary>LAMBADA: exp(−mean over items of log p(last word)).</summary>
    public double? Perplexity { get; init; }
    /// <summary>Expected accuracy of uniform guessing: mean over items of 1/choices (null for LAMBADA).</summary>
    public double? Chance { get; init; }
    public required double Seconds { get; init; }
    public double ItemsPerSecond => N / Math.Max(Seconds, 1e-9);
    /// <summary>Per item, for inspection: the choice <c>acc</c> picks (LAMBADA: 0 when the last word is the greedy continuation, −1 otherwise).</summary>
    public required int[] Predictions { get; init; }
}

/// <summary>
/// Runs a task with lm-evaluation-harness semantics: builds each item's (context, continuation) texts (with few-shot examples
/// when asked), tokenizes them as the harness does, scores them with an <see cref="IContinuationScorer"/>, and computes
/// <c>acc</c>, <c>acc_norm</c>, their standard errors and (LAMBADA) perplexity.
/// <para><b>Tokenization</b> (the harness' <c>_encode_pair</c>): trailing whitespace of the context moves to the front of the
/// continuation; the continuation's tokens are those of encode(context + continuation) after the first |encode(context)|
/// tokens, so a BPE merge across the boundary is tokenized as in running text. An empty context becomes EOS.</para>
/// <para><b>acc_norm</b> divides each choice's log-likelihood by the UTF-8 byte length of the choice text (without the
/// delimiter). The harness divides by <c>len(choice)</c> in Python characters: the same on ASCII text, different where a
/// choice has non-ASCII characters.</para>
/// </summary>
public sealed class TaskEvaluator(ITokenizer tokenizer, IContinuationScorer scorer)
{
    public PreparedTask Prepare(EvalTask task, string dataDir, TaskRunOptions options)
    {
        FewShot.Check(task, options.Shots);
        var items = task.LoadEval(dataDir);
        var pool = options.Shots > 0 ? task.LoadShotPool(dataDir) : null;
        return Prepare(task, items, pool, options);
    }

    public PreparedTask Prepare(EvalTask task, IReadOnlyList<EvalItem> items, IReadOnlyList<EvalItem>? pool, TaskRunOptions options)
    {
        FewShot.Check(task, options.Shots);
        if (options.Limit is < 1) throw new ArgumentException("--limit must be at least 1");
        var kept = options.Limit is int n && n < items.Count ? items.Take(n).ToList() : items;
        var groups = new RequestGroup[kept.Count];
        for (int i = 0; i < kept.Count; i++)
        {
            var item = kept[i].Validated();
            string prefix = FewShot.Prefix(task, pool, options.Shots, options.Seed, i);
            groups[i] = Encode(item, prefix, task.TargetDelimiter);
        }
        return new PreparedTask(task, kept, groups, options);
    }

    /// <summary>Scores a prepared task; <paramref name="progress"/> counts requests.</summary>
    public TaskResult Score(PreparedTask prepared, IProgress<long>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        var scores = scorer.Score(prepared.Groups, progress);
        return Aggregate(prepared, scores, clock.Elapsed.TotalSeconds);
    }

    public TaskResult Run(EvalTask task, string dataDir, TaskRunOptions options, IProgress<long>? progress = null) =>
        Score(Prepare(task, dataDir, options), progress);

    /// <summary>One request per choice: (few-shot prefix + context(i), delimiter + continuation(i)).</summary>
    public RequestGroup Encode(EvalItem item, string prefix, string delimiter)
    {
        var contextCache = new Dictionary<string, int[]>(StringComparer.Ordinal);
        var requests = new ContinuationRequest[item.NumChoices];
        for (int c = 0; c < requests.Length; c++)
        {
            requests[c] = EncodePair(prefix + item.Context(c), delimiter + item.Continuation(c), contextCache);
            if (requests[c].Continuation.Length == 0)
                throw new DataException($"{item.Source}: item {item.Id}, choice {c}: the continuation '{item.Continuation(c)}' encodes to no tokens");
        }
        return new RequestGroup(requests);
    }

    /// <summary>The harness' <c>_encode_pair</c> (and its EOS context for an empty context).</summary>
    public ContinuationRequest EncodePair(string context, string continuation, Dictionary<string, int[]>? contextCache = null)
    {
        if (context.Length == 0)
        {
            int eos = tokenizer.EosId ?? throw new ArgumentException($"an empty context needs an EOS token, and tokenizer '{tokenizer.Name}' has none");
            return new ContinuationRequest([eos], tokenizer.Encode(continuation));
        }
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        if (context.Length == 0) return EncodePair("", continuation, contextCache);
        int[]? ctx = null;
        if (contextCache is null || !contextCache.TryGetValue(context, out ctx))
        {
            ctx = tokenizer.Encode(context);
            contextCache?.Add(context, ctx);
        }
        var whole = tokenizer.Encode(context + continuation);
        return new ContinuationRequest(ctx, whole.Length > ctx.Length ? whole[ctx.Length..] : []);
    }

    /// <summary>The metrics of a scored task.</summary>
    public static TaskResult Aggregate(PreparedTask prepared, IReadOnlyList<ContinuationScore[]> scores, double seconds)
    {
        var task = prepared.Task;
        var items = prepared.Items;
        if (scores.Count != items.Count) throw new ArgumentException($"{scores.Count} scored items for {items.Count} items");
        int n = items.Count;
        var predictions = new int[n];
        double correct = 0, correctNorm = 0, sumLogp = 0;
        for (int i = 0; i < n; i++)
        {
            var item = items[i];
            var s = scores[i];
            if (s.Length != item.NumChoices) throw new ArgumentException($"{item.Source}: {s.Length} scores for {item.NumChoices} choices");
            if (task.Kind == TaskKind.LastWord)
            {
                correct += s[0].IsGreedy ? 1 : 0;
                sumLogp += s[0].LogProb;
                predictions[i] = s[0].IsGreedy ? 0 : -1;
                continue;
            }
            int pred = ArgMax(s.Select(x => x.LogProb).ToArray());
            int predNorm = ArgMax(s.Select((x, c) => x.LogProb / Encoding.UTF8.GetByteCount(item.ChoiceText(c))).ToArray());
            predictions[i] = pred;
            correct += pred == item.Gold ? 1 : 0;
            correctNorm += predNorm == item.Gold ? 1 : 0;
        }
        double acc = n == 0 ? double.NaN : correct / n;
        double? accNorm = task.Kind == TaskKind.MultipleChoice && task.ReportsAccNorm ? (n == 0 ? double.NaN : correctNorm / n) : null;
        return new TaskResult
        {
            Task = task.Name, Split = task.EvalSplit, Shots = prepared.Options.Shots,
            ShotSplit = prepared.Options.Shots > 0 ? task.ShotSplit : null,
            N = n, Requests = prepared.Requests,
            Acc = acc, AccStderr = Stderr(acc, n),
            AccNorm = accNorm, AccNormStderr = accNorm is double an ? Stderr(an, n) : null,
            Perplexity = task.Kind == TaskKind.LastWord && n > 0 ? Math.Exp(-sumLogp / n) : null,
            Chance = task.Kind == TaskKind.MultipleChoice && n > 0 ? items.Average(it => 1.0 / it.NumChoices) : null,
            Seconds = seconds, Predictions = predictions,
        };
    }

    /// <summary>The first index of the maximum (numpy's argmax on ties). NaN never wins.</summary>
    public static int ArgMax(double[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best] || double.IsNaN(values[best])) best = i;
        return best;
    }

    /// <summary>Standard error of the mean of n 0/1 values with mean p: sqrt(p(1−p)/(n−1)).</summary>
    public static double Stderr(double p, int n) => n < 2 ? double.NaN : Math.Sqrt(p * (1 - p) / (n - 1));
}
