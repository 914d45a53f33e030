using System.Text.Json.Serialization;

namespace MoRSharp.Training;

/// <summary>
/// What to train and how. Defaults follow the paper's recipe where it applies to small CPU runs (spec §4.2):
/// AdamW β 0.9/0.95, weight decay 0.1, clip 1.0, trapezoid schedule with 5% warm-up and 20% linear cool-down.
/// The budget is one of <see cref="Steps"/>, <see cref="Tokens"/> or <see cref="Flops"/> (paper accounting: forward FLOPs per
/// token × tokens, spec §4.4 — the isoFLOP protocol).
/// </summary>
public sealed class TrainingOptions
{
    [JsonPropertyName("steps")] public long? Steps { get; set; }
    [JsonPropertyName("tokens")] public long? Tokens { get; set; }
    [JsonPropertyName("flops")] public double? Flops { get; set; }
    [JsonPropertyName("batch")] public int Batch { get; set; } = 8;                 // sequences per micro-batch
    [JsonPropertyName("seq")] public int Seq { get; set; } = 256;                   // tokens per sequence
    [JsonPropertyName("grad_accum")] public int GradAccum { get; set; } = 1;        // micro-batches per optimizer step
    [JsonPropertyName("lr")] public double LearningRate { get; set; } = 3e-3;       // peak (the paper's 3e-3)
    [JsonPropertyName("min_lr_ratio")] public double MinLrRatio { get; set; } = 0;
    [JsonPropertyName("schedule")] public string Schedule { get; set; } = "trapezoid";   // trapezoid (= wsd) | cosine | constant
    [JsonPropertyName("warmup")] public double WarmupFraction { get; set; } = 0.05;
    [JsonPropertyName("cooldown")] public double CooldownFraction { get; set; } = 0.2;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; set; } = 0.1;
    [JsonPropertyName("beta1")] public double Beta1 { get; set; } = 0.9;
    [JsonPropertyName("beta2")] public double Beta2 { get; set; } = 0.95;
    [JsonPropertyName("eps")] public double Eps { get; set; } = 1e-8;
    [JsonPropertyName("clip")] public double ClipNorm { get; set; } = 1.0;
    [JsonPropertyName("seed")] public long Seed { get; set; } = 0;
    [JsonPropertyName("bf16")] public bool Bf16 { get; set; }
    [JsonPropertyName("eval_every")] public int EvalEvery { get; set; } = 100;
    [JsonPropertyName("eval_batches")] public int EvalBatches { get; set; } = 8;
    [JsonPropertyName("checkpoint_every")] public int CheckpointEvery { get; set; } = 200;
    [JsonPropertyName("keep_last")] public int KeepLast { get; set; } = 2;
    /// <summary>A model folder whose weights start the run instead of a random init (uptraining, e.g. after <c>mor convert</c>).</summary>
    [JsonPropertyName("init_from")] public string? InitFrom { get; set; }

    [JsonIgnore] public long TokensPerStep => (long)Batch * Seq * GradAccum;

    public ScheduleKind ScheduleKind => Schedule switch
    {
        "trapezoid" or "wsd" => ScheduleKind.Trapezoid,
        "cosine" => ScheduleKind.Cosine,
        "constant" => ScheduleKind.Constant,
        _ => throw new ArgumentException($"--schedule: '{Schedule}' is not one of trapezoid|wsd|cosine|constant"),
    };

    /// <summary>Optimizer steps for the budget; <paramref name="paperFlopsPerToken"/> is the forward FLOPs per token (spec §4.4).</summary>
    public long TotalSteps(double paperFlopsPerToken)
    {
        int given = (Steps.HasValue ? 1 : 0) + (Tokens.HasValue ? 1 : 0) + (Flops.HasValue ? 1 : 0);
        if (given != 1) throw new ArgumentException("give exactly one budget: --steps N, --tokens N or --flops F");
        long steps = Steps ?? (Tokens.HasValue ? Tokens.Value / TokensPerStep : (long)Math.Floor(Flops!.Value / paperFlopsPerToken / TokensPerStep));
        if (steps < 1) throw new ArgumentException($"the budget gives {steps} optimizer steps at {TokensPerStep:N0} tokens per step; raise it");
        return steps;
    }

    public void Validate()
    {
        if (Batch < 1) throw new ArgumentException("--batch must be at least 1");
        if (Seq < 2) throw new ArgumentException("--seq must be at least 2");
        if (GradAccum < 1) throw new ArgumentException("--grad-accum must be at least 1");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentException("--lr must be a positive number");
        if (WarmupFraction < 0 || CooldownFraction < 0 || WarmupFraction + CooldownFraction > 1) throw new ArgumentException("--warmup and --cooldown are fractions of the steps summing to at most 1");
        if (ClipNorm < 0) throw new ArgumentException("--clip must be ≥ 0 (0 = off)");
        if (EvalEvery < 0 || CheckpointEvery < 0) throw new ArgumentException("--eval-every and --checkpoint-every must be ≥ 0 (0 = off)");
        if (KeepLast < 1) throw new ArgumentException("--keep-last must be at least 1");
        _ = ScheduleKind;
    }
}
