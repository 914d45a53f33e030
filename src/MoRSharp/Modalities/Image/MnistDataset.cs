using MoRSharp.Data;

namespace MoRSharp.Modalities.Image;

/// <summary>
/// MNIST from a folder of IDX files (<c>*-images-idx3-ubyte[.gz]</c> + <c>*-labels-idx1-ubyte[.gz]</c>, one pair).
/// <para><b>Split</b> (fixed, documented): the shared data holds only the 10,000-image MNIST <i>test</i> set, so this project
/// splits it by index: image i is validation when i mod 5 = 4 (2,000 images), training otherwise (8,000). Every fifth image
/// rather than the last 2,000 because the file's first half comes from Census employees (SD-3, cleaner writing) and its
/// second half from students (SD-1); striding keeps both writer groups, and all ten digits, in both parts.</para>
/// Pixels are scaled to [0, 1] and normalised with the encoder's mean and standard deviation.
/// </summary>
public static class MnistDataset
{
    public const int ValidationStride = 5;

    public static bool IsValidation(int index) => index % ValidationStride == ValidationStride - 1;

    /// <summary>(training, validation) examples of the folder's single image/label pair.</summary>
    public static (LabeledExamples train, LabeledExamples validation) Load(string folder, ImageFrontEndConfig config, string[] labelNames)
    {
        var all = LoadAll(folder, config, labelNames);
        var train = Enumerable.Range(0, all.Count).Where(i => !IsValidation(i)).ToList();
        var val = Enumerable.Range(0, all.Count).Where(IsValidation).ToList();
        if (train.Count == 0 || val.Count == 0) throw new DataException($"{folder}: {all.Count} image(s) are too few to split into training and validation");
        return (all.Subset(train), all.Subset(val));
    }

    public static LabeledExamples LoadAll(string folder, ImageFrontEndConfig config, string[] labelNames)
    {
        var (imagesPath, labelsPath) = Find(folder);
        var (dims, pixels) = IdxFile.Read(imagesPath, 3);
        var (ldims, labels) = IdxFile.Read(labelsPath, 1);
        int n = dims[0], h = dims[1], w = dims[2];
        if (ldims[0] != n) throw new DataException($"{labelsPath}: {ldims[0]:N0} labels for the {n:N0} images of {imagesPath}");
        if (n == 0) throw new DataException($"{imagesPath}: holds no images");
        if (config.NumChannels != 1 || h != config.ImageSize || w != config.ImageSize)
            throw new DataException($"{imagesPath}: images are {h}×{w} with 1 channel; the encoder expects {config.ImageSize}×{config.ImageSize} with {config.NumChannels}");
        var ys = new long[n];
        for (int i = 0; i < n; i++)
        {
            if (labels[i] >= labelNames.Length)
                throw new DataException($"{labelsPath}: label {labels[i]} of image {i} is outside the {labelNames.Length} classes");
            ys[i] = labels[i];
        }
        var features = new float[pixels.Length];
        float mean = (float)config.ImageMean, std = (float)config.ImageStd;
        for (long i = 0; i < pixels.LongLength; i++) features[i] = (pixels[i] / 255f - mean) / std;
        string name = Path.GetFileName(imagesPath);
        return new LabeledExamples(features, [1, h, w], ys, Enumerable.Range(0, n).Select(i => $"{name}#{i}").ToArray(), labelNames);
    }

    private static (string images, string labels) Find(string folder)
    {
        if (File.Exists(folder)) throw new DataException($"{folder}: --data for image-classification is a folder holding MNIST IDX files, not a file");
        if (!Directory.Exists(folder)) throw new DataException($"{folder}: folder not found");
        var files = Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var images = files.Where(f => f!.Contains("images-idx3-ubyte") || f.Contains("images.idx3-ubyte")).ToList();
        var labels = files.Where(f => f!.Contains("labels-idx1-ubyte") || f.Contains("labels.idx1-ubyte")).ToList();
        if (images.Count == 0 || labels.Count == 0)
            throw new DataException($"{folder}: no MNIST IDX files (expected e.g. t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz; found {(files.Count == 0 ? "an empty folder" : string.Join(", ", files.Take(5)))})");
        if (images.Count > 1 || labels.Count > 1)
            throw new DataException($"{folder}: more than one MNIST image or label file ({string.Join(", ", images.Concat(labels))}); keep one pair per folder");
        return (Path.Combine(folder, images[0]!), Path.Combine(folder, labels[0]!));
    }
}
