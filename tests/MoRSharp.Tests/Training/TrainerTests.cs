using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Training;

namespace MoRSharp.Tests.Training;

/// <summary>Sequential windows over a fixed token array; its state is the cursor.</summary>
public sealed class ArrayBatchSource(long[] tokens, int batch, int seq) : IBatchSource
{
    private long cursor;
    public int Batch => batch;
    public int Seq => seq;

    public long[] NextBatch()
    {
        var result = new long[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            if (cursor + seq > tokens.Length) cursor = 0;
            Array.Copy(tokens, cursor, result, b * seq, seq);
            cursor += seq / 2 + 1;   // overlapping windows, so batches differ step to step
        }
        return result;
    }

    public JsonNode SaveState() => new JsonObject { ["cursor"] = cursor };
    public void RestoreState(JsonNode state) => cursor = state["cursor"]!.GetValue<long>();

    /// <summary>A learnable pattern: counting modulo a small period with occasional noise.</summary>
    public static long[] Pattern(int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(i => (long)(rng.NextDouble() < 0.1 ? rng.Next(vocab) : (i * 7) % Math.Min(vocab, 13))).ToArray();
    }
}

public class TrainerTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("mor-trainer-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    private static ModelConfig Config(string routing = "expert") => TestConfigs.Tiny(routing, hidden: 32, heads: 2, kvHeads: 1, vocab: 32, context: 32);

    private static TrainingOptions Options(long steps) => new()
    {
        Steps = steps, Batch = 4, Seq = 16, LearningRate = 3e-3, EvalEvery = 0, CheckpointEvery = 0, Seed = 5,
    };

    private static ArrayBatchSource Data() => new(ArrayBatchSource.Pattern(4000, 32, 1), 4, 16);

    private static List<double> Losses(Trainer t)
    {
        var losses = new List<double>();
        t.StepCompleted += m => losses.Add(m.Loss);
        t.Run();
        return losses;
    }

    [Theory]
    [InlineData("none")]
    [InlineData("expert")]
    [InlineData("token")]
    public void Loss_goes_down(string routing)
    {
        using var t = new Trainer(Config(routing), Options(40), Data(), null, Path.Combine(dir, routing));
        var losses = Losses(t);
        Assert.Equal(40, losses.Count);
        Assert.True(losses.TakeLast(5).Average() < losses.Take(5).Average() - 0.5, $"first {losses.Take(5).Average():F3}, last {losses.TakeLast(5).Average():F3}");
    }

    [Fact]
    public void Resume_from_a_checkpoint_repeats_the_same_losses()
    {
        var options = Options(12);
        options.CheckpointEvery = 5;
        options.KeepLast = 5;
        List<double> full;
        using (var t = new Trainer(Config(), options, Data(), null, Path.Combine(dir, "full"))) full = Losses(t);

        // Same run, then restart from its step-5 checkpoint with a fresh data source.
        using (var t = new Trainer(Config(), options, Data(), null, Path.Combine(dir, "cut"))) Losses(t);
        string step5 = Path.Combine(dir, "cut", "checkpoints", "step-00000005");
        Assert.True(Directory.Exists(step5));
        List<double> resumed;
        using (var t = new Trainer(Config(), new TrainingOptions(), Data(), null, Path.Combine(dir, "cut"), resumeFrom: step5))
        {
            Assert.Equal(5, t.Step);
            resumed = Losses(t);
        }
        Assert.Equal(full.Skip(5), resumed);      // bitwise: same numbers, not just close
    }

    [Fact]
    public void Gradient_accumulation_matches_one_big_batch()
    {
        var one = Options(1); one.Batch = 4;
        var two = Options(1); two.Batch = 2; two.GradAccum = 2;
        using var a = new Trainer(Config(), one, new ArrayBatchSource(ArrayBatchSource.Pattern(4000, 32, 1), 4, 16), null, Path.Combine(dir, "a"));
        using var b = new Trainer(Config(), two, new ArrayBatchSource(ArrayBatchSource.Pattern(4000, 32, 1), 2, 16), null, Path.Combine(dir, "b"));
        var la = Losses(a);
        var lb = Losses(b);
        Assert.Equal(la[0], lb[0], 5);
        var pa = a.Model.state_dict();
        var pb = b.Model.state_dict();
        foreach (var (name, t) in pa)
            Assert.True((t - pb[name]).abs().max().item<float>() < 1e-5, $"{name} differs after one step");
    }

    [Fact]
    public void Nan_loss_stops_with_a_clear_message_and_no_checkpoint()
    {
        var options = Options(20);
        options.LearningRate = 1e6;
        options.CheckpointEvery = 1;
        options.ClipNorm = 0;
        using var t = new Trainer(Config(), options, Data(), null, Path.Combine(dir, "nan"));
        var e = Assert.Throws<TrainingException>(() => t.Run());
        Assert.Contains("step", e.Message);
        long failed = t.Step + 1;
        Assert.DoesNotContain(Checkpoint.List(Path.Combine(dir, "nan")), c => c.EndsWith($"step-{failed:D8}"));
        foreach (var c in Checkpoint.List(Path.Combine(dir, "nan")))
        {
            using var f = new MoRSharp.IO.SafeTensorsFile(Path.Combine(c, Checkpoint.ModelFile));
            foreach (var name in f.Tensors.Keys)
            {
                using var w = f.Read(name);
                Assert.True(w.isfinite().all().item<bool>(), $"{c}: {name} has non-finite values");
            }
        }
    }

    [Fact]
    public void Bf16_mode_trains_with_fp32_master_weights()
    {
        var options = Options(30);
        options.Bf16 = true;
        using var t = new Trainer(Config(), options, Data(), null, Path.Combine(dir, "bf16"));
        var losses = Losses(t);
        Assert.All(t.Model.parameters(), p => Assert.Equal(TorchSharp.torch.ScalarType.Float32, p.dtype));
        Assert.True(losses.TakeLast(5).Average() < losses.Take(5).Average() - 0.5);
    }

    [Fact]
    public void Flops_budget_gives_steps_from_the_paper_accounting()
    {
        var options = Options(1);
        options.Steps = null;
        options.Flops = 1e12;
        var acc = MoRSharp.Model.ModelAccounting.Compute(Config(), options.Seq);
        Assert.Equal((long)Math.Floor(1e12 / acc.FlopsPerTokenPaper / options.TokensPerStep), options.TotalSteps(acc.FlopsPerTokenPaper));
        options.Steps = 3;
        Assert.Throws<ArgumentException>(() => options.TotalSteps(acc.FlopsPerTokenPaper));   // two budgets
    }

    [Fact]
    public void Trapezoid_schedule_warms_up_holds_and_cools_down_to_zero()
    {
        var s = LrSchedule.Create(ScheduleKind.Trapezoid, 1.0, 100, 0.05, 0.2);
        Assert.Equal(0.2, s.At(0), 9);
        Assert.Equal(1.0, s.At(4), 9);
        Assert.Equal(1.0, s.At(79), 9);
        Assert.True(s.At(90) < 1.0 && s.At(90) > 0);
        Assert.Equal(0.0, s.At(99), 9);
        var c = LrSchedule.Create(ScheduleKind.Cosine, 1.0, 100, 0.1, 0, 0.1);
        Assert.Equal(1.0, c.At(10), 9);
        Assert.Equal(0.1, c.At(100), 9);
    }
}
