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
/// Training speed against this machine's own fp32 matrix-product peak (model FLOPs utilisation), and bf16 mode against fp32
/// (nano model): speed (interleaved) and validation loss after the same steps.
/// Model FLOPs per token = 6·N (N = all parameters; the tied embedding counts once, for the LM head) + 6·L·T·d (causal attention).
/// </summary>
public static class TrainSpeedBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        string preset = opt.Str("preset", "micro-vanilla");
        int batch = opt.Int("batch", 8), seq = opt.Int("seq", 256), steps = opt.Int("steps", 2), rounds = opt.Int("rounds", 3);
        int lossSteps = opt.Int("loss-steps", 40), threads = opt.Int("threads", Environment.ProcessorCount);
        TorchRuntime.Initialize(threads);
        string tmp = Directory.CreateTempSubdirectory("mor-bench-").FullName;
        try
        {
            string data = PrepareData(tmp);
            using var shard = new TokenShardReader(Path.Combine(data, DataPreparer.TrainFile));
            Console.WriteLine($"Training speed, {threads} threads; {TorchRuntime.Describe()}");
            Console.WriteLine($"CPU: {CpuModel()}; bf16 matrix units (avx512_bf16 / amx_bf16): {(CpuFeatures.HasBf16MatrixUnits ? "yes" : "no")}");
            Console.WriteLine();

            // 1. fp32 model FLOPs utilisation against the fp32 matrix-product peak measured before and after (the larger counts).
            double peak = MatmulPeak(ScalarType.Float32);
            var config = Presets.Get(preset);
            using (var fp32 = MakeTrainer(config, shard, batch, seq, bf16: false, Path.Combine(tmp, "fp32")))
            {
                TimeSteps(fp32, 1);                                               // warm-up
                var times = Enumerable.Range(0, rounds).Select(_ => TimeSteps(fp32, steps)).ToList();
                peak = Math.Max(peak, MatmulPeak(ScalarType.Float32));
                var acc = ModelAccounting.Compute(config, seq);
                double modelFlopsPerToken = 6.0 * acc.TotalParams + 6.0 * config.NumHiddenLayers * seq * config.HiddenSize;
                double tokS = (double)batch * seq * steps / times.Order().ElementAt(times.Count / 2);
                Console.WriteLine($"fp32 matrix-product peak (best of 1024³ and 2048×768×2048 products, before and after): {peak / 1e9:F1} GFLOP/s");
                Console.WriteLine();
                Console.WriteLine("| model | batch × seq | tokens/s (median of rounds) | model FLOPs/token (6N + 6·L·T·d) | model GFLOP/s | % of fp32 matmul peak |");
                Console.WriteLine("|---|---|---:|---:|---:|---:|");
                Console.WriteLine($"| {preset} | {batch} × {seq} | {tokS:F0} | {modelFlopsPerToken / 1e6:F1} M | {tokS * modelFlopsPerToken / 1e9:F1} | {100 * tokS * modelFlopsPerToken / peak:F1}% |");
            }

            // 2. bf16 mode vs fp32 on the nano model: speed (interleaved single steps) and validation loss after the same steps.
            if (opt.Int("bf16", 1) == 0) return 0;   // --bf16 0: the fp32 utilisation only
            var nano = Presets.Get("nano-vanilla");
            double bf16Peak = MatmulPeak(ScalarType.BFloat16);
            using (var a = MakeTrainer(nano, shard, 8, 128, bf16: false, Path.Combine(tmp, "n32")))
            using (var b = MakeTrainer(nano, shard, 8, 128, bf16: true, Path.Combine(tmp, "n16")))
            {
                TimeSteps(a, 1); TimeSteps(b, 1);
                var ratios = new List<double>();
                for (int r = 0; r < rounds; r++)
                {
                    double ta, tb;
                    if (r % 2 == 0) { ta = TimeSteps(a, 1); tb = TimeSteps(b, 1); } else { tb = TimeSteps(b, 1); ta = TimeSteps(a, 1); }
                    ratios.Add(ta / tb);
                }
                ratios.Sort();
                Console.WriteLine();
                Console.WriteLine($"bf16 matrix-product speed: {bf16Peak / 1e9:F2} GFLOP/s (fp32: {peak / 1e9:F1})");
                Console.WriteLine($"bf16 mode speed / fp32 speed, nano-vanilla 8 × 128: {ratios[ratios.Count / 2]:F3} (paired rounds, {ratios[0]:F3}–{ratios[^1]:F3})");
            }
            if (lossSteps > 0)
            {
                var l32 = TrainForLoss(nano, data, lossSteps, bf16: false, Path.Combine(tmp, "l32"));
                var l16 = TrainForLoss(nano, data, lossSteps, bf16: true, Path.Combine(tmp, "l16"));
                Console.WriteLine($"validation NLL after {lossSteps} steps (nano-vanilla, 8 × 128 tokens/step, lr 3e-3, seed 1): fp32 {l32:F4}, bf16 {l16:F4}, difference {100 * (l16 - l32) / l32:+0.00;-0.00}%");
            }
            return 0;
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }

    private static string PrepareData(string tmp)
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
        var options = new TrainingOptions { Steps = steps, Batch = 8, Seq = 128, Bf16 = bf16, EvalEvery = 0, CheckpointEvery = 0, EvalBatches = 16, Seed = 1 };
        using var t = new Trainer(config, options, ShardBatchSource.Train(train, 8, 128, 1), ShardBatchSource.Validation(val, 8, 128), outDir);
        return t.Run().FinalValidation!.Loss;
    }

    /// <summary>Best fp32 GFLOP/s over a few large products (each timed over repeated calls after a warm-up).</summary>
    public static double MatmulPeak(ScalarType dtype)
    {
        double best = 0;
        foreach (var (m, k, n) in new[] { (1024, 1024, 1024), (2048, 768, 2048) })
        {
            using var scope = NewDisposeScope();
            var a = randn(m, k).to_type(dtype);
            var b = randn(k, n).to_type(dtype);
            matmul(a, b);
            for (int trial = 0; trial < (dtype == ScalarType.Float32 ? 3 : 1); trial++)
            {
                var sw = Stopwatch.StartNew();
                int reps = dtype == ScalarType.Float32 ? 8 : 1;
                for (int i = 0; i < reps; i++) matmul(a, b).Dispose();
                best = Math.Max(best, 2.0 * m * k * n * reps / sw.Elapsed.TotalSeconds);
            }
        }
        return best;
    }

    private static string CpuModel()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown"; }
        catch (IOException) { return "unknown"; }
    }
}
