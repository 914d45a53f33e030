using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.Modalities;
using MoRSharp.Reporting;
using MoRSharp.Tests.Cli;
using MoRSharp.Training;

namespace MoRSharp.Tests.Modalities;

/// <summary>
/// Trains one small MoR image classifier once for the tests of this class: expert-choice N_r = 3, Middle-Cycle
/// 1 + 1·3 + 1 layers, d = 32 (2 heads, FFN 96), 7×7 patches (16 tokens), 400 steps × 64 images (3.2 epochs of the
/// 8,000 training images), lr 1e-2, init 1/√d. About 20 s of one core.
/// </summary>
public sealed class TrainedMnistModel : IDisposable
{
    public string Dir { get; } = ModalityTestUtil.TempDir("mnist-model");
    public ClassificationSummary Summary { get; }

    public TrainedMnistModel()
    {
        var encoder = ModalityTestUtil.ImagePatch7();
        var config = ModalityTestUtil.TinyStack(encoder, init: 1 / Math.Sqrt(32));
        config.HiddenSize = 32;
        config.IntermediateSize = 96;
        var data = TaskData.Load(encoder, ModalityTestUtil.Mnist);
        var options = new TrainingOptions { Steps = 400, Batch = 64, Seq = encoder.Tokens, LearningRate = 1e-2, EvalEvery = 0, CheckpointEvery = 0 };
        using var trainer = new ClassificationTrainer(config, encoder, options, data.Train, data.Eval, Dir);
        Summary = trainer.Run();
        File.WriteAllText(Path.Combine(Dir, "run.json"), new JsonObject { ["data"] = ModalityTestUtil.Mnist, ["task"] = encoder.Task }.ToJsonString());
    }

    public void Dispose() => Directory.Delete(Dir, true);
}

public class ClassifierTrainingTests(TrainedMnistModel trained) : IClassFixture<TrainedMnistModel>
{
    [Fact]
    public void TinyMoRImageModel_LearnsMnistAbove90PercentValidation()
    {
        var eval = trained.Summary.FinalEval!;
        Assert.Equal(2000, eval.Examples);                               // the held-out fifth of the MNIST file
        Assert.True(eval.Accuracy > 0.90, $"validation accuracy {eval.Accuracy:P2}");
        Assert.Equal((16 + 10 + 5) / 16.0, eval.MeanDepth!.Value, 6);  // k = 16, 10, 5 of 16 patches
        Assert.Equal(400, MetricsLog.Read(Path.Combine(trained.Dir, "metrics.jsonl")).Count);
        Assert.Single(Checkpoint.List(trained.Dir));
    }

    [Fact]
    public void Eval_PrintsAccuracyAndConfusion_AndWritesDepthMapPngs()
    {
        string maps = ModalityTestUtil.TempDir("maps");
        try
        {
            var (code, stdout, stderr) = CliRunner.Run("eval", "--task", "image-classification", "--model", trained.Dir, "--depth-map", maps, "--threads", "1");
            Assert.True(code == 0, stderr);
            Assert.Contains($"{100 * trained.Summary.FinalEval!.Accuracy:F2}%", stdout);   // the same number as the trainer's evaluation
            Assert.Contains("confusion matrix (rows: true label, columns: predicted)", stdout);
            Assert.Contains("FLOPs/example", stdout);
            var pngs = Directory.GetFiles(maps, "*.png").Order().ToArray();
            Assert.Equal(11, pngs.Length);                               // the first validation image of each digit + the mean map
            Assert.Contains(pngs, p => Path.GetFileName(p) == "image-mean-depth.png");
            foreach (var png in pngs) Assert.Equal((680, 560), ModalityTestUtil.DecodePng(png));
        }
        finally { Directory.Delete(maps, true); }
    }

    [Fact]
    public void Eval_RefusesAnotherTask()
    {
        var (code, _, stderr) = CliRunner.Run("eval", "--task", "audio-classification", "--model", trained.Dir);
        Assert.Equal(2, code);
        Assert.Contains("holds an image-classification model", stderr);
        (code, _, stderr) = CliRunner.Run("eval", "--task", "video-classification", "--model", trained.Dir);
        Assert.Equal(2, code);
        Assert.Contains("image-classification|audio-classification", stderr);
    }
}

/// <summary>The classifier commands end to end on audio, exact resume, and bad input at the command line.</summary>
public class ClassifierCommandTests
{
    [Fact]
    public void AudioTrainAndEval_WriteModelMetricsAndDepthStrips()
    {
        string run = ModalityTestUtil.TempDir("fsdd-run"), maps = Path.Combine(run, "maps");
        try
        {
            var (code, stdout, stderr) = CliRunner.Run("train", "--task", "audio-classification", "--data", ModalityTestUtil.Fsdd, "--out", run,
                "--steps", "3", "--batch", "8", "--threads", "1");
            Assert.True(code == 0, stderr);
            Assert.Contains("takes 5–9: george 50, jackson 50, lucas 50, nicolas 50, theo 50, yweweler 50", stderr);
            Assert.Contains("test accuracy", stdout);
            foreach (var f in new[] { "config.json", "encoder.json", "model.safetensors", "metrics.jsonl", "loss.png" })
                Assert.True(File.Exists(Path.Combine(run, f)), f);

            (code, stdout, stderr) = CliRunner.Run("eval", "--task", "audio-classification", "--model", run, "--depth-map", maps, "--json", "--threads", "1");
            Assert.True(code == 0, stderr);
            var json = JsonNode.Parse(stdout)!;
            Assert.Equal(300, json["examples"]!.GetValue<int>());
            Assert.Equal(6, json["per_speaker"]!.AsObject().Count);
            Assert.Equal(64, json["tokens_per_example"]!.GetValue<int>());
            var pngs = json["depth_maps"]!.AsArray().Select(p => p!.GetValue<string>()).ToArray();
            Assert.Equal(11, pngs.Length);
            foreach (var png in pngs) Assert.Equal((1000, 420), ModalityTestUtil.DecodePng(png));
        }
        finally { Directory.Delete(run, true); }
    }

    [Fact]
    public void TokenChoiceClassifier_TrainsAndMovesItsLossFreeBias()
    {
        var encoder = ModalityTestUtil.ImagePatch7();
        var config = ModalityTestUtil.TinyStack(encoder, "tiny-mor-token");
        config.Recursion.Balancing = "loss_free";
        var data = TaskData.Load(encoder, ModalityTestUtil.Mnist);
        var small = data.Train.Subset(Enumerable.Range(0, 32).ToArray());
        string dir = ModalityTestUtil.TempDir("token-choice");
        try
        {
            using (var t = new ClassificationTrainer(config, encoder, new TrainingOptions { Steps = 3, Batch = 16, Seq = encoder.Tokens, LearningRate = 1e-2 }, small, null, dir))
                t.Run();
            using var model = MoRSharp.Model.MoRForClassification.Load(dir);
            var bias = model.Model.RouterBias!;
            Assert.True(bias.abs().sum().item<float>() > 0, "three optimizer steps with uneven load must move the loss-free bias");
            var losses = MetricsLog.Read(Path.Combine(dir, "metrics.jsonl")).Select(l => (double)l["loss"]!).ToArray();
            Assert.Equal(3, losses.Length);
            Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Resume_RepeatsTheUninterruptedRun()
    {
        var encoder = ModalityTestUtil.ImagePatch7();
        var config = ModalityTestUtil.TinyStack(encoder);
        var data = TaskData.Load(encoder, ModalityTestUtil.Mnist);
        var small = data.Train.Subset(Enumerable.Range(0, 40).ToArray());       // 40 examples: epochs roll over within the run
        TrainingOptions Options() => new() { Steps = 6, Batch = 16, Seq = encoder.Tokens, LearningRate = 1e-2, CheckpointEvery = 3 };
        string a = ModalityTestUtil.TempDir("resume-a"), b = ModalityTestUtil.TempDir("resume-b");
        try
        {
            using (var t = new ClassificationTrainer(config, encoder, Options(), small, null, a)) t.Run();
            using (var cancel = new CancellationTokenSource())
            using (var t = new ClassificationTrainer(config, encoder, Options(), small, null, b))
            {
                t.StepCompleted += s => { if (s.Step == 3) cancel.Cancel(); };
                t.Run(cancel.Token);
            }
            using (var t = new ClassificationTrainer(config, encoder, Options(), small, null, b, resumeFrom: b)) t.Run();
            double[] Losses(string dir) => MetricsLog.Read(Path.Combine(dir, "metrics.jsonl")).Select(l => (double)l["loss"]!).ToArray();
            Assert.Equal(6, Losses(b).Length);
            Assert.Equal(Losses(a), Losses(b));
        }
        finally { Directory.Delete(a, true); Directory.Delete(b, true); }
    }

    [Fact]
    public void BadInput_GivesClearErrors()
    {
        string empty = ModalityTestUtil.TempDir("empty"), run = ModalityTestUtil.TempDir("bad-run");
        try
        {
            var (code, _, stderr) = CliRunner.Run("train", "--task", "image-classification", "--data", empty, "--out", run, "--steps", "1");
            Assert.Equal(1, code);
            Assert.Contains("no MNIST IDX files", stderr);
            (code, _, stderr) = CliRunner.Run("train", "--task", "audio-classification", "--data", empty, "--out", run, "--steps", "1");
            Assert.Equal(1, code);
            Assert.Contains("no recordings", stderr);
            (code, _, stderr) = CliRunner.Run("train", "--task", "image-classification", "--data", ModalityTestUtil.Mnist, "--out", run, "--steps", "1", "--seq", "9");
            Assert.Equal(2, code);
            Assert.Contains("--seq does not apply to --task", stderr);
            string enc = Path.Combine(run, "encoder.json");
            File.WriteAllText(enc, """{ "task": "image-classification", "image": { "patch_size": 5 } }""");
            (code, _, stderr) = CliRunner.Run("train", "--task", "image-classification", "--data", ModalityTestUtil.Mnist, "--out", run, "--steps", "1", "--encoder", enc);
            Assert.Equal(1, code);
            Assert.Contains("image.patch_size: must divide image_size 28, got 5", stderr);
            File.WriteAllText(enc, """{ "task": "image-classification", "image": { "patchsize": 7 } }""");
            (code, _, stderr) = CliRunner.Run("train", "--task", "image-classification", "--data", ModalityTestUtil.Mnist, "--out", run, "--steps", "1", "--encoder", enc);
            Assert.Equal(1, code);
            Assert.Contains("encoder.json: ", stderr);
            Assert.Contains("'patchsize'", stderr);

            var encoder = ModalityTestUtil.ImagePatch7();                // a vanilla model has no depth to map
            using (var vanilla = new MoRSharp.Model.MoRForClassification(ModalityTestUtil.TinyStack(encoder, "tiny-vanilla"), encoder)) vanilla.Save(run);
            (code, _, stderr) = CliRunner.Run("eval", "--task", "image-classification", "--model", run, "--data", ModalityTestUtil.Mnist, "--depth-map", Path.Combine(run, "maps"));
            Assert.Equal(2, code);
            Assert.Contains("this model does not route", stderr);
        }
        finally { Directory.Delete(empty, true); Directory.Delete(run, true); }
    }
}
