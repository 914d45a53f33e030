using MoRSharp.Model;
using MoRSharp.Modalities;
using static TorchSharp.torch;

namespace MoRSharp.Evaluation;

/// <summary>Accuracy and friends of a classifier on a labelled set.</summary>
/// <param name="Confusion">[true label, predicted label] counts.</param>
/// <param name="MeanDepth">Mean recursions per patch/frame (null without routing).</param>
/// <param name="DepthHistogram">Fraction of patches/frames with depth 0..N_r (null without routing).</param>
/// <param name="DepthByPosition">Mean depth of each patch/frame position over the examples (null without routing).</param>
/// <param name="PerGroup">Accuracy per speaker (audio), else empty.</param>
public sealed record ClassificationResult(int Examples, double Accuracy, double Loss, long[,] Confusion, double? MeanDepth, double[]? DepthHistogram,
    double[]? DepthByPosition, IReadOnlyDictionary<string, (int correct, int total)> PerGroup);

/// <summary>Batched evaluation (no gradients, the model in eval mode; expert-choice routes by top-k per example).</summary>
public static class ClassificationEval
{
    public static ClassificationResult Evaluate(MoRForClassification model, LabeledExamples data, int batch = 256, IProgress<double>? progress = null)
    {
        int c = data.LabelNames.Length, nr = model.Layout.NumRecursion;
        var confusion = new long[c, c];
        var perGroup = new SortedDictionary<string, (int, int)>(StringComparer.Ordinal);
        double lossSum = 0, depthSum = 0;
        long depthTokens = 0;
        var histogram = new long[nr + 1];
        double[]? byPosition = null;
        bool routed = false;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            for (int start = 0; start < data.Count; start += batch)
            {
                using var scope = NewDisposeScope();
                var idx = Enumerable.Range(start, Math.Min(batch, data.Count - start)).ToArray();
                var (x, y) = data.Batch(idx);
                var output = model.Forward(x);
                lossSum += nn.functional.cross_entropy(output.Logits, y, reduction: nn.Reduction.Sum).item<float>();
                var pred = output.Logits.argmax(-1).data<long>().ToArray();
                for (int i = 0; i < idx.Length; i++)
                {
                    long truth = data.Labels[idx[i]];
                    confusion[truth, pred[i]]++;
                    if (data.Groups is { } g)
                    {
                        perGroup.TryGetValue(g[idx[i]], out var acc);
                        perGroup[g[idx[i]]] = (acc.Item1 + (truth == pred[i] ? 1 : 0), acc.Item2 + 1);
                    }
                }
                if (model.TokenDepth(output.Routing) is { } depth)
                {
                    routed = true;
                    var sums = depth.sum([0L]).to_type(ScalarType.Float64).data<double>().ToArray();   // [P]
                    byPosition ??= new double[sums.Length];
                    for (int p = 0; p < sums.Length; p++) byPosition[p] += sums[p];
                    var flat = depth.reshape(-1).data<long>().ToArray();
                    foreach (var dpt in flat) histogram[dpt]++;
                    depthSum += flat.Sum();
                    depthTokens += flat.Length;
                }
                progress?.Report((double)(start + idx.Length) / data.Count);
            }
        }
        finally { if (wasTraining) model.train(); }
        long correct = 0;
        for (int i = 0; i < c; i++) correct += confusion[i, i];
        return new ClassificationResult(data.Count, (double)correct / data.Count, lossSum / data.Count, confusion,
            routed ? depthSum / depthTokens : null, routed ? histogram.Select(h => (double)h / depthTokens).ToArray() : null,
            byPosition?.Select(v => v / data.Count).ToArray(), perGroup);
    }

    /// <summary>Predicted labels [k] and recursion depth per patch/frame [k, P] (null without routing) of the examples at <paramref name="indices"/>.</summary>
    public static (long[] predicted, long[,]? depth) Predict(MoRForClassification model, LabeledExamples data, IReadOnlyList<int> indices)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var (x, _) = data.Batch(indices);
            var output = model.Forward(x);
            var pred = output.Logits.argmax(-1).data<long>().ToArray();
            var depth = model.TokenDepth(output.Routing);
            if (depth is null) return (pred, null);
            long p = depth.shape[1];
            var flat = depth.contiguous().data<long>().ToArray();
            var d = new long[indices.Count, p];
            Buffer.BlockCopy(flat, 0, d, 0, flat.Length * sizeof(long));
            return (pred, d);
        }
        finally { if (wasTraining) model.train(); }
    }
}
