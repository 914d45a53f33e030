using System.Diagnostics;
using MoRSharp.Config;
using MoRSharp.Evaluation;
using MoRSharp.IO;
using MoRSharp.Model;
using MoRSharp.Modalities;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Training;

/// <summary>What one optimizer step of a classifier did (averaged over its micro-batches).</summary>
public sealed record ClassificationStep(long Step, double Loss, double CrossEntropy, double? BceLoss, double? ZLoss, double Lr, double GradNorm,
    double TrainAccuracy, double ExamplesPerSecond, long ExamplesSeen, double[]? RecursionFractions, double ElapsedSeconds);

public sealed record ClassificationSummary(long Steps, long ExamplesSeen, double WallSeconds, double FinalLoss, ClassificationResult? FinalEval,
    EncoderAccounting Accounting, string OutDir);

/// <summary>
/// Training loop for the image/audio classifiers. It is a separate class from the LM <see cref="Trainer"/> because that loop is
/// built around token batches (<see cref="IBatchSource"/>), next-token loss, causal/top-k validation, bf16 copies and the
/// token-choice bias; what carries over is reused as is: <see cref="AdamW"/> (decay on matrices, norms exempt),
/// <see cref="LrSchedule"/>, <see cref="TrainingOptions"/> (budgets, schedule, clipping, accumulation, eval/checkpoint cadence),
/// <see cref="Trainer.ClipGradients"/>, <see cref="Checkpoint"/> (atomic step folders, keep-last, exact resume) and
/// <see cref="MetricsLog"/>.
/// <para>Units: <see cref="TrainingOptions.Batch"/> = examples per micro-batch, <see cref="TrainingOptions.Seq"/> = tokens per
/// example (patches or frames + class token; set from the encoder). A <c>--flops</c> budget is forward FLOPs per example
/// (<see cref="EncoderAccounting"/>, exact count, bidirectional) × training examples.</para>
/// <para>Loss = cross-entropy + the config-weighted routing losses (expert-choice BCE, z-loss), mean over micro-batches.
/// Every step re-seeds the global RNG from (seed, step, micro-batch) (only random routers use it), and the example order is
/// an <see cref="ExampleSampler"/> whose state is checkpointed, so a resumed run repeats the uninterrupted one.</para>
/// </summary>
public sealed class ClassificationTrainer : IDisposable
{
    private readonly TrainingOptions options;
    private readonly LabeledExamples train;
    private readonly LabeledExamples? eval;
    private readonly string outDir;
    private readonly MoRForClassification model;
    private readonly AdamW optimizer;
    private readonly LrSchedule schedule;
    private readonly TrainerState state;
    private readonly ExampleSampler sampler;
    private readonly MetricsLog metrics;

    public event Action<ClassificationStep>? StepCompleted;
    public event Action<ClassificationResult>? Evaluated;

    public MoRForClassification Model => model;
    public EncoderAccounting Accounting { get; }
    public long TotalSteps => state.TotalSteps;
    public long Step => state.Step;
    public string MetricsPath => metrics.Path;

    /// <param name="resumeFrom">A run folder or one of its checkpoints: options, weights, moments and the data position come from it.</param>
    public ClassificationTrainer(ModelConfig config, EncoderConfig encoder, TrainingOptions options, LabeledExamples train, LabeledExamples? eval,
        string outDir, string? resumeFrom = null)
    {
        TorchRuntime.Initialize();
        this.train = train;
        this.eval = eval;
        this.outDir = outDir;
        string? checkpoint = resumeFrom is null ? null : Checkpoint.Resolve(resumeFrom);
        state = checkpoint is null ? new TrainerState { Options = options } : Checkpoint.LoadState(checkpoint);
        this.options = state.Options;
        this.options.Validate();
        if (this.options.Bf16) throw new ArgumentException("--bf16 is not supported for the classifiers (fp32 only)");
        if (this.options.Seq != encoder.Tokens)
            throw new ArgumentException($"options give {this.options.Seq} tokens per example, the encoder makes {encoder.Tokens}");
        Accounting = EncoderAccounting.Compute(config, encoder);
        if (checkpoint is null) state.TotalSteps = this.options.TotalSteps(Accounting.FlopsPerExample / encoder.Tokens);
        schedule = LrSchedule.Create(this.options.ScheduleKind, this.options.LearningRate, state.TotalSteps,
            this.options.WarmupFraction, this.options.CooldownFraction, this.options.MinLrRatio);

        model = new MoRForClassification(config, encoder, this.options.Seed);
        model.train();
        optimizer = new AdamW(model.named_parameters(), this.options.Beta1, this.options.Beta2, this.options.Eps, this.options.WeightDecay);
        sampler = new ExampleSampler(train.Count, this.options.Batch, this.options.Seed);
        if (checkpoint is not null)
        {
            ModelWeights.Load(model, Path.Combine(checkpoint, MoRForClassification.WeightsFile));
            using var opt = new SafeTensorsFile(Path.Combine(checkpoint, Checkpoint.OptimizerFile));
            optimizer.LoadState(name => opt.Tensors.ContainsKey(name) ? opt.Read(name) : null, state.Step, opt.Path);
            if (state.DataState is not null) sampler.RestoreState(state.DataState);
        }

        Directory.CreateDirectory(outDir);
        string metricsPath = Path.Combine(outDir, "metrics.jsonl");
        if (checkpoint is not null && File.Exists(metricsPath)) MetricsLog.TruncateAfterStep(metricsPath, state.Step);
        else if (checkpoint is null && File.Exists(metricsPath)) File.Delete(metricsPath);
        metrics = new MetricsLog(metricsPath, append: true);
    }

    public List<ClassificationResult> EvalHistory { get; } = [];

    /// <summary>Runs to the end of the budget (or until cancelled, after a checkpoint); writes the model folder into the output folder.</summary>
    public ClassificationSummary Run(CancellationToken cancel = default)
    {
        var wall = Stopwatch.StartNew();
        double startElapsed = state.ElapsedSeconds;
        double lastLoss = double.NaN;
        while (state.Step < state.TotalSteps)
        {
            var step = TrainStep(wall, startElapsed);
            lastLoss = step.Loss;
            bool last = state.Step == state.TotalSteps;
            ClassificationResult? v = null;
            if (eval is not null && (last || (options.EvalEvery > 0 && state.Step % options.EvalEvery == 0)))
            {
                v = ClassificationEval.Evaluate(model, eval);
                EvalHistory.Add(v);
            }
            metrics.Append(ToFields(step, v));
            if (v is not null) Evaluated?.Invoke(v);
            StepCompleted?.Invoke(step);
            if (last || (options.CheckpointEvery > 0 && state.Step % options.CheckpointEvery == 0) || cancel.IsCancellationRequested)
            {
                state.ElapsedSeconds = startElapsed + wall.Elapsed.TotalSeconds;
                state.DataState = sampler.SaveState();
                Checkpoint.Save(outDir, model.Save, optimizer, state, options.KeepLast);
            }
            if (cancel.IsCancellationRequested) break;
        }
        model.Save(outDir);
        return new ClassificationSummary(state.Step, state.Step * options.Batch * options.GradAccum, startElapsed + wall.Elapsed.TotalSeconds,
            lastLoss, EvalHistory.LastOrDefault(), Accounting, outDir);
    }

    private ClassificationStep TrainStep(Stopwatch wall, double startElapsed)
    {
        var sw = Stopwatch.StartNew();
        int accum = options.GradAccum, numRec = model.Layout.NumRecursion;
        double lr = schedule.At(state.Step);
        double loss = 0, ce = 0, bce = 0, z = 0, correct = 0;
        bool hasBce = false, hasZ = false;
        var recTokens = new long[numRec];
        long totalTokens = 0;
        var mor = model.Config.Recursion;
        long[]? load = mor.RoutingKind == RoutingKind.Token ? new long[numRec] : null;   // token-choice: tokens per depth, for the loss-free bias
        optimizer.ZeroGrad();
        for (int micro = 0; micro < accum; micro++)
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(unchecked(options.Seed * 1_000_003 + state.Step * 1_009 + micro));
            var (x, y) = train.Batch(sampler.Next());
            var output = model.Forward(x);
            var ceLoss = nn.functional.cross_entropy(output.Logits.to_type(ScalarType.Float32), y);
            var r = output.Routing;
            var total = r.WeightedLoss is null ? ceLoss : ceLoss + r.WeightedLoss.to_type(ScalarType.Float32);
            (total / accum).backward();
            loss += total.item<float>() / accum;
            ce += ceLoss.item<float>() / accum;
            correct += output.Logits.argmax(-1).eq(y).sum().item<long>();
            if (r.BceLoss is { } b) { bce += b.item<float>() / accum; hasBce = true; }
            if (r.ZLoss is { } zz) { z += zz.item<float>() / accum; hasZ = true; }
            for (int i = 0; i < numRec && i < r.TokensPerRecursion.Length; i++) recTokens[i] += r.TokensPerRecursion[i];
            if (load is not null && r.LoadPerExpert is { } lp) for (int i = 0; i < numRec; i++) load[i] += lp[i];
            totalTokens += r.TotalTokens;
        }
        double gradNorm = Trainer.ClipGradients(model, options.ClipNorm);
        if (!double.IsFinite(loss) || !double.IsFinite(gradNorm))
            throw new TrainingException($"loss {loss}, gradient norm {gradNorm} at step {state.Step + 1} (lr {lr:G3}); stopped before the update. " +
                                        $"Try a lower --lr; the last good checkpoint is in {Checkpoint.Folder(outDir)}.");
        optimizer.Update(lr);
        // the loss-free bias moves once per optimizer step, from the load of all its micro-batches (as in the LM trainer)
        if (load is not null && mor.BalancingKind == BalancingKind.LossFree && !mor.RandomRouter)
            TokenChoiceRouting.UpdateBias(model.Model.RouterBias!, load, mor.BiasUpdateRate);
        state.Step++;
        state.TokensSeen += options.TokensPerStep;
        long examples = (long)options.Batch * accum;
        return new ClassificationStep(state.Step, loss, ce, hasBce ? bce : null, hasZ ? z : null, lr, gradNorm, correct / examples,
            examples / Math.Max(sw.Elapsed.TotalSeconds, 1e-9), state.Step * examples,
            numRec > 1 ? recTokens.Select(t => (double)t / totalTokens).ToArray() : null, startElapsed + wall.Elapsed.TotalSeconds);
    }

    private static Dictionary<string, object?> ToFields(ClassificationStep m, ClassificationResult? v)
    {
        var f = new Dictionary<string, object?>
        {
            ["step"] = m.Step, ["loss"] = m.Loss, ["ce_loss"] = m.CrossEntropy, ["lr"] = m.Lr, ["grad_norm"] = m.GradNorm,
            ["train_accuracy"] = m.TrainAccuracy, ["examples"] = m.ExamplesSeen, ["examples_per_s"] = m.ExamplesPerSecond, ["elapsed_s"] = m.ElapsedSeconds,
        };
        if (m.BceLoss is { } b) f["bce_loss"] = b;
        if (m.ZLoss is { } z) f["z_loss"] = z;
        if (m.RecursionFractions is { } rf) f["recursion_fraction"] = rf;
        if (v is not null)
        {
            f["val_loss"] = v.Loss;
            f["val_accuracy"] = v.Accuracy;
            if (v.MeanDepth is { } d) f["val_mean_depth"] = d;
        }
        return f;
    }

    public void Dispose()
    {
        metrics.Dispose();
        optimizer.Dispose();
        model.Dispose();
    }
}
