namespace MoRSharp.Training;

public enum ScheduleKind { Trapezoid, Cosine, Constant }

/// <summary>
/// Learning-rate schedules (spec §4.2). Trapezoid = warmup-stable-decay (WSD): linear warm-up to the peak, constant,
/// then a linear cool-down to <c>min_lr</c> over the last fraction of the steps ([P] App. D). Cosine: linear warm-up, then
/// cosine annealing to <c>min_lr</c> (the paper's ablations). Steps are 0-based; the rate of step s is used for update s+1.
/// </summary>
public sealed record LrSchedule(ScheduleKind Kind, double PeakLr, long TotalSteps, long WarmupSteps, long CooldownSteps, double MinLr = 0)
{
    public static LrSchedule Create(ScheduleKind kind, double peak, long total, double warmupFraction, double cooldownFraction, double minLrRatio = 0) =>
        new(kind, peak, total, (long)Math.Round(warmupFraction * total), (long)Math.Round(cooldownFraction * total), peak * minLrRatio);

    public double At(long step)
    {
        if (Kind == ScheduleKind.Constant) return PeakLr;
        if (WarmupSteps > 0 && step < WarmupSteps) return PeakLr * (step + 1) / WarmupSteps;
        if (Kind == ScheduleKind.Cosine)
        {
            double progress = TotalSteps <= WarmupSteps ? 1 : Math.Clamp((double)(step - WarmupSteps) / (TotalSteps - WarmupSteps), 0, 1);
            return MinLr + (PeakLr - MinLr) * 0.5 * (1 + Math.Cos(Math.PI * progress));
        }
        long decayStart = TotalSteps - CooldownSteps;
        if (CooldownSteps <= 0 || step < decayStart) return PeakLr;
        double frac = (double)(step - decayStart + 1) / CooldownSteps;                     // reaches min_lr at the last step
        return PeakLr - (PeakLr - MinLr) * Math.Clamp(frac, 0, 1);
    }
}
