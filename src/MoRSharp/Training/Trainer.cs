using System.Diagnostics;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using MoRSharp.Routing;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Training;

public sealed record TrainingSummary(long Steps, long TokensSeen, double WallSeconds, double TokensPerSecond, double FinalLoss,
    ValidationResult? FinalValidation, double FlopsPerTokenPaper, long UniqueParameters, string OutDir);

/// <summary>
/// The training loop: AdamW, LR schedule, gradient accumulation, clipping, the MoR routing losses, the token-choice
/// loss-free bias update, periodic validation and checkpoints, exact resume, and an optional bf16 mode.
/// <para><b>Routing losses under accumulation</b> (spec §10.7): every micro-batch contributes (LM + coeff·routing terms)/accum,
/// i.e. the optimizer sees the mean over micro-batches of LM + 0.001·ΣBCE (expert) or + 0.1·L_bal + 1e-5·L_z (token),
/// independent of how the batch is split. The official trainer's effective BCE weight grows with the number of
/// micro-batches (≈ 0.016 in the released runs); to reproduce that, raise <c>mor.aux_coeff</c> accordingly.</para>
/// <para><b>bf16 mode</b>: a bf16 copy of the model does forward and backward; fp32 master weights and the AdamW moments
/// are updated from its gradients (cast to fp32) and copied back each step. RMSNorm and the loss are computed in fp32.</para>
/// <para><b>Determinism</b>: the data position, the optimizer moments and the step are checkpointed, and the global torch RNG
/// (used only by random routers) is re-seeded from (seed, step, micro-batch), so a resumed run repeats the same losses.</para>
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly ModelConfig config;
    private readonly TrainingOptions options;
    private readonly IBatchSource train;
    private readonly Func<IBatchSource>? validation;
    private readonly string outDir;
    private readonly Action<string>? saveTokenizer;
    private readonly MoRForCausalLM master;
    private readonly MoRForCausalLM? compute;     // bf16 copy, or null (fp32: master computes)
    private readonly AdamW optimizer;
    private readonly ModelAccounting accounting;
    private readonly LrSchedule schedule;
    private readonly TrainerState state;
    private readonly List<(string name, Parameter master, Parameter? compute)> pairs;
    private readonly MetricsLog metrics;

    public event Action<StepMetrics>? StepCompleted;
    public event Action<ValidationResult>? Validated;
    public event Action<string>? CheckpointSaved;

    public MoRForCausalLM Model => master;
    public long TotalSteps => state.TotalSteps;
    public long Step => state.Step;
    public ModelAccounting Accounting => accounting;
    public List<ValidationResult> ValidationHistory { get; } = [];

    /// <param name="resumeFrom">A run folder or checkpoint folder to continue from (options and data position come from it).</param>
    public Trainer(ModelConfig config, TrainingOptions options, IBatchSource train, Func<IBatchSource>? validation, string outDir,
        Action<string>? saveTokenizer = null, string? resumeFrom = null)
    {
        TorchRuntime.Initialize();
        this.config = config;
        this.train = train;
        this.validation = validation;
        this.outDir = outDir;
        this.saveTokenizer = saveTokenizer;
        string? checkpoint = resumeFrom is null ? null : Checkpoint.Resolve(resumeFrom);
        state = checkpoint is null ? new TrainerState { Options = options } : Checkpoint.LoadState(checkpoint);
        this.options = state.Options;
        this.options.Validate();
        if (train.Batch != this.options.Batch || train.Seq != this.options.Seq)
            throw new ArgumentException($"data source gives {train.Batch}×{train.Seq} batches, options say {this.options.Batch}×{this.options.Seq}");
        ConfigValidator.Validate(config);
        if (this.options.Seq > config.MaxPositionEmbeddings)
            throw new ArgumentException($"--seq {this.options.Seq} exceeds the model's max_position_embeddings {config.MaxPositionEmbeddings}");

        accounting = ModelAccounting.Compute(config, this.options.Seq);
        if (checkpoint is null) state.TotalSteps = this.options.TotalSteps(accounting.FlopsPerTokenPaper);
        schedule = LrSchedule.Create(this.options.ScheduleKind, this.options.LearningRate, state.TotalSteps,
            this.options.WarmupFraction, this.options.CooldownFraction, this.options.MinLrRatio);

        master = new MoRForCausalLM(config, this.options.Seed);
        master.train();
        if (this.options.Bf16)
        {
            compute = new MoRForCausalLM(config, this.options.Seed);
            compute.to(ScalarType.BFloat16);
            compute.train();
        }
        var computeParams = compute?.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        pairs = master.named_parameters().Select(p => (p.name, p.parameter, computeParams?[p.name])).ToList();
        optimizer = new AdamW(pairs.Select(p => (p.name, p.master)), this.options.Beta1, this.options.Beta2, this.options.Eps, this.options.WeightDecay);

        if (checkpoint is not null)
        {
            ModelWeights.Load(master, Path.Combine(checkpoint, Checkpoint.ModelFile));
            using var opt = new SafeTensorsFile(Path.Combine(checkpoint, Checkpoint.OptimizerFile));
            optimizer.LoadState(name => opt.Tensors.ContainsKey(name) ? opt.Read(name) : null, state.Step, opt.Path);
            if (state.DataState is not null) train.RestoreState(state.DataState);
        }
        else if (this.options.InitFrom is { } init)
        {
            ModelWeights.Load(master, init);      // uptraining: start from a model folder's weights (fresh optimizer and schedule)
        }
        SyncCompute();

        // metrics.jsonl: one line per optimizer step; on resume, lines after the checkpoint are dropped so the file matches it.
        Directory.CreateDirectory(outDir);
        string metricsPath = Path.Combine(outDir, "metrics.jsonl");
        if (checkpoint is not null && File.Exists(metricsPath)) MetricsLog.TruncateAfterStep(metricsPath, state.Step);
        else if (checkpoint is null && File.Exists(metricsPath)) File.Delete(metricsPath);
        metrics = new MetricsLog(metricsPath, append: true);
    }

    public string MetricsPath => metrics.Path;

    /// <summary>Weight-decay-exempt parameters (the RMSNorm weights), for the log.</summary>
    public IEnumerable<string> DecayExempt => optimizer.DecayExempt;

    private MoRForCausalLM Computing => compute ?? master;

    private void SyncCompute()
    {
        if (compute is null) return;
        using var _ = no_grad();
        foreach (var (_, m, c) in pairs) c!.copy_(m);
        if (master.Model.RouterBias is { } mb) compute.Model.RouterBias!.copy_(mb);
    }

    /// <summary>Runs to the end of the budget (or until cancelled, after a checkpoint).</summary>
    public TrainingSummary Run(CancellationToken cancel = default)
    {
        Directory.CreateDirectory(outDir);
        var wall = Stopwatch.StartNew();
        double startElapsed = state.ElapsedSeconds;
        long startTokens = state.TokensSeen;
        double lastLoss = double.NaN;
        var mor = config.Recursion;
        while (state.Step < state.TotalSteps)
        {
            var step = TrainStep(wall, startElapsed);
            lastLoss = step.Loss;
            bool last = state.Step == state.TotalSteps;
            ValidationResult? v = null;
            if (validation is not null && (last || (options.EvalEvery > 0 && state.Step % options.EvalEvery == 0)))
            {
                v = Validate();
                ValidationHistory.Add(v);
            }
            metrics.Append(ToFields(step, v));
            if (v is not null) Validated?.Invoke(v);     // before StepCompleted, so a progress line shows this step's validation
            StepCompleted?.Invoke(step);
            if (last || (options.CheckpointEvery > 0 && state.Step % options.CheckpointEvery == 0) || cancel.IsCancellationRequested)
                SaveCheckpoint(startElapsed + wall.Elapsed.TotalSeconds);
            if (cancel.IsCancellationRequested) break;
        }
        Checkpoint.WriteModelFolder(outDir, master, saveTokenizer);
        double seconds = wall.Elapsed.TotalSeconds;
        return new TrainingSummary(state.Step, state.TokensSeen, startElapsed + seconds, (state.TokensSeen - startTokens) / Math.Max(seconds, 1e-9),
            lastLoss, ValidationHistory.LastOrDefault(), accounting.FlopsPerTokenPaper, accounting.TotalParams, outDir);
    }

    /// <summary>One optimizer step with no validation, checkpoint or metrics line (for benchmarks).</summary>
    public StepMetrics StepOnce() => TrainStep(Stopwatch.StartNew(), state.ElapsedSeconds);

    private void SaveCheckpoint(double elapsed)
    {
        state.ElapsedSeconds = elapsed;
        state.DataState = train.SaveState();
        var path = Checkpoint.Save(outDir, master, optimizer, state, saveTokenizer, options.KeepLast);
        CheckpointSaved?.Invoke(path);
    }

    private StepMetrics TrainStep(Stopwatch wall, double startElapsed)
    {
        var sw = Stopwatch.StartNew();
        var model = Computing;
        var mor = config.Recursion;
        int accum = options.GradAccum, numRec = master.Layout.NumRecursion;
        double lr = schedule.At(state.Step);
        double loss = 0, lm = 0, bce = 0, z = 0, bal = 0, auxR = 0, dead = 0, maxVio = 0, entropy = 0, samp = 0;
        bool hasBce = false, hasZ = false, hasBal = false, hasAux = false, hasDead = false, hasTok = false, hasSamp = false;
        var recTokens = new long[numRec];
        long totalTokens = 0;
        long[]? load = mor.RoutingKind == RoutingKind.Token ? new long[numRec] : null;

        foreach (var p in model.parameters()) p.grad?.zero_();
        for (int micro = 0; micro < accum; micro++)
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(unchecked(options.Seed * 1_000_003 + state.Step * 1_009 + micro));
            var ids = tensor(train.NextBatch(), dtype: ScalarType.Int64).view(options.Batch, options.Seq);
            var output = model.Forward(ids, RoutingMode.TopK);
            var lmLoss = MoRForCausalLM.NextTokenLoss(output.Logits, ids);       // computed once: the 50k-vocab loss is expensive
            var r = output.Routing;
            var total = r.WeightedLoss is null ? lmLoss : lmLoss + r.WeightedLoss.to_type(ScalarType.Float32);
            (total / accum).backward();

            loss += Value(total) / accum;
            lm += Value(lmLoss) / accum;
            if (r.BceLoss is { } b) { bce += Value(b) / accum; hasBce = true; }
            if (r.ZLoss is { } zz) { z += Value(zz) / accum; hasZ = true; }
            if (r.BalancingLoss is { } bl) { bal += Value(bl) / accum; hasBal = true; }
            if (r.AuxRouterLoss is { } ar) { auxR += Value(ar) / accum; hasAux = true; }
            if (r.DeadTokenFraction is { } d) { dead += d / accum; hasDead = true; }
            if (r.MaxVio is { } mv) { maxVio += mv / accum; entropy += r.Entropy!.Value / accum; hasTok = true; }
            if (r.SamplingAccuracy is { } sa) { samp += sa / accum; hasSamp = true; }
            for (int i = 0; i < numRec && i < r.TokensPerRecursion.Length; i++) recTokens[i] += r.TokensPerRecursion[i];
            totalTokens += r.TotalTokens;
            if (load is not null && r.LoadPerExpert is { } lp) for (int i = 0; i < numRec; i++) load[i] += lp[i];
        }

        double gradNorm = ClipGradients(model, options.ClipNorm);
        if (!double.IsFinite(loss) || !double.IsFinite(gradNorm))
            throw new TrainingException($"loss became {(double.IsFinite(loss) ? "finite but the gradient norm is " + gradNorm : loss.ToString())} at step {state.Step + 1} " +
                $"(LM loss {lm}, lr {lr:G3}); stopped before the update, no checkpoint of this state was written. " +
                $"Try a lower --lr or --bf16 off; the last good checkpoint is in {Checkpoint.Folder(outDir)}.");

        var computeParams = compute is null ? null : pairs.ToDictionary(p => p.name, p => p.compute!);
        optimizer.Update(lr, computeParams is null ? null : name => computeParams[name].grad);
        if (load is not null && mor.BalancingKind == BalancingKind.LossFree && !mor.RandomRouter)
            TokenChoiceRouting.UpdateBias(master.Model.RouterBias!, load, mor.BiasUpdateRate);
        SyncCompute();

        state.Step++;
        state.TokensSeen += options.TokensPerStep;
        double seconds = sw.Elapsed.TotalSeconds;
        return new StepMetrics
        {
            Step = state.Step, Loss = loss, LmLoss = lm, Lr = lr, GradNorm = gradNorm,
            BceLoss = hasBce ? bce : null, ZLoss = hasZ ? z : null, BalancingLoss = hasBal ? bal : null, AuxRouterLoss = hasAux ? auxR : null,
            TokensPerSecond = options.TokensPerStep / Math.Max(seconds, 1e-9), TokensSeen = state.TokensSeen,
            RecursionFractions = numRec > 1 || mor.RoutingKind != RoutingKind.None ? recTokens.Select(t => (double)t / totalTokens).ToArray() : null,
            DeadFraction = hasDead ? dead : null, MaxVio = hasTok ? maxVio : null, Entropy = hasTok ? entropy : null,
            SamplingAccuracy = hasSamp ? samp : null, ElapsedSeconds = startElapsed + wall.Elapsed.TotalSeconds,
        };
    }

    private Dictionary<string, object?> ToFields(StepMetrics m, ValidationResult? v)
    {
        var f = new Dictionary<string, object?>
        {
            ["step"] = m.Step, ["loss"] = m.Loss, ["lm_loss"] = m.LmLoss, ["lr"] = m.Lr, ["grad_norm"] = m.GradNorm,
            ["tokens_per_s"] = m.TokensPerSecond, ["tokens"] = m.TokensSeen, ["elapsed_s"] = m.ElapsedSeconds,
        };
        if (m.BceLoss is { } b) f["bce_loss"] = b;
        if (m.ZLoss is { } z) f["z_loss"] = z;
        if (m.BalancingLoss is { } bal) f["balancing_loss"] = bal;
        if (m.AuxRouterLoss is { } ar) f["aux_router_loss"] = ar;
        if (m.RecursionFractions is { } rf) f["recursion_fraction"] = rf;
        if (m.DeadFraction is { } d) f["dead_fraction"] = d;
        if (m.MaxVio is { } mv) f["maxvio"] = mv;
        if (m.Entropy is { } e) f["entropy"] = e;
        if (m.SamplingAccuracy is { } sa) f["sampling_accuracy"] = sa;
        if (v is not null)
        {
            f["val_loss"] = v.Loss;
            if (v.LossTopK is { } lt) f["val_loss_topk"] = lt;
        }
        return f;
    }

    private static double Value(Tensor t) => t.dtype == ScalarType.Float32 ? t.item<float>() : t.to_type(ScalarType.Float32).item<float>();

    /// <summary>Global L2 norm of all gradients (computed in fp32), scaled down in place to <paramref name="max"/> when larger (0 = no clipping).</summary>
    public static double ClipGradients(nn.Module model, double max)
    {
        using var scope = NewDisposeScope();
        var grads = model.parameters().Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return 0;
        var sq = grads.Select(g => g.to_type(ScalarType.Float32).pow(2).sum()).Aggregate((a, b) => a + b);
        double norm = Math.Sqrt(sq.item<float>());
        if (max > 0 && double.IsFinite(norm) && norm > max)
        {
            using var _ = no_grad();
            double scale = max / (norm + 1e-6);
            foreach (var g in grads) g.mul_(scale);
        }
        return norm;
    }

    /// <summary>Mean next-token NLL over the validation batches: causal routing (what generation sees) and, for expert-choice, training top-k.</summary>
    public ValidationResult Validate()
    {
        var source = validation?.Invoke() ?? throw new InvalidOperationException("no validation data");
        bool topK = config.Recursion.RoutingKind == RoutingKind.Expert;
        double causal = 0, leaky = 0;
        long tokens = 0;
        master.eval();
        try
        {
            using var _ = no_grad();
            for (int i = 0; i < options.EvalBatches; i++)
            {
                using var scope = NewDisposeScope();
                var ids = tensor(source.NextBatch(), dtype: ScalarType.Int64).view(source.Batch, source.Seq);
                causal += MoRForCausalLM.NextTokenLoss(master.Forward(ids, RoutingMode.Causal).Logits, ids).item<float>();
                if (topK) leaky += MoRForCausalLM.NextTokenLoss(master.Forward(ids, RoutingMode.TopK).Logits, ids).item<float>();
                tokens += (long)source.Batch * (source.Seq - 1);
            }
        }
        finally { master.train(); }
        int n = Math.Max(1, options.EvalBatches);
        return new ValidationResult(state.Step, causal / n, topK ? leaky / n : null, tokens);
    }

    public void Dispose()
    {
        metrics.Dispose();
        optimizer.Dispose();
        compute?.Dispose();
        master.Dispose();
    }
}
