using static TorchSharp.torch;

namespace MoRSharp.Modalities;

/// <summary>
/// A labelled set held in memory: every example's features (normalised pixels [C, H, W] or log-mel frames [T, M]) in one
/// flat array, its label, an id naming where it came from (<c>t10k-images-idx3-ubyte.gz#123</c>, <c>recordings/3_theo_7.wav</c>)
/// and, for audio, its speaker. MNIST (7.8 MB of pixels) and FSDD (600 × 64 × 40 floats) fit easily.
/// </summary>
public sealed class LabeledExamples
{
    public float[] Features { get; }
    /// <summary>Shape of one example, e.g. [1, 28, 28] or [64, 40].</summary>
    public long[] ExampleShape { get; }
    public long[] Labels { get; }
    public string[] Ids { get; }
    /// <summary>Speaker (FSDD) of each example, or null.</summary>
    public string[]? Groups { get; }
    public string[] LabelNames { get; }

    public int Count => Labels.Length;
    public long ExampleSize { get; }

    public LabeledExamples(float[] features, long[] exampleShape, long[] labels, string[] ids, string[] labelNames, string[]? groups = null)
    {
        ExampleSize = exampleShape.Aggregate(1L, (a, b) => a * b);
        if (features.LongLength != ExampleSize * labels.Length)
            throw new ArgumentException($"{features.LongLength} feature values for {labels.Length} examples of {ExampleSize}");
        if (ids.Length != labels.Length || (groups is not null && groups.Length != labels.Length))
            throw new ArgumentException("ids/groups must have one entry per example");
        Features = features;
        ExampleShape = exampleShape;
        Labels = labels;
        Ids = ids;
        Groups = groups;
        LabelNames = labelNames;
    }

    /// <summary>The examples at <paramref name="indices"/>: inputs [k, …shape] float32 and labels [k] int64.</summary>
    public (Tensor inputs, Tensor labels) Batch(IReadOnlyList<int> indices)
    {
        var x = new float[indices.Count * ExampleSize];
        var y = new long[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            Array.Copy(Features, indices[i] * ExampleSize, x, i * ExampleSize, ExampleSize);
            y[i] = Labels[indices[i]];
        }
        return (torch.tensor(x, [indices.Count, .. ExampleShape]), torch.tensor(y));
    }

    /// <summary>One example's features as [rows, cols] (the last two axes; channels summed for images).</summary>
    public float[,] Plane(int index)
    {
        int rows = (int)ExampleShape[^2], cols = (int)ExampleShape[^1];
        long channels = ExampleSize / (rows * cols);
        var plane = new float[rows, cols];
        long offset = index * ExampleSize;
        for (long c = 0; c < channels; c++)
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < cols; k++)
                    plane[r, k] += Features[offset + (c * rows + r) * cols + k];
        return plane;
    }

    /// <summary>The examples at <paramref name="indices"/> as a new set, in that order.</summary>
    public LabeledExamples Subset(IReadOnlyList<int> indices)
    {
        var f = new float[indices.Count * ExampleSize];
        for (int i = 0; i < indices.Count; i++) Array.Copy(Features, indices[i] * ExampleSize, f, i * ExampleSize, ExampleSize);
        return new LabeledExamples(f, ExampleShape, indices.Select(i => Labels[i]).ToArray(), indices.Select(i => Ids[i]).ToArray(),
            LabelNames, Groups is null ? null : indices.Select(i => Groups[i]).ToArray());
    }

    /// <summary>Examples per label, in label order.</summary>
    public int[] ClassCounts()
    {
        var counts = new int[LabelNames.Length];
        foreach (var l in Labels) counts[l]++;
        return counts;
    }
}
