using System.Diagnostics;
using MoRSharp.Data;
using MoRSharp.Evaluation;
using MoRSharp.Evaluation.Tasks;
using MoRSharp.Native;
using MoRSharp.Training;

namespace MoRSharp.Bench;

/// <summary>
/// Task-scoring speed (items per second) of <see cref="BatchedScorer"/> at several batch sizes, interleaved: the task's items
/// are cut into chunks and every chunk is scored once at each batch size (the order rotating from chunk to chunk), so the
/// machine's drift hits every batch size alike. Also checks that every batch size gives the same scores.
/// </summary>
public static class EvalSpeedBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        string modelDir = opt.Str("model", "");
        if (modelDir.Length == 0) throw new ArgumentException("--model DIR is required (a model folder, e.g. the --out of mor train)");
        string taskName = opt.Str("task", "hellaswag");
        int limit = opt.Int("limit", 2000), chunk = opt.Int("chunk", 250), threads = opt.Int("threads", Environment.ProcessorCount);
        int[] batches = opt.Ints("batches", [1, 8, 32]);
        string dataDir = opt.Str("data-dir", "");
        if (dataDir.Length == 0) dataDir = Path.Combine(SharedDataPath.Locate(), "eval");
        TorchRuntime.Initialize(threads);
        var (model, tokenizer) = Checkpoint.LoadModelFolder(modelDir);
        using var _ = model;

        var task = TaskRegistry.Get(taskName);
        var evaluator = new TaskEvaluator(tokenizer, new BatchedScorer(model));
        var prepared = evaluator.Prepare(task, dataDir, new TaskRunOptions { Limit = limit });
        int n = prepared.Items.Count;
        var tokens = prepared.Groups.SelectMany(g => g.Requests).Select(r => (long)r.Length - 1).ToList();
        Console.WriteLine($"{task.Name}: {n} items, {prepared.Requests} requests, {tokens.Sum():N0} tokens in rows (mean {tokens.Average():F1}, max {tokens.Max()}); " +
                          $"model {modelDir} ({model.Config.Recursion.RoutingKind.ToString().ToLowerInvariant()} routing, causal rule), {threads} threads");

        var seconds = new double[batches.Length];
        var scores = new ContinuationScore[batches.Length][][];
        for (int b = 0; b < batches.Length; b++) scores[b] = new ContinuationScore[n][];
        int chunks = (n + chunk - 1) / chunk;
        for (int c = 0; c < chunks; c++)
        {
            var groups = prepared.Groups.Skip(c * chunk).Take(chunk).ToList();
            for (int k = 0; k < batches.Length; k++)
            {
                int b = (c + k) % batches.Length;                        // rotate the order
                var scorer = new BatchedScorer(model, batches[b]);
                var clock = Stopwatch.StartNew();
                var s = scorer.Score(groups);
                seconds[b] += clock.Elapsed.TotalSeconds;
                for (int i = 0; i < s.Count; i++) scores[b][c * chunk + i] = s[i];
            }
            Console.Error.Write($"\rchunk {c + 1}/{chunks}");
        }
        Console.Error.WriteLine();

        Console.WriteLine();
        Console.WriteLine("| batch | seconds | items/s | tokens/s | speed vs batch " + batches[0] + " | acc | acc_norm | max |Δ log p| vs batch " + batches[0] + " |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (int b = 0; b < batches.Length; b++)
        {
            var r = TaskEvaluator.Aggregate(prepared, scores[b], seconds[b]);
            double diff = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < scores[b][i].Length; j++)
                    diff = Math.Max(diff, Math.Abs(scores[b][i][j].LogProb - scores[0][i][j].LogProb));
            Console.WriteLine($"| {batches[b]} | {seconds[b]:F1} | {n / seconds[b]:F2} | {tokens.Sum() / seconds[b]:F0} | {seconds[0] / seconds[b]:F2}× | " +
                              $"{r.Acc:F4} | {r.AccNorm:F4} | {diff:E1} |");
        }
        return 0;
    }
}
