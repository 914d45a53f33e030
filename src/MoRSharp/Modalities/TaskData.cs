using MoRSharp.Modalities.Audio;
using MoRSharp.Modalities.Image;

namespace MoRSharp.Modalities;

/// <summary>A task's training and held-out examples, and how they were split (for logs and docs).</summary>
public sealed record TaskData(LabeledExamples Train, LabeledExamples Eval, string EvalName, string SplitDescription)
{
    /// <summary>
    /// MNIST folder → the fixed index split (i mod 5 = 4 is validation); FSDD folder → its take split (takes 0–4 test).
    /// </summary>
    public static TaskData Load(EncoderConfig encoder, string folder, IProgress<double>? progress = null)
    {
        if (encoder.TaskKind == ClassificationTask.ImageClassification)
        {
            var (train, val) = MnistDataset.Load(folder, encoder.Image!, encoder.Labels);
            progress?.Report(1);
            return new TaskData(train, val, "validation",
                $"MNIST index split: {train.Count:N0} training images (i mod 5 ≠ 4), {val.Count:N0} validation (i mod 5 = 4)");
        }
        var (tr, test) = FsddDataset.Load(folder, encoder.Audio!, encoder.Labels, progress);
        return new TaskData(tr, test, "test",
            $"FSDD take split: {tr.Count} train clips (takes 5–9: {FsddDataset.Speakers(tr)}), {test.Count} test clips (takes 0–4: {FsddDataset.Speakers(test)})");
    }
}
