using System.Diagnostics;
using MoRSharp.Config;
using MoRSharp.Model;
using MoRSharp.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Bench;

/// <summary>
/// Is compute skipping real? Times forward+backward per token of an expert-choice MoR model (N_r = 3) against the
/// recursive model with the same unrolled depth and width, interleaved A/B/B/A in one process, and compares the time ratio
/// with the paper-FLOPs ratio (spec §4.4). The vocabulary is kept small by default so that the LM head, which the paper's
/// accounting leaves out, does not dilute the ratio; the exact-FLOPs ratio (head, GQA, routers included) is printed too.
/// </summary>
public static class ComputeSkippingBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        int hidden = opt.Int("hidden", 256), block = opt.Int("block", 4), tokens = opt.Int("tokens", 2048);
        int vocab = opt.Int("vocab", 512), rounds = opt.Int("rounds", 7), steps = opt.Int("steps", 1), threads = opt.Int("threads", Environment.ProcessorCount);
        int[] seqs = opt.Ints("seqs", [128, 256, 512]);
        TorchRuntime.Initialize(threads);
        Console.WriteLine($"Compute skipping: forward+backward per token, d {hidden}, layout 1+{block}·3+1 (N_r = 3), vocab {vocab}, " +
                          $"{tokens} tokens per step, {threads} threads, {rounds} interleaved A/B rounds × {steps} step(s); {TorchRuntime.Describe()}");
        Console.WriteLine();
        Console.WriteLine("| seq × batch | recursive ms/step | MoR ms/step | time ratio (median of paired rounds, min–max) | paper-FLOPs ratio | exact-FLOPs ratio | within 15% of paper |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|:---:|");
        foreach (int seq in seqs) RunOne(hidden, block, seq, Math.Max(1, tokens / seq), vocab, rounds, steps);
        return 0;
    }

    private static void RunOne(int hidden, int block, int seq, int batch, int vocab, int rounds, int steps)
    {
        ModelConfig Make(string routing) => new()
        {
            HiddenSize = hidden, IntermediateSize = 3 * hidden, NumAttentionHeads = hidden / 64, NumKeyValueHeads = hidden / 64,
            VocabSize = vocab, MaxPositionEmbeddings = seq, NumHiddenLayers = 2 + 3 * block,
            MoR = new MoRConfig { NumRecursion = 3, Sharing = "middle_cycle", Routing = routing },
        };
        var configs = new[] { Make("none"), Make("expert") };               // A = recursive, B = MoR expert-choice
        var models = configs.Select(c => new MoRForCausalLM(c, seed: 1)).ToArray();
        foreach (var m in models) m.train();
        using var gen = new Generator(7);
        using var ids = torch.randint(0, vocab, [batch, seq], generator: gen, dtype: ScalarType.Int64);

        double StepSeconds(MoRForCausalLM model)
        {
            var sw = Stopwatch.StartNew();
            for (int s = 0; s < steps; s++)
            {
                using var scope = NewDisposeScope();
                model.zero_grad();
                model.Forward(ids).TrainingLoss(ids).backward();
            }
            return sw.Elapsed.TotalSeconds / steps;
        }

        foreach (var m in models) StepSeconds(m);                            // warm-up
        var a = new List<double>();
        var b = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            if (r % 2 == 0) { a.Add(StepSeconds(models[0])); b.Add(StepSeconds(models[1])); }
            else { b.Add(StepSeconds(models[1])); a.Add(StepSeconds(models[0])); }   // A B, B A: drift hits both alike
        }
        var ratios = a.Zip(b, (x, y) => y / x).Order().ToList();
        double Median(IEnumerable<double> v) { var l = v.Order().ToList(); return l[l.Count / 2]; }
        double timeRatio = Median(ratios);
        var acc = configs.Select(c => Accounting.Compute(c, seq)).ToArray();
        double paper = acc[1].FlopsPerTokenPaper / acc[0].FlopsPerTokenPaper;
        double exact = acc[1].FlopsPerTokenExact / acc[0].FlopsPerTokenExact;
        bool within = Math.Abs(timeRatio / paper - 1) <= 0.15;
        Console.WriteLine($"| {seq} × {batch} | {Median(a) * 1e3:F0} | {Median(b) * 1e3:F0} | {timeRatio:F3} ({ratios[0]:F3}–{ratios[^1]:F3}) | {paper:F3} | {exact:F3} | {(within ? "yes" : "no")} |");
        foreach (var m in models) m.Dispose();
    }
}

/// <summary>--name value pairs.</summary>
public sealed class Options
{
    private readonly Dictionary<string, string> values = new();

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--") || i + 1 >= args.Length) throw new ArgumentException($"expected --name value, got '{args[i]}'");
            o.values[args[i][2..]] = args[++i];
        }
        return o;
    }

    public int[] Ints(string name, int[] fallback) => values.TryGetValue(name, out var v)
        ? v.Split(',').Select(x => int.TryParse(x, out int i) ? i : throw new ArgumentException($"--{name}: '{x}' is not an integer")).ToArray()
        : fallback;

    public string Str(string name, string fallback) => values.TryGetValue(name, out var v) ? v : fallback;

    public int Int(string name, int fallback) => values.TryGetValue(name, out var v)
        ? (int.TryParse(v, out int x) ? x : throw new ArgumentException($"--{name}: '{v}' is not an integer"))
        : fallback;
}
