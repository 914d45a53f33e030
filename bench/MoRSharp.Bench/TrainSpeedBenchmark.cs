using System.Diagnostics;
using MoRSharp.Config;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Training;
using static TorchSharp.torch;

namespace MoRSharp.Bench;

/// <summary>
/// Training speed against this machine's own fp32 matrix-product peak (model FLOPs utilisation), and bf16 mode against fp32:
/// speed (interleaved) and validation loss after the same steps.
/// Model FLOPs per token = 6·N (N = all parameters; the tied embedding counts once, for the LM head) + 6·L·T·d (causal attention).
/// </summary>
public static class TrainSpeedBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        string preset = opt.Str("preset", "micro-vanilla");
        int batch = opt.Int("batch", 8), seq = opt.Int("seq", 256), steps = opt.Int("steps", 4), rounds = opt.Int("rounds", 5);
        int lossSteps = opt.Int("loss-steps", 150), threads = opt.Int("threads", Environment.ProcessorCount);
        TorchRuntime.Initialize(threads);
        string tmp = Directory.CreateTempSubdirectory("mor-bench-").FullName;
        try
        {
            string data = PrepareData(tmp, preset);
            Console.WriteLine($"Training speed: {preset}, batch {batch} × seq {seq}, {threads} threads; {TorchRuntime.Describe()}");
            Console.WriteLine($"CPU: {CpuModel()}; bf16 units (avx512_bf16 / amx_bf16): {(HasBf16Units() ? "yes" : "no")}");
            Console.WriteLine();

            // 1. Matrix-product peak, measured before and after the training runs (the larger counts).
            double peak = MatmulPeak();

            // 2. fp32 vs bf16, interleaved rounds of `steps` optimizer steps each.
            var config = Presets.Get(preset);
            using var shard = new TokenShardReader(Path.Combine(data, DataPreparer.TrainFile));
            config.VocabSize = Math.Max(config.VocabSize, shard.VocabSize);
            var fp32 = MakeTrainer(config, shard, batch, seq, bf16: false, Path.Combine(tmp, "fp32"));
            var bf16 = MakeTrainer(config, shard, batch, seq, bf16: true, Path.Combine(tmp, "bf16"));
            double tokensPerRound = (double)batch * seq * steps;
            var tFp32 = new List<double>();
            var tBf16 = new List<double>();
            TimeSteps(fp32, 1); TimeSteps(bf16, 1);                               // warm-up
            for (int r = 0; r < rounds; r++)
            {
                if (r % 2 == 0) { tFp32.Add(TimeSteps(fp32, steps)); tBf16.Add(TimeSteps(bf16, steps)); }
                else { tBf16.Add(TimeSteps(bf16, steps)); tFp32.Add(TimeSteps(fp32, steps)); }
            }
            peak = Math.Max(peak, MatmulPeak());
            var acc = ModelAccounting.Compute(config, seq);
            double modelFlopsPerToken = 6.0 * acc.TotalParams + 6.0 * config.NumHiddenLayers * seq * config.HiddenSize;
            double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
            double tokS32 = tokensPerRound / Median(tFp32), tokS16 = tokensPerRound / Median(tBf16);
            var ratios = tFp32.Zip(tBf16, (a, b) => a / b).Order().ToList();
            Console.WriteLine($"fp32 matrix-product peak (best of 1024³ and 2048×768×2048 products): {peak / 1e9:F1} GFLOP/s");
            Console.WriteLine();
            Console.WriteLine("| mode | tokens/s (median of rounds) | model GFLOP/s | % of fp32 matmul peak |");
            Console.WriteLine("|---|---:|---:|---:|");
            Console.WriteLine($"| fp32 | {tokS32:F0} | {tokS32 * modelFlopsPerToken / 1e9:F1} | {100 * tokS32 * modelFlopsPerToken / peak:F1}% |");
            Console.WriteLine($"| bf16 (fp32 master) | {tokS16:F0} | {tokS16 * modelFlopsPerToken / 1e9:F1} | {100 * tokS16 * modelFlopsPerToken / peak:F1}% |");
            Console.WriteLine();
            Console.WriteLine($"bf16 speed / fp32 speed = {ratios[ratios.Count / 2]:F3} (paired rounds, {ratios[0]:F3}–{ratios[^1]:F3}); model FLOPs/token = {modelFlopsPerToken / 1e6:F1} M");
            fp32.Dispose(); bf16.Dispose();

            // 3. Loss after the same number of steps (nano model, generated corpus), fp32 vs bf16.
            if (lossSteps > 0)
            {
                var nano = Presets.Get("nano-vanilla");
                var l32 = TrainForLoss(nano, data, lossSteps, bf16: false, Path.Combine(tmp, "l32"));
                var l16 = TrainForLoss(nano, data, lossSteps, bf16: true, Path.Combine(tmp, "l16"));
                Console.WriteLine();
                Console.WriteLine($"validation NLL after {lossSteps} steps (nano-vanilla, 16×128 tokens/step, lr 3e-3): fp32 {l32:F4}, bf16 {l16:F4}, difference {100 * (l16 - l32) / l32:+0.00;-0.00}%");
            }
            return 0;
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }

    private static string PrepareData(string tmp, string preset)
    {
        string text = Path.Combine(tmp, "corpus.txt");
        SyntheticCorpus.WriteText(text, 2_000_000, 1);
        string data = Path.Combine(tmp, "data");
        DataPreparer.Prepare(new DataPrepareOptions { Inputs = [text], OutputDirectory = data, ValFraction = 0.05, Seed = 1 }, TokenizerFactory.Bytes());
        return data;
    }

    private static Trainer MakeTrainer(ModelConfig config, TokenShardReader shard, int batch, int seq, bool bf16, string outDir)
    {
        var options = new TrainingOptions { Steps = 1_000_000, Batch = batch, Seq = seq, Bf16 = bf16, EvalEvery = 0, CheckpointEvery = 0, LearningRate = 1e-3 };
        return new Trainer(config, options, ShardBatchSource.Train(shard, batch, seq, 1), null, outDir);
    }

    private static double TimeSteps(Trainer trainer, int steps)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) trainer.StepOnce();
        return sw.Elapsed.TotalSeconds;
    }

    private static double TrainForLoss(ModelConfig config, string data, int steps, bool bf16, string outDir)
    {
        using var train = new TokenShardReader(Path.Combine(data, DataPreparer.TrainFile));
        using var val = new TokenShardReader(Path.Combine(data, DataPreparer.ValFile));
        var options = new TrainingOptions { Steps = steps, Batch = 16, Seq = 128, Bf16 = bf16, EvalEvery = 0, CheckpointEvery = 0, EvalBatches = 16, Seed = 1 };
        using var t = new Trainer(config, options, ShardBatchSource.Train(train, 16, 128, 1), ShardBatchSource.Validation(val, 16, 128), outDir);
        return t.Run().FinalValidation!.Loss;
    }

    /// <summary>Best fp32 GFLOP/s over a few large products (each timed over repeated calls after a warm-up).</summary>
    public static double MatmulPeak()
    {
        double best = 0;
        foreach (var (m, k, n) in new[] { (1024, 1024, 1024), (2048, 768, 2048) })
        {
            using var scope = NewDisposeScope();
            var a = randn(m, k);
            var b = randn(k, n);
            matmul(a, b);
            for (int trial = 0; trial < 3; trial++)
            {
                var sw = Stopwatch.StartNew();
                const int reps = 8;
                for (int i = 0; i < reps; i++) matmul(a, b).Dispose();
                best = Math.Max(best, 2.0 * m * k * n * reps / sw.Elapsed.TotalSeconds);
            }
        }
        return best;
    }

    public static bool HasBf16Units()
    {
        try { var flags = File.ReadAllText("/proc/cpuinfo"); return flags.Contains("avx512_bf16") || flags.Contains("amx_bf16"); }
        catch (IOException) { return false; }
    }

    private static string CpuModel()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown"; }
        catch (IOException) { return "unknown"; }
    }
}
